"""Landing from SFTP and the inbox: exactly once by content, retries with backoff, readiness per file, and the sensor."""

import os
import time
from datetime import timedelta

import dagster as dg
import yaml
from sqlalchemy import select

from dms_pipelines.config import load_settings
from dms_pipelines.definitions import build_definitions
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.formats.profile import find_profile
from dms_pipelines.operations.db import engine_for, ingested_files
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.sources.base import RemoteFile, SourceError
from dms_pipelines.sources.landing import MAX_ATTEMPTS, land_files, utc_now
from dms_pipelines.sources.readiness import FileObservation, ready_files

PROFILES = [BUILTIN_PROFILES]


def manifest(engine):
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(ingested_files).order_by(ingested_files.c.id)).mappings()]


class FlakySource:
    """A source whose fetch fails for chosen names (the fault a network gives), otherwise writes fixed bytes."""

    def __init__(self, failing: set[str], transient: bool = True):
        self.failing, self.transient, self.fetches = failing, transient, 0

    def fetch(self, remote, destination):
        self.fetches += 1
        if remote.name in self.failing:
            raise SourceError(f"connection reset while reading {remote.name}", transient=self.transient)
        destination.write_bytes(remote.name.encode())

    def finish(self, remote):
        pass


def test_failed_download_is_retried_with_backoff_and_never_marked_done(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    profile = find_profile("navigator_csv", PROFILES)
    bad = RemoteFile("/r/stock_full_20261121_0200.csv", "stock_full_20261121_0200.csv", 10, 1.0)
    good = RemoteFile("/r/stock_delta_20261121_0300.csv", "stock_delta_20261121_0300.csv", 10, 2.0)
    source = FlakySource({bad.name})
    now = utc_now()
    report = land_files(source, [bad, good], "leeds", profile, tmp_path / "landing", engine, now=now)
    assert len(report.landed) == 1 and len(report.failed) == 1
    rows = {r["file_name"]: r for r in manifest(engine)}
    assert rows[bad.name]["status"] == "retry" and rows[good.name]["status"] == "landed"
    land_files(source, [bad, good], "leeds", profile, tmp_path / "landing", engine, now=now + timedelta(seconds=5))
    assert source.fetches == 2  # not due yet: no new attempt, and the later file's success did not mark it done
    for attempt in range(2, MAX_ATTEMPTS + 1):
        land_files(source, [bad], "leeds", profile, tmp_path / "landing", engine, now=now + timedelta(hours=attempt * 2))
    final = {r["file_name"]: r for r in manifest(engine)}[bad.name]
    assert final["status"] == "failed" and final["attempts"] == MAX_ATTEMPTS and "connection reset" in final["error"]


def test_a_landed_file_is_durable_before_its_manifest_row_says_landed(tmp_path, monkeypatch):
    """Its bytes and then its folder are fsynced before the row is written; a failed fetch leaves no temporary behind."""
    from dms_pipelines.kernels import atomic

    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    profile = find_profile("navigator_csv", PROFILES)
    good = RemoteFile("/r/stock_full_20261121_0200.csv", "stock_full_20261121_0200.csv", 10, 1.0)
    bad = RemoteFile("/r/stock_delta_20261121_0300.csv", "stock_delta_20261121_0300.csv", 10, 2.0)
    events, real_fsync = [], atomic._fsync

    def fsync(descriptor, kind):
        events.append((kind, len(manifest(engine))))
        real_fsync(descriptor, kind)

    monkeypatch.setattr(atomic, "_fsync", fsync)
    report = land_files(FlakySource({bad.name}), [good, bad], "leeds", profile, tmp_path / "landing", engine)
    assert len(report.landed) == 1
    assert events == [("file", 0), ("directory", 0)]  # both before the row existed
    landed = [p.name for p in (tmp_path / "landing" / "leeds").iterdir()]
    assert len(landed) == 1 and landed[0].endswith(good.name)  # the failed fetch's temporary is gone


def test_stability_and_marker_readiness():
    file = RemoteFile("/r/a.csv", "a.csv", 100, 10.0)
    ready, seen = ready_files([file], {}, now=1000, stability_seconds=30)
    assert ready == []
    ready, seen = ready_files([file], seen, now=1031, stability_seconds=30)
    assert ready == [file]
    grown = RemoteFile("/r/a.csv", "a.csv", 200, 11.0)
    assert ready_files([grown], seen, now=1040, stability_seconds=30)[0] == []
    assert ready_files([file], {}, now=0, stability_seconds=0, marker_pattern="{name}.done", marker_names=set())[0] == []
    assert ready_files([file], {}, now=0, stability_seconds=0, marker_pattern="{name}.done", marker_names={"a.csv.done"})[0] == [file]
    assert ready_files([file], {}, now=0, stability_seconds=0, marker_pattern="{stem}.ok", marker_names={"a.ok"})[0] == [file]
    empty = RemoteFile("/r/b.csv", "b.csv", 0, 1.0)
    partial = RemoteFile("/r/c.csv.part", "c.csv.part", 5, 1.0)
    assert ready_files([empty, partial], {"/r/b.csv": FileObservation("/r/b.csv", 0, 1.0, 0)}, now=999, stability_seconds=1)[0] == []


def sftp_config(data_root, server, remote_dir) -> None:
    path = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["dealers"][0]["source"] = {
        "kind": "sftp",
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "known_hosts": str(server.known_hosts),
        "remote_dir": str(remote_dir),
        "patterns": ["stock_*.csv"],
        "private_key_env": "DMS_LEEDS_SFTP_KEY",
        "stability_seconds": 0,
        "after_fetch": "keep",
    }
    path.write_text(yaml.safe_dump(raw))


def test_dealer_run_lands_from_sftp_once_and_the_sensor_asks_for_new_files_only(data_root, paths, sshd_server, remote_dir, monkeypatch):
    monkeypatch.setenv("DMS_LEEDS_SFTP_KEY", sshd_server.client_key_text)
    sftp_config(data_root, sshd_server, remote_dir)
    generate_group(remote_dir.parent / "gen", [SampleDealer("leeds", "Leeds", "navigator_csv")], 120, seed=3, deltas=1)
    for file in (remote_dir.parent / "gen" / "leeds").iterdir():
        os.replace(file, remote_dir / file.name)
    settings = load_settings(data_root / "config" / "dms_pipelines.yaml")
    defs = build_definitions(settings, paths, data_root / "config" / "dms_pipelines.yaml")
    instance = dg.DagsterInstance.ephemeral()
    sensor = defs.resolve_sensor_def("new_exports")

    pipeline = PipelineResource(data_root=str(paths.root), config_path=str(data_root / "config" / "dms_pipelines.yaml"))

    def evaluate():
        result = sensor(dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}))
        return [r for r in (result if isinstance(result, list) else []) if r.partition_key == "leeds"]

    requests = evaluate()
    leeds = [r for r in requests if r.partition_key == "leeds"]
    assert len(leeds) == 1 and "stock_full_20261121_0200.csv" in leeds[0].tags["dms_pipelines/files"]

    result = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key="leeds")
    assert result.success
    rows = manifest(engine_for(paths.operations_db_url))
    assert [(r["file_name"], r["status"]) for r in rows] == [("stock_full_20261121_0200.csv", "processed"), ("stock_delta_20261121_0300.csv", "processed")]
    assert all(r["sha256"] and r["source_path"].startswith(str(remote_dir)) for r in rows)
    assert sorted(p.name.split("_", 2)[2] for p in (paths.landing / "leeds").iterdir()) == ["stock_delta_20261121_0300.csv", "stock_full_20261121_0200.csv"]
    assert evaluate() == []

    late = remote_dir / "stock_delta_20261121_0400.csv"
    late.write_bytes((remote_dir / "stock_delta_20261121_0300.csv").read_bytes().replace(b"Reserved", b"Sold"))
    os.utime(late, (time.time() - 86_400 * 3,) * 2)  # copied in late, with an old mtime: still taken
    assert [r.tags["dms_pipelines/files"] for r in evaluate()] == ["stock_delta_20261121_0400.csv"]


