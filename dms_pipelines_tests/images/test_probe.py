"""Image probing against a real server on loopback: what each image is, retries, redirects, private addresses, a down host, the cache."""

import asyncio
import io
import logging
import random
import socket
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dms_pipelines.config import ImageSettings
from dms_pipelines.devtools.image_server import ImageServer, Served
from dms_pipelines.devtools.sample.images import templates
from dms_pipelines.images.probe import CHECK_STATUSES, ImageCheck, changed_checks, examine, is_refused_address, probe_images, webp_size
from dms_pipelines.operations.db import engine_for
from dms_pipelines.operations.image_store import cached_checks, save_checks

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=1)
TEMPLATES = {template.name: template for template in templates()}
LOCAL = ImageSettings(allowed_private_hosts=["127.0.0.1"], timeout_seconds=2, attempts=3)


def _served(name: str, etag: str | None = None) -> Served:
    template = TEMPLATES[name]
    return Served(template.body, template.content_type, etag or f'"{template.digest[:16]}"', "Mon, 05 Jan 2026 09:00:00 GMT")


class Paths(dict):
    """The server's content, changeable between probes."""

    def resolve(self, path: str) -> Served | None:
        return self.get(path)


@pytest.fixture
def paths() -> Paths:
    return Paths(
        {
            "/front.jpg": _served("front_1600x1200.jpg"),
            "/dash.png": _served("dash_1024x768.png"),
            "/interior.webp": _served("interior_1600x1200.webp"),
            "/boot.gif": _served("boot_800x600.gif"),
            "/thumb.jpg": _served("thumb_320x240.jpg"),
            "/broken.jpg": _served("cut_short.jpg"),
            "/page.html": _served("page.html"),
        }
    )


@pytest.fixture
def server(paths):
    with ImageServer(paths.resolve) as running:
        yield running


def _one(server: ImageServer, path: str, options: ImageSettings = LOCAL) -> tuple[ImageCheck, object]:
    run = probe_images([server.url(path)], options, now=NOW)
    return run.checks[server.url(path)], run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("path", "image_format", "size"),
    [("/front.jpg", "JPEG", (1600, 1200)), ("/dash.png", "PNG", (1024, 768)), ("/interior.webp", "WEBP", (1600, 1200)), ("/boot.gif", "GIF", (800, 600))],
)
def test_a_good_image_is_ok_with_its_format_size_and_validators(server, paths, path, image_format, size):
    check, run = _one(server, path)
    assert check.status == "ok" and check.reason is None
    assert (check.format, (check.width, check.height)) == (image_format, size)
    assert check.http_status == 206
    assert check.content_type == f"image/{image_format.lower()}"
    assert check.byte_size == len(paths[path].body)  # the whole file's, from Content-Range, though only the head was read
    assert (check.etag, check.last_modified) == (paths[path].etag, paths[path].last_modified)
    assert check.checked_at == NOW
    assert (run.requested, run.not_modified, run.failed_hosts) == (1, 0, {})


def test_a_webp_larger_than_the_range_read_is_ok(server, paths):
    # Pillow's WebP reader refuses a file cut short, so the first bytes of a WebP are read by the probe itself
    assert len(paths["/interior.webp"].body) > LOCAL.header_bytes
    check, run = _one(server, "/interior.webp")
    assert (check.status, check.format, check.width, check.height, run.requested) == ("ok", "WEBP", 1600, 1200, 1)


def test_a_webp_cut_short_is_broken(server, paths):
    whole = paths["/interior.webp"]
    paths["/cut.webp"] = Served(whole.body[:100_000], "image/webp", '"cut"', whole.last_modified)
    check, _ = _one(server, "/cut.webp")
    assert (check.status, check.byte_size) == ("broken", 100_000)
    assert f"says it has {len(whole.body)} bytes" in check.reason


