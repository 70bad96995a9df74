"""Faults and hostile files through the real Dagster runs: nothing lost, other dealers unaffected, no secret in any log."""

import logging

import dagster as dg
import duckdb
import yaml

from dms_pipelines.config import load_settings
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.orchestration.drivers import run_sync
from dms_pipelines_tests.support import SECRET_FILE_MARKER, STATS, corpus


def counts(paths) -> dict:
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        return dict(db.execute("SELECT dealer_id, count(*) FROM stock_current GROUP BY ALL").fetchall())


def test_hostile_files_in_an_inbox_break_nothing_else(paths, settings):
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], 150, seed=5)
    run_sync(echo=lambda line: None)
    before = counts(paths)
    hostile = [h for h in corpus() if h.profile == "navigator_csv" and h.expect == "refused"]
    for index, item in enumerate(hostile):
        name = f"stock_full_20261122_{index:04d}.csv" + (".gz" if item.name.endswith(".gz") else ".zip" if item.name.endswith(".zip") else "")
        (paths.inbox / "leeds" / name).write_bytes(item.content)
    (paths.inbox / "york" / "inventory_full_202611220300.xml").write_bytes(next(h for h in corpus() if h.name == "inventory_full_xxe.xml").content)
    outcomes = run_sync(echo=lambda line: None)
    STATS["faults injected"] += len(hostile) + 1
    assert outcomes == {"leeds": False, "york": False, "sheffield": True, "account_feeds": True}  # the unreadable files fail their dealers' runs, and no one else's
    assert counts(paths) == before  # no partial replacement of anyone's stock
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        failed = db.execute("SELECT file_name, error FROM ingested_files WHERE status = 'failed'").fetchall()
        hostile_statuses = dict(db.execute("SELECT file_name, status FROM ingested_files WHERE file_name LIKE 'stock_full_20261122_%' OR file_name LIKE 'inventory_full_20261122%'").fetchall())
        lost = db.execute("SELECT coalesce(sum(rows_total - rows_accepted - rows_quarantined), 0) FROM ingested_files WHERE status = 'processed'").fetchall()[0][0]
    # several unreadable full exports at once: each is tried, newest first, and each fails with its own error
    # the empty one too: it is never landed, but recorded as failed ("empty file") instead of passed over in silence
    assert len(hostile_statuses) == len(hostile) + 1 and set(hostile_statuses.values()) == {"failed"}
    assert len(failed) == len(hostile_statuses) and all(name in error for name, error in failed)
    STATS["rows lost"] += int(lost)
    assert lost == 0
    outputs = "".join(p.read_text(encoding="utf-8", errors="replace") for p in paths.outbox.rglob("*") if p.is_file())
    leaked = outputs.count(SECRET_FILE_MARKER)
    STATS["secrets or foreign content leaked"] += leaked
    assert leaked == 0


def test_no_secret_reaches_a_log_or_an_event(data_root, paths, sshd_server, remote_dir, caplog, monkeypatch):
    server, remote = sshd_server, remote_dir
    key = server.client_key_text
    token = "tok-" + "S3cr3t" * 6
    config_file = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(config_file.read_text())
    raw["dealers"][0]["source"] = {
        "kind": "sftp",
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "known_hosts": str(server.known_hosts),
        "remote_dir": str(remote),
        "patterns": ["stock_*.csv"],
        "private_key_env": "DMS_LEEDS_SFTP_KEY",
        "stability_seconds": 0,
    }
    raw["marketplaces"]["autotrader"]["destination"]["token_env"] = "DMS_SECRET_TOKEN"
    config_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("DMS_LEEDS_SFTP_KEY", key)
    monkeypatch.setenv("DMS_SECRET_TOKEN", token)  # not the simulator's token: every API call fails with 401
    load_settings(config_file)  # the edited configuration is still valid: what fails is the secret, not the file
    generate_group(remote.parent / "gen", [SampleDealer("leeds", "Leeds", "navigator_csv")], 60, seed=8)
    for file in (remote.parent / "gen" / "leeds").iterdir():
        file.rename(remote / file.name)
    caplog.set_level(logging.DEBUG)
    run_sync(["leeds"], echo=lambda line: None)
    instance = dg.DagsterInstance.get()
    events = "\n".join(str(record.dagster_event or "") + str(record.user_message or "") for run in instance.get_runs() for record in instance.all_logs(run.run_id))
    everything = caplog.text + events + "".join(p.read_text(errors="replace") for p in paths.root.rglob("*.json") if p.is_file())
    secrets = [token, key.strip().splitlines()[1]]
    leaked = sum(everything.count(secret) for secret in secrets)
    STATS["secrets or foreign content leaked"] += leaked
    assert leaked == 0
    assert "401" in everything  # the failing token was exercised, and its error was logged without the token
