"""Images through the real Definitions: a DMS export and an imaging feed whose photographs a local server serves, judged per marketplace, the feeds built from the good ones, a down server drilled."""

import csv
import io
import json
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import pytest
import yaml

from dms_pipelines.config import load_settings
from dms_pipelines.devtools.image_server import ImageServer
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.devtools.sample.images import SampleImages
from dms_pipelines.devtools.sample.imaging_feed import write_imaging_feed
from dms_pipelines.orchestration.build import build_definitions
from dms_pipelines.paths import DataPaths

BAD = ("broken", "not_an_image")


@pytest.fixture
def imaged(data_root):
    """leeds with its imaging feed (CitNOW layout) and the DMS export, every photograph served by a local server."""
    images = SampleImages()
    server = ImageServer(images.resolve).start()
    path = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["dealers"][0]["images"] = {"profile": "citnow_images_csv"}
    raw["images"] = {"allowed_private_hosts": ["127.0.0.1"], "attempts": 2, "timeout_seconds": 2}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings, paths = load_settings(path), DataPaths(data_root)
    report = generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], 120, seed=11, image_base=server.base_url + "/dms")
    feed = write_imaging_feed(report.fleets["leeds"], "leeds", paths.image_inbox / "leeds", server.base_url, layouts=("citnow_images_csv",))
    yield settings, paths, server, images, feed
    server.stop()


def run_dealer(settings, paths, trigger: str | None = None):
    """leeds's dealer_sync run, then the account-wide files (Google's among them); the dealer's run's result."""
    defs = build_definitions(settings, paths)
    tags = {"dms_pipelines/trigger": trigger} if trigger else None
    result = defs.resolve_job_def("dealer_sync").execute_in_process(instance=dg.DagsterInstance.get(), partition_key="leeds", raise_on_error=False, tags=tags)
    assert defs.resolve_job_def("account_feeds").execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False).success
    return result


def checks_of(result, asset: str) -> dict:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.asset_key.to_user_string() == asset
    }


def image_metadata(result) -> dict:
    [materialisation] = result.asset_materializations_for_node("vehicle_images")
    return {key: value.value for key, value in materialisation.metadata.items()}