def test_a_jpeg_whose_metadata_fills_the_first_bytes_is_read_further(server, paths):
    picture = Image.new("RGB", (1280, 960), (90, 120, 200))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", icc_profile=random.Random(3).randbytes(200_000))  # a large ICC profile comes before the frame header
    paths["/profiled.jpg"] = Served(buffer.getvalue(), "image/jpeg", '"icc"', "Mon, 05 Jan 2026 09:00:00 GMT")
    check, run = _one(server, "/profiled.jpg")
    assert (check.status, check.width, check.height, check.byte_size) == ("ok", 1280, 960, len(buffer.getvalue()))
    assert run.requested == 2  # the first 64 KiB, then up to 1 MiB


@pytest.mark.parametrize(
    ("mode", "size", "options"),
    [
        ("RGB", (801, 601), {"quality": 80}),
        ("RGB", (333, 777), {"lossless": True}),
        ("RGBA", (640, 480), {"quality": 70}),
        ("RGB", (300, 200), {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"}),
    ],
)
def test_webp_headers_are_read_as_pillow_reads_the_whole_file(mode, size, options):
    rng = random.Random(size[0])
    picture = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).convert(mode)
    if mode == "RGBA":
        picture.putalpha(128)
    buffer = io.BytesIO()
    picture.save(buffer, "WEBP", **options)
    data = buffer.getvalue()
    assert webp_size(data[:30]) == (*size, len(data))
    assert examine(data[:2000], len(data)) == ("ok", "WEBP", *size, None)


def test_a_small_image_is_still_ok_here_with_its_real_size(server):
    check, _ = _one(server, "/thumb.jpg")
    assert (check.status, check.width, check.height) == ("ok", 320, 240)


def test_bytes_no_reader_can_identify_are_broken(server):
    check, _ = _one(server, "/broken.jpg")
    assert check.status == "broken"
    assert "Pillow" in check.reason
    assert (check.format, check.width, check.content_type) == (None, None, "image/jpeg")


def test_a_page_is_not_an_image(server):
    check, _ = _one(server, "/page.html")
    assert (check.status, check.content_type) == ("not_an_image", "text/html")
    assert "text/html" in check.reason


def test_404_is_an_http_error_and_not_retried(server):
    check, run = _one(server, "/missing.jpg")
    assert (check.status, check.http_status, run.requested) == ("http_error", 404, 1)
    assert "404" in check.reason


def test_503_twice_then_200_is_ok_after_three_requests(server):
    server.fail(2, path="/front.jpg", retry_after="0")
    check, run = _one(server, "/front.jpg")
    assert (check.status, check.width) == ("ok", 1600)
    assert run.requested == 3 == server.requests


def test_503_every_time_is_an_http_error_after_every_attempt(server):
    server.fail(10, path="/front.jpg")
    check, run = _one(server, "/front.jpg", LOCAL.model_copy(update={"attempts": 2}))
    assert (check.status, check.http_status, run.requested) == ("http_error", 503, 2)
    assert run.failed_hosts == {}  # the host answered: it is not down


def test_a_server_ignoring_range_is_read_only_as_far_as_the_head(server, paths):
    server.honour_range = False
    checks = probe_images([server.url("/dash.png"), server.url("/front.jpg"), server.url("/thumb.jpg")], LOCAL, now=NOW).checks
    dash = checks[server.url("/dash.png")]
    assert (dash.status, dash.http_status, dash.format, dash.width, dash.height) == ("ok", 200, "PNG", 1024, 768)
    assert dash.byte_size == len(paths["/dash.png"].body) > LOCAL.header_bytes  # from Content-Length
    assert all(check.status == "ok" for check in checks.values())


def test_an_image_larger_than_max_bytes_is_too_large(server, paths):
    check, _ = _one(server, "/front.jpg", LOCAL.model_copy(update={"max_bytes": 10_000}))
    assert (check.status, check.byte_size) == ("too_large", len(paths["/front.jpg"].body))
    assert check.format is None


def test_a_redirect_to_a_private_host_is_blocked_unless_allowed(server, paths):
    paths["/elsewhere.jpg"] = Served(b"", "text/plain", "", "", status=302, redirect_to=f"http://localhost:{server.port}/front.jpg")
    check, run = _one(server, "/elsewhere.jpg")
    assert check.status == "blocked" and "localhost" in check.reason
    assert run.requested == 1 == server.requests  # the redirect's target was never asked
    allowed = LOCAL.model_copy(update={"allowed_private_hosts": ["127.0.0.1", "localhost"]})
    check, run = _one(server, "/elsewhere.jpg", allowed)
    assert (check.status, check.url, check.width, run.requested) == ("ok", server.url("/elsewhere.jpg"), 1600, 2)


def test_a_redirect_to_a_private_address_or_another_scheme_is_blocked(server, paths):
    paths["/inside.jpg"] = Served(b"", "text/plain", "", "", redirect_to="http://10.1.2.3/front.jpg")
    paths["/file.jpg"] = Served(b"", "text/plain", "", "", redirect_to="file:///etc/passwd")
    run = probe_images([server.url("/inside.jpg"), server.url("/file.jpg")], LOCAL, now=NOW)
    assert [check.status for check in run.checks.values()] == ["blocked", "blocked"]
    assert "10.1.2.3" in run.checks[server.url("/inside.jpg")].reason
    assert run.requested == 2


def test_urls_to_private_addresses_or_other_schemes_are_not_requested(server):
    urls = [server.url("/front.jpg"), "ftp://images.example/a.jpg", "file:///etc/passwd", "not a url at all", "http://[::1]/a.jpg", "http://169.254.169.254/latest/meta-data"]
    run = probe_images(urls, ImageSettings(), now=NOW)  # nothing allowed: 127.0.0.1 is private too
    assert {url: check.status for url, check in run.checks.items()} == dict.fromkeys(urls, "blocked")
    assert run.requested == 0 == server.requests


def test_a_redirect_loop_stops_after_max_redirects(server, paths):
    paths["/loop.jpg"] = Served(b"", "text/plain", "", "", status=307, redirect_to="/loop.jpg")
    check, run = _one(server, "/loop.jpg")
    assert (check.status, check.http_status) == ("http_error", 307)
    assert "more than 3 redirects" in check.reason
    assert run.requested == 4  # the URL and its three redirects


def test_a_down_host_is_reported_once_and_not_asked_for_every_image(caplog):
    port = _free_port()
    urls = [f"http://127.0.0.1:{port}/LS{index:04d}/01.jpg" for index in range(300)]
    with caplog.at_level(logging.WARNING, logger="dms_pipelines.images.probe"):
        run = probe_images(urls, LOCAL, now=NOW)
    assert {check.status for check in run.checks.values()} == {"unreachable"}
    assert list(run.failed_hosts) == [f"127.0.0.1:{port}"]
    assert {check.reason for check in run.checks.values()} == set(run.failed_hosts.values())  # one reason for all
    assert run.requested <= LOCAL.per_host_concurrency < len(urls)  # the circuit opened: most images were never requested
    warnings = [record for record in caplog.records if record.name == "dms_pipelines.images.probe"]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0].getMessage()