def test_a_connection_cut_mid_transfer_leaves_nothing_and_the_next_attempt_succeeds(sshd_server, remote_dir, tmp_path, monkeypatch):
    import paramiko

    from dms_pipelines.sources.sftp import SftpSettings, SftpSource

    (remote_dir / "stock_full_20261121_0200.csv").write_bytes(os.urandom(500_000))
    settings = SftpSettings(
        host=sshd_server.host,
        port=sshd_server.port,
        username=sshd_server.username,
        known_hosts=sshd_server.known_hosts,
        remote_dir=str(remote_dir),
        patterns=("*.csv",),
        private_key_path=sshd_server.client_key_path,
    )
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    profile = find_profile("navigator_csv", PROFILES)
    real_getfo = paramiko.SFTPClient.getfo

    def cut_after_some_bytes(self, remotepath, fl, **kwargs):
        fl.write(b"partial")
        raise EOFError("connection reset by peer")

    monkeypatch.setattr(paramiko.SFTPClient, "getfo", cut_after_some_bytes)
    now = utc_now()
    with SftpSource(settings) as source:
        report = land_files(source, source.list_files(), "leeds", profile, tmp_path / "landing", engine, now=now)
    assert report.failed and not report.landed
    assert list((tmp_path / "landing" / "leeds").iterdir()) == []  # no partial file left behind
    monkeypatch.setattr(paramiko.SFTPClient, "getfo", real_getfo)
    with SftpSource(settings) as source:
        report = land_files(source, source.list_files(), "leeds", profile, tmp_path / "landing", engine, now=now + timedelta(minutes=5))
    assert len(report.landed) == 1
    [landed] = list((tmp_path / "landing" / "leeds").iterdir())
    assert landed.read_bytes() == (remote_dir / "stock_full_20261121_0200.csv").read_bytes()
    assert [r["status"] for r in manifest(engine)] == ["landed"]