def warehouse(paths, sql: str) -> list:
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def google_images(paths) -> dict[str, list[str]]:
    """Per vehicle (Google's vehicle id), the image URLs the Google feed file sends."""
    text = (paths.root / "outbox" / "google" / "vehicle_listings.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["id"]: [row["image_link"], *filter(None, row["additional_image_link"].split(","))] for row in rows}


def test_the_feeds_carry_only_good_images_and_the_planted_defects_are_each_found(imaged):
    settings, paths, server, images, feed = imaged
    result = run_dealer(settings, paths)
    assert result.success
    checks = checks_of(result, "vehicle_images")
    assert checks["image_hosts_reachable"].passed
    metadata = image_metadata(result)
    assert metadata["vehicles"] > 50 and metadata["images"] > 500

    sent = [url for urls in google_images(paths).values() for url in urls]
    assert sent, "the Google feed lists vehicles"
    assert not [url for url in sent if images.truth(urlsplit(url).path) in BAD]  # a broken or non-image photograph never goes out
    assert not set(sent) & set(feed.shared_image_url)  # nor a URL found on two cars
    judged = {row[0] for row in warehouse(paths, "SELECT stock_id FROM vehicle_image_sources")}
    flagged = {row[0] for row in warehouse(paths, "SELECT stock_id FROM image_flags WHERE flag = 'photos_of_another_vehicle'")}
    planted = {a for a, b in feed.photos_of_another_vehicle.items() if {a, b} <= judged}
    assert planted and planted <= flagged
    statuses = dict(warehouse(paths, "SELECT url, status FROM vehicle_images"))
    planted_bad = {url: images.truth(urlsplit(url).path) for url in statuses if images.truth(urlsplit(url).path) in BAD}
    assert planted_bad and all(statuses[url] == truth for url, truth in planted_bad.items())
    held = warehouse(paths, "SELECT marketplace, stock_id, held_reason FROM vehicles_held_for_images")
    assert held and all(reason for _, _, reason in held)
    listed = warehouse(paths, "SELECT marketplace, stock_id, held_reasons FROM marketplace_listings WHERE NOT in_feed AND held_reasons LIKE '%good image%'")
    assert {(m, s) for m, s, _ in listed} == {(m, s) for m, s, _ in held if m in {"google", "website", "meta", "carsnip", "autotrader"}}
    for marketplace, good in warehouse(paths, "SELECT marketplace, min(good_images) FROM marketplace_images WHERE NOT held GROUP BY ALL"):
        assert good >= settings.images.min_good_images, marketplace  # a listed vehicle meets the group's standard


def test_a_second_run_asks_only_whether_each_image_changed_and_sends_nothing_new(imaged):
    settings, paths, server, images, _ = imaged
    assert run_dealer(settings, paths).success
    before = {path.name: path.read_bytes() for path in (paths.root / "outbox").rglob("*") if path.is_file()}
    requests = server.requests
    again = run_dealer(settings, paths)
    assert again.success
    metadata = image_metadata(again)
    assert metadata["requests"] == metadata["unchanged_since_last_check"] > 0  # every request a conditional one, answered 304
    assert server.requests - requests == metadata["requests"]
    assert {path.name: path.read_bytes() for path in (paths.root / "outbox").rglob("*") if path.is_file()} == before


def test_an_image_server_that_is_down_is_reported_once_and_does_not_fail_the_run_or_delist_the_cars(imaged):
    settings, paths, server, images, _ = imaged
    assert run_dealer(settings, paths).success
    held_before = sorted(warehouse(paths, "SELECT marketplace, stock_id FROM vehicles_held_for_images"))
    listed_before = google_images(paths)
    server.stop()
    result = run_dealer(settings, paths)
    assert result.success
    check = checks_of(result, "vehicle_images")["image_hosts_reachable"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    hosts = json.loads(json.dumps(check.metadata["unreachable_hosts"].value))
    assert list(hosts) == [urlsplit(server.base_url).netloc]
    messages = [entry.user_message for entry in dg.DagsterInstance.get().all_logs(result.run_id) if "image host 127.0.0.1" in (entry.user_message or "")]
    assert len(messages) == 1
    assert sorted(warehouse(paths, "SELECT marketplace, stock_id FROM vehicles_held_for_images")) == held_before  # judged as last seen
    assert google_images(paths) == listed_before


def test_an_image_stage_that_fails_is_said_and_the_feeds_still_go_out(imaged, monkeypatch):
    settings, paths, server, images, _ = imaged
    import dms_pipelines.pipeline.images as image_stages

    def broken(*args, **kwargs):
        raise RuntimeError("the imaging feed's disk vanished")

    monkeypatch.setattr(image_stages, "choose_images", broken)
    result = run_dealer(settings, paths)
    checks = checks_of(result, "vehicle_images")
    assert not checks["images_judged"].passed and "disk vanished" in checks["images_judged"].metadata["error"].value
    assert google_images(paths)  # the feeds went out on the DMS's lists (no verdict yet)
    assert all(checks_of(result, "website_feed")[name].passed for name in ("delivered", "drift_free"))


def test_a_dealer_whose_images_are_no_longer_judged_sends_the_dms_lists_again(imaged):
    settings, paths, server, images, _ = imaged
    assert run_dealer(settings, paths).success
    judged = google_images(paths)
    path = paths.root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["dealers"][0].pop("images")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(path)
    assert run_dealer(settings, paths).success
    again = google_images(paths)
    assert len(again) > len(judged)  # the vehicles held back for their images are listed again
    assert any("/dms/" in url for urls in again.values() for url in urls)  # and the DMS's own lists are what they show
    assert warehouse(paths, "SELECT count(*) FROM vehicle_images") == [(0,)]


def test_profile_check_reads_an_imaging_feed_and_names_each_bad_row(imaged, capsys, tmp_path):
    from dms_pipelines.cli import main

    _, paths, _, _, feed = imaged
    [written] = feed.paths.values()
    assert main(["profile", "check", "citnow_images_csv", str(written)]) == 0
    assert "accepted for" in capsys.readouterr().out
    lines = written.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "citnow_leeds_broken.csv"
    broken.write_text("\n".join([lines[0], lines[1].replace("http://", "ftp://", 1), *lines[2:5]]) + "\n", encoding="utf-8")
    assert main(["profile", "check", "citnow_images_csv", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "1 left out" in out and "citnow_leeds_broken.csv: row 1" in out and "image_url" in out


def test_the_report_shows_image_completeness_per_dealer_and_marketplace(imaged, capsys):
    from dms_pipelines.cli import main

    settings, paths, _, _, _ = imaged
    assert run_dealer(settings, paths).success
    capsys.readouterr()
    main(["report", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["images"]
    expected = warehouse(paths, "SELECT marketplace, count(*) FILTER (WHERE held) FROM marketplace_images m JOIN marketplace_listings l USING (dealer_id, marketplace, stock_id) GROUP BY ALL")
    assert {(row["marketplace"], row["held_for_images"]) for row in rows if row["dealer_id"] == "leeds"} == set(expected)
    main(["report"])
    assert "image completeness" in capsys.readouterr().out


def test_a_quick_run_trusts_what_was_seen_and_fetches_only_new_images(imaged):
    settings, paths, server, _, _ = imaged
    assert run_dealer(settings, paths).success
    requests = server.requests
    quick = run_dealer(settings, paths, trigger="delta_sensor")  # a sale or a delta must not wait for every image
    assert quick.success
    assert server.requests == requests and image_metadata(quick)["requests"] == 0
    nightly = run_dealer(settings, paths, trigger="nightly")
    assert image_metadata(nightly)["unchanged_since_last_check"] > 0 and server.requests > requests