def test_a_host_that_stops_answering_leaves_its_other_hosts_checked(server):
    port = _free_port()
    urls = [server.url("/front.jpg"), *(f"http://127.0.0.1:{port}/{index}.jpg" for index in range(20)), server.url("/dash.png")]
    run = probe_images(urls, LOCAL, now=NOW)
    assert run.checks[server.url("/front.jpg")].status == run.checks[server.url("/dash.png")].status == "ok"
    assert list(run.failed_hosts) == [f"127.0.0.1:{port}"]


def test_an_image_that_never_answers_in_time_is_unreachable():
    with ImageServer(lambda path: Served(b"x", "image/jpeg", '"s"', "", delay=2.0)) as slow:
        check, run = _one(slow, "/slow.jpg", LOCAL.model_copy(update={"timeout_seconds": 0.2, "attempts": 2}))
    assert check.status == "unreachable"
    assert "did not answer within 0.2 s" in check.reason
    assert run.requested == 2
    assert list(run.failed_hosts) == [f"127.0.0.1:{slow.port}"]  # none of its images answered: reported once


def test_a_second_probe_with_the_cache_asks_only_whether_each_changed(server):
    urls = [server.url(path) for path in ("/front.jpg", "/dash.png", "/interior.webp", "/thumb.jpg", "/broken.jpg", "/page.html")]
    first = probe_images(urls, LOCAL, now=NOW)
    requests_before = server.requests
    second = probe_images(urls, LOCAL, cached=first.checks, now=LATER)
    assert (second.requested, second.not_modified, second.trusted) == (len(urls), len(urls), 0)
    assert server.not_modified == len(urls) == server.requests - requests_before
    for url in urls:
        before, after = first.checks[url].as_row(), second.checks[url].as_row()
        assert after.pop("checked_at") == LATER
        before.pop("checked_at")
        assert before == after
    assert changed_checks(first.checks, second.checks) == []  # nothing to write back after a night of 304s