class BytesSource:
    """A source whose files hold the bytes given per name (the content a DMS wrote)."""

    def __init__(self, content: dict[str, bytes]):
        self.content = content

    def fetch(self, remote, destination):
        destination.write_bytes(self.content[remote.path])

    def finish(self, remote):
        pass


def land_one(engine, tmp_path, path: str, data: bytes, mtime: float):
    profile = find_profile("navigator_csv", PROFILES)
    remote = RemoteFile(path, path.rsplit("/", 1)[-1], len(data), mtime)
    land_files(BytesSource({path: data}), [remote], "leeds", profile, tmp_path / "landing", engine)
    return manifest(engine)[-1]


def test_a_new_file_in_sequence_is_new_data_whatever_its_bytes(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    sold, back = b"sold", b"back on sale"
    statuses = [
        land_one(engine, tmp_path, f"/r/stock_delta_20261121_{hour:02d}00.csv", data, float(hour))["status"]
        for hour, data in ((9, sold), (10, back), (11, sold))  # sold, back on sale, sold again: byte-identical to 09:00
    ]
    assert statuses == ["landed", "landed", "landed"]
    resent_full = land_one(engine, tmp_path, "/r/stock_full_20261122_0200.csv", sold, 20.0)  # the same bytes re-sent under a new name
    assert resent_full["status"] == "landed"


def test_a_redelivery_of_the_same_file_is_a_duplicate(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    first = land_one(engine, tmp_path, "/r/stock_delta_20261121_0900.csv", b"rows", 1.0)
    land_one(engine, tmp_path, "/r/stock_delta_20261121_1000.csv", b"other rows", 2.0)
    again = land_one(engine, tmp_path, "/r/stock_delta_20261121_0900.csv", b"rows", 3.0)  # touched and listed again later
    assert (first["status"], again["status"]) == ("landed", "duplicate") and f"#{first['id']}" in again["error"]
    corrected = land_one(engine, tmp_path, "/r/stock_delta_20261121_0900.csv", b"corrected rows", 4.0)  # same name, new bytes
    assert corrected["status"] == "landed"


def test_an_undated_name_is_a_duplicate_only_of_the_last_file_the_dealer_sent(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    assert land_one(engine, tmp_path, "/r/stock_delta_latest.csv", b"sold", 1.0)["status"] == "landed"
    assert land_one(engine, tmp_path, "/r/stock_delta_latest.csv", b"sold", 2.0)["status"] == "duplicate"  # rewritten, same bytes, nothing between
    assert land_one(engine, tmp_path, "/r/stock_delta_latest.csv", b"back on sale", 3.0)["status"] == "landed"
    assert land_one(engine, tmp_path, "/r/stock_delta_latest.csv", b"sold", 4.0)["status"] == "landed"  # sold again: new data