def test_a_changed_image_is_read_again(server, paths):
    url, other = server.url("/front.jpg"), server.url("/dash.png")
    first = probe_images([url, other], LOCAL, now=NOW)
    paths["/front.jpg"] = _served("side_1280x960.jpg")
    second = probe_images([url, other, server.url("/rear.jpg")], LOCAL, cached=first.checks, now=LATER)
    assert second.not_modified == 1
    assert (second.checks[url].width, second.checks[url].etag) == (1280, paths["/front.jpg"].etag)
    assert [check.url for check in changed_checks(first.checks, second.checks)] == [url, server.url("/rear.jpg")]  # the changed one and the new one


def test_last_modified_alone_revalidates_too(server, paths):
    paths["/front.jpg"] = Served(paths["/front.jpg"].body, "image/jpeg", "", "Mon, 05 Jan 2026 09:00:00 GMT")
    first = probe_images([server.url("/front.jpg")], LOCAL, now=NOW)
    assert first.checks[server.url("/front.jpg")].etag is None
    second = probe_images([server.url("/front.jpg")], LOCAL, cached=first.checks, now=LATER)
    assert second.not_modified == 1


def test_a_recent_check_is_trusted_without_a_request_but_a_failure_never_is(server):
    fresh = probe_images([server.url("/front.jpg"), server.url("/missing.jpg")], LOCAL, now=NOW).checks
    unreachable = ImageCheck(server.url("/dash.png"), "unreachable", None, None, None, None, None, None, None, None, "down last night", NOW)
    trusting = LOCAL.model_copy(update={"revalidate_after_hours": 12})
    run = probe_images([*fresh, unreachable.url], trusting, cached={**fresh, unreachable.url: unreachable}, now=NOW + timedelta(hours=6))
    assert (run.trusted, run.requested) == (2, 1)  # the 404 and the good image trusted; the unreachable one asked again
    assert run.checks[server.url("/front.jpg")] is fresh[server.url("/front.jpg")]
    assert run.checks[unreachable.url].status == "ok"
    later = probe_images(list(fresh), trusting, cached=fresh, now=NOW + timedelta(hours=13))
    assert (later.trusted, later.requested) == (0, 2)


def test_every_url_is_checked_once_with_progress_every_thousand(server, paths):
    paths.update({f"/many/{index}.jpg": paths["/thumb.jpg"] for index in range(2100)})
    urls = [server.url(f"/many/{index}.jpg") for index in range(2100)]
    calls = []
    run = probe_images(urls + urls[:50], LOCAL, now=NOW, progress=lambda done, total: calls.append((done, total)))
    assert len(run.checks) == 2100 == run.requested
    assert run.statuses == {"ok": 2100}
    assert calls == [(1000, 2100), (2000, 2100), (2100, 2100)]


def test_it_runs_from_inside_a_running_event_loop(server):
    async def from_a_coroutine():
        return probe_images([server.url("/front.jpg")], LOCAL, now=NOW)

    run = asyncio.run(from_a_coroutine())
    assert run.checks[server.url("/front.jpg")].status == "ok"


@pytest.mark.parametrize(
    ("address", "refused"),
    [("127.0.0.1", True), ("10.0.0.8", True), ("192.168.1.1", True), ("169.254.169.254", True), ("100.64.0.1", True), ("224.0.0.1", True), ("0.0.0.0", True)]
    + [("::1", True), ("fe80::1", True), ("::ffff:127.0.0.1", True), ("fd00::1", True), ("93.184.216.34", False), ("2606:2800:220:1:248:1893:25c8:1946", False)],
)
def test_private_and_special_addresses_are_refused(address, refused):
    assert is_refused_address(address) is refused


def test_the_store_keeps_checks_and_an_upsert_replaces_them(tmp_path, server):
    engine = engine_for(f"sqlite:///{tmp_path / 'operations.sqlite'}")
    urls = [server.url("/front.jpg"), server.url("/page.html"), server.url("/missing.jpg")]
    first = probe_images(urls, LOCAL, now=NOW)
    assert save_checks(engine, [check.as_row() for check in first.checks.values()]) == 3
    kept = cached_checks(engine, [*urls, server.url("/never.jpg")])
    assert set(kept) == set(urls)
    assert {url: ImageCheck.from_row(row) for url, row in kept.items()} == first.checks
    replaced = ImageCheck(urls[0], "too_large", 206, "image/jpeg", None, None, None, 5 * 2**30, '"big"', None, "5.0 GiB", LATER)
    assert save_checks(engine, [replaced.as_row(), replaced.as_row()]) == 1
    again = cached_checks(engine, urls)
    assert len(again) == 3
    assert (again[urls[0]]["status"], again[urls[0]]["etag"], again[urls[0]]["checked_at"]) == ("too_large", '"big"', LATER)
    assert again[urls[0]]["byte_size"] == 5 * 2**30  # a BIGINT: a refused image's declared size is kept as it was
    assert ImageCheck.from_row(again[urls[1]]) == first.checks[urls[1]]


_text = st.one_of(st.none(), st.text(min_size=1, max_size=40))
_count = st.one_of(st.none(), st.integers(min_value=0, max_value=2**31 - 1))
checks = st.builds(
    ImageCheck,
    url=st.text(min_size=1, max_size=120),
    status=st.sampled_from(CHECK_STATUSES),
    http_status=st.one_of(st.none(), st.integers(100, 599)),
    content_type=_text,
    format=st.one_of(st.none(), st.sampled_from(["JPEG", "PNG", "WEBP", "GIF"])),
    width=_count,
    height=_count,
    byte_size=_count,
    etag=_text,
    last_modified=_text,
    reason=_text,
    checked_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
)


@given(checks)
def test_a_check_survives_its_row(check):
    assert ImageCheck.from_row(check.as_row()) == check
    assert ImageCheck.from_row({**check.as_row(), "checked_at": check.checked_at.replace(tzinfo=None), "url_hash": "x"}) == check


@settings(max_examples=25, deadline=None)
@given(st.lists(checks, min_size=1, max_size=8, unique_by=lambda check: check.url))
def test_checks_survive_the_store(tmp_path_factory, stored):
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('store') / 'operations.sqlite'}")
    save_checks(engine, [check.as_row() for check in stored])
    kept = cached_checks(engine, [check.url for check in stored])
    assert {url: ImageCheck.from_row(row) for url, row in kept.items()} == {check.url: check for check in stored}


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        ImageCheck("http://a/b.jpg", "fine", None, None, None, None, None, None, None, None, None, NOW)
