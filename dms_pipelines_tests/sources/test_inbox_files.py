"""Hostile files in an inbox (issue 18, item 7): symbolic links, names that forge log lines, UTF-16/32 XML with a DOCTYPE,
empty files. Each gets its own clear error naming it and a failed manifest row; nothing of it reaches landing; the good
files beside it still land and apply. Real files in temporary folders, a real symlink, the real Dagster job."""

import codecs
import logging
import os

import dagster as dg
import duckdb
import pytest
from sqlalchemy import select

from dms_pipelines.definitions import build_definitions
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.formats.profile import find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.safe_xml import UnsafeXmlError, check_prolog
from dms_pipelines.formats.values import MappingError
from dms_pipelines.operations.db import engine_for, ingested_files
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.pipeline import ingest
from dms_pipelines.sources.landing import land_files
from dms_pipelines.sources.local_inbox import LocalInboxSource
from dms_pipelines_tests.support import SECRET_FILE_MARKER, STATS, put, settings_for, star_document, star_item

PROFILES = [BUILTIN_PROFILES]
FORGED = "2026-11-21 ERROR forged: everything is fine"
ENTITY_VALUE = "pwned-by-entity"


def escaped(name: str) -> str:
    """How the pipeline shows these (ASCII but for a bidi override) names: control characters as Python escapes."""
    return name.encode("unicode_escape").decode("ascii")


def manifest(paths) -> list[dict]:
    with engine_for(paths.operations_db_url).connect() as connection:
        return [dict(r) for r in connection.execute(select(ingested_files).order_by(ingested_files.c.id)).mappings()]


def generate(paths, settings, deltas: int = 0) -> None:
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], 90, seed=7, deltas=deltas)


def run_dealer(settings, paths, dealer: str, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    result = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key=dealer, raise_on_error=False)
    return result, instance


def event_messages(instance, run_id: str) -> list[str]:
    """Every message of the run's event log: what the UI and `dagster` print, one entry per record."""
    messages = []
    for record in instance.all_logs(run_id):
        messages.append(record.user_message or "")
        if record.dagster_event is not None and record.dagster_event.message:
            messages.append(record.dagster_event.message)
    return messages


def landed_bytes(paths) -> list[bytes]:
    return [p.read_bytes() for p in paths.landing.rglob("*") if p.is_file()]


def good_files_applied(paths, dealer: str, names: list[str]) -> None:
    rows = {r["file_name"]: r["status"] for r in manifest(paths) if r["dealer_id"] == dealer}
    assert all(rows.get(name) == "processed" for name in names), rows
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM stock_current WHERE dealer_id = ?", [dealer]).fetchall()[0][0] > 0


# --- symbolic links ---------------------------------------------------------------------------------------------------


def test_a_symbolic_link_in_the_inbox_is_refused_and_its_target_never_landed(paths, settings, tmp_path):
    generate(paths, settings)
    inbox = paths.inbox / "york"
    good = sorted(p.name for p in inbox.iterdir())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "not_an_export.xml"  # a readable star5 document: followed, it would be landed and applied
    secret.write_text(star_document(star_item("SECRET1")).replace("One owner &amp; FSH", SECRET_FILE_MARKER), encoding="utf-8")
    targets = {"inventory_full_202611220200.xml": secret, "inventory_delta_202611220300.xml": outside / "gone.xml"}  # the second dangles
    if os.path.exists("/etc/passwd"):
        targets["inventory_full_202611220400.xml"] = "/etc/passwd"
    for name, target in targets.items():
        os.symlink(target, inbox / name)
    STATS["hostile inputs tried"] += len(targets)

    result, instance = run_dealer(settings, paths, "york")

    for target in targets.values():
        if os.path.exists(target):
            assert all(data != open(target, "rb").read() for data in landed_bytes(paths))
    assert not any(SECRET_FILE_MARKER.encode() in data or b"SECRET1" in data for data in landed_bytes(paths))
    written = [p for p in paths.root.rglob("*") if p.is_file() and not p.is_relative_to(paths.inbox)]  # everything the run wrote
    leaked = sum(p.read_bytes().count(SECRET_FILE_MARKER.encode()) + p.read_bytes().count(b"SECRET1") for p in written)
    STATS["secrets or foreign content leaked"] += leaked
    assert leaked == 0
    rows = {r["file_name"]: r for r in manifest(paths)}
    for name in targets:
        assert rows[name]["status"] == "failed" and rows[name]["landed_path"] is None
        assert rows[name]["error"].startswith(f"{name}: is a symbolic link") and "refused" in rows[name]["error"]
    messages = event_messages(instance, result.run_id)
    assert all(any(name in m and "symbolic link" in m for m in messages) for name in targets)
    good_files_applied(paths, "york", good)

    assert result.output_for_node("landed_exports")["failed"] and all(escaped(n) in " ".join(result.output_for_node("landed_exports")["failed"]) for n in targets)
    again, _ = run_dealer(settings, paths, "york", instance)  # landing records and reports it once, not on every run
    assert [r["file_name"] for r in manifest(paths)].count("inventory_full_202611220200.xml") == 1
    assert again.output_for_node("landed_exports")["failed"] == []


def test_a_file_swapped_for_a_link_after_the_listing_is_refused(tmp_path):
    inbox, secret = tmp_path / "inbox", tmp_path / "secret.csv"
    inbox.mkdir()
    secret.write_bytes(b"Stock,Reg\n" + SECRET_FILE_MARKER.encode() + b",X\n")
    export = inbox / "stock_full_20261121_0200.csv"
    export.write_bytes(b"Stock,Reg\n1,A\n" + b"x" * (len(secret.read_bytes()) - 14))  # same size: the swap is not seen by size
    source = LocalInboxSource(inbox)
    [listed] = source.list_files()
    export.unlink()
    os.symlink(secret, export)
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.db'}")
    report = land_files(source, [listed], "leeds", find_profile("navigator_csv", PROFILES), tmp_path / "landing", engine)
    assert report.landed == [] and len(report.failed) == 1 and "symbolic link" in report.failed[0] and export.name in report.failed[0]
    assert [p for p in (tmp_path / "landing").rglob("*") if p.is_file()] == []
    with engine.connect() as connection:
        [(status, error)] = connection.execute(select(ingested_files.c.status, ingested_files.c.error)).all()
    assert status == "failed" and "symbolic link" in error


def test_a_link_and_an_empty_file_on_an_sftp_server_are_refused(sshd_server, remote_dir, tmp_path):
    from dms_pipelines.sources.sftp import SftpSource

    put(remote_dir, "stock_full_20261121_0200.csv", b"Stock,Reg\n1,A\n")
    put(remote_dir, "stock_delta_20261121_0300.csv", b"")
    os.symlink("/etc/passwd", remote_dir / "stock_full_20261121_0400.csv")
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        listed = source.list_files()
        assert [f.name for f in listed] == ["stock_full_20261121_0200.csv"]
        problems = {f.name: f.problem for f in getattr(source, "refused", [])}
        assert "symbolic link" in problems["stock_full_20261121_0400.csv"] and "empty file" in problems["stock_delta_20261121_0300.csv"]
        engine = engine_for(f"sqlite:///{tmp_path / 'ops.db'}")
        report = land_files(source, listed + source.refused, "leeds", find_profile("navigator_csv", PROFILES), tmp_path / "landing", engine)
    assert len(report.landed) == 1 and len(report.failed) == 2
    assert [p.read_bytes() for p in (tmp_path / "landing").rglob("*") if p.is_file()] == [b"Stock,Reg\n1,A\n"]


# --- names with control characters -------------------------------------------------------------------------------------


def test_a_name_with_a_newline_forges_no_log_line(paths, settings, caplog):
    generate(paths, settings)
    inbox = paths.inbox / "leeds"
    good = sorted(p.name for p in inbox.iterdir())
    full = inbox / good[0]
    names = {
        f"stock_full_20261121_0200.csv\n{FORGED}.csv": full.read_bytes(),  # a readable export under a forging name
        f"stock_full_20261122_0200.csv\r\n{FORGED}.csv": b"not a header\r\n",  # an unreadable one: its error names it
        "stock_full_20261122_0300\x1b[2K\x1b[1A.csv": b"garbage\r\n",  # ANSI: erase the line, cursor up
        "stock_full_20261122_0400_\u202evsc.csv": b"garbage\r\n",  # a right-to-left override: shown as ..._csv.csv
    }
    for name, content in names.items():
        (inbox / name).write_bytes(content)
    STATS["hostile inputs tried"] += len(names)
    caplog.set_level(logging.DEBUG)
    instance = dg.DagsterInstance.ephemeral()

    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    pipeline = PipelineResource(data_root=str(paths.root), config_path=str(paths.root / "config" / "dms_pipelines.yaml"))
    requests = defs.resolve_sensor_def("new_exports")(dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}))
    tags = [r.tags["dms_pipelines/files"] for r in requests if r.partition_key == "leeds"]
    result, _ = run_dealer(settings, paths, "leeds", instance)

    messages = event_messages(instance, result.run_id) + [r.getMessage() for r in caplog.records]
    for message in messages:
        assert not any(c in message for c in "\r\x1b\u202e") and f"\n{FORGED}" not in message, message
    assert FORGED not in caplog.text.replace(f"\\n{FORGED}", "").replace(f"\\r{FORGED}", "")  # only ever after an escape
    rows = {r["source_path"].rsplit("/", 1)[-1]: r for r in manifest(paths)}
    for name in names:
        row = rows[name]
        assert row["status"] == "failed" and row["landed_path"] is None and row["file_name"] == escaped(name)
        assert row["error"].startswith(escaped(name)) and "control" in row["error"] and "refused" in row["error"]
        assert any(escaped(name) in m for m in messages)  # reported, escaped
    assert "stock_full_20261121_0200.csv\\n2026-11-21 ERROR forged" in rows[list(names)[0]]["error"]
    assert tags and not any(c in tags[0] for c in "\n\r\x1b\u202e") and escaped(list(names)[0])[:40] in tags[0]  # the sensor's run tag
    assert len(landed_bytes(paths)) == len(good)
    good_files_applied(paths, "leeds", good)


def test_shown_escapes_what_could_forge_or_disguise_and_nothing_else():
    from dms_pipelines.sources.base import shown

    assert shown("stock_full_20261121_0200.csv") == "stock_full_20261121_0200.csv"
    assert shown("Stock Café £ 2026.csv") == "Stock Café £ 2026.csv"
    assert shown("a\nb\r\tc\x1b[1m\u202ed\x00") == "a\\nb\\r\\tc\\x1b[1m\\u202ed\\x00"
    assert shown("a\\nb") == "a\\\\nb" != shown("a\nb")  # one name, one way to show it
    assert shown("bad\udcff.csv") == "bad\\udcff.csv"


# --- UTF-16/32 XML with a DOCTYPE ---------------------------------------------------------------------------------------

WIDE = [(codec, bom) for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be") for bom in (True, False)]
BOMS = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE}


def wide_document(codec: str, bom: bool, doctype: bool) -> bytes:
    prolog = f'<!DOCTYPE r [<!ENTITY xxe "{ENTITY_VALUE}">]>' if doctype else ""
    text = star_document(star_item("&xxe;" if doctype else "Y001"), star_item("Y002"), prolog=prolog).replace('encoding="UTF-8"', f'encoding="{codec[:6].upper()}"')
    return (BOMS[codec] if bom else b"") + text.encode(codec)


@pytest.mark.parametrize("codec,bom", WIDE)
def test_utf16_and_utf32_xml_declaring_entities_is_refused(tmp_path, codec, bom):
    path = tmp_path / f"inventory_full_202611210200_{codec}{'_bom' if bom else ''}.xml"
    path.write_bytes(wide_document(codec, bom, doctype=True))
    STATS["hostile inputs tried"] += 1
    with pytest.raises(MappingError, match="DOCTYPE or entities") as refused:
        read_export(path, find_profile("star5_xml", PROFILES), "york")
    assert str(refused.value).startswith(path.name)


@pytest.mark.parametrize("codec,bom", WIDE)
def test_utf16_xml_without_a_doctype_still_parses(tmp_path, codec, bom):
    path = tmp_path / "inventory_full_202611210200.xml"
    path.write_bytes(wide_document(codec, bom, doctype=False))
    try:
        result = read_export(path, find_profile("star5_xml", PROFILES), "york")
    except MappingError as error:  # libxml2 cannot read UTF-32 with a byte-order mark: refused, clearly, as malformed
        assert codec.startswith("utf-32") and bom and str(error).startswith(f"{path.name}: malformed XML")
        return
    assert result.rows["stock_id"].tolist() == ["Y001", "Y002"]


@pytest.mark.parametrize(
    "content,reason",
    [
        ("<r/>".encode("utf-16-le"), "NUL bytes"),  # UTF-16 without a BOM or <?xml: cannot be told from binary
        (b'<?xml version="1.0" encoding="x-no-such"?><r/>', "cannot be decoded"),
        ('<?xml version="1.0"?><r/>'.encode("cp037"), "EBCDIC"),
        (codecs.BOM_UTF16_LE + '<?xml version="1.0" encoding="ISO-8859-1"?><r/>'.encode("utf-16-le"), "declares encoding"),
        (b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x "y"+AD4-+AF0-+AD4-<r/>', "DOCTYPE or entities"),
        (codecs.BOM_UTF16_BE + b"\x00<\x00?\xdc\x00", "not valid utf-16-be"),
    ],
)
def test_a_prolog_that_cannot_be_checked_is_refused(tmp_path, content, reason):
    path = tmp_path / "x.xml"
    path.write_bytes(content)
    with pytest.raises(UnsafeXmlError, match=reason):
        check_prolog(path)


def test_utf16_xml_with_entities_fails_its_file_in_the_dealer_run(paths, settings):
    generate(paths, settings)
    inbox = paths.inbox / "york"
    good = sorted(p.name for p in inbox.iterdir())
    hostile = {
        "inventory_full_202611220200.xml": wide_document("utf-16-le", True, doctype=True),
        "inventory_delta_202611220300.xml": wide_document("utf-16-be", False, doctype=True),
    }
    for name, content in hostile.items():
        (inbox / name).write_bytes(content)
    STATS["hostile inputs tried"] += len(hostile)
    result, instance = run_dealer(settings, paths, "york")
    rows = {r["file_name"]: r for r in manifest(paths)}
    for name in hostile:
        assert rows[name]["status"] == "failed" and rows[name]["error"].startswith(name) and "DOCTYPE or entities" in rows[name]["error"]
    messages = event_messages(instance, result.run_id)
    assert all(any(name in m and "DOCTYPE" in m for m in messages) for name in hostile)
    assert not any(ENTITY_VALUE in p.read_text(errors="replace") for p in paths.root.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".xml"))
    good_files_applied(paths, "york", good)


# --- empty files -------------------------------------------------------------------------------------------------------


def test_an_empty_file_is_reported_once_and_its_later_version_lands(paths, settings, tmp_path):
    generate_group(tmp_path / "gen", [SampleDealer("leeds", "Leeds", "navigator_csv")], 60, seed=9, deltas=1)
    inbox = paths.inbox / "leeds"
    inbox.mkdir(parents=True)
    full, delta = sorted((tmp_path / "gen" / "leeds").glob("stock_full_*.csv"))[0], sorted((tmp_path / "gen" / "leeds").glob("stock_delta_*.csv"))[0]
    os.replace(full, inbox / full.name)
    (inbox / delta.name).write_bytes(b"")
    STATS["hostile inputs tried"] += 1

    first, instance = run_dealer(settings, paths, "leeds")
    [row] = [r for r in manifest(paths) if r["file_name"] == delta.name]
    assert row["status"] == "failed" and row["error"].startswith(f"{delta.name}: empty file") and row["size_bytes"] == 0
    assert any(delta.name in m and "empty file" in m for m in event_messages(instance, first.run_id))
    good_files_applied(paths, "leeds", [full.name])

    second, _ = run_dealer(settings, paths, "leeds", instance)  # landing records and reports it once, not on every run
    assert [r["file_name"] for r in manifest(paths)].count(delta.name) == 1
    assert second.output_for_node("landed_exports")["failed"] == []

    (inbox / delta.name).write_bytes(delta.read_bytes())  # the writer finished after all
    run_dealer(settings, paths, "leeds", instance)
    statuses = [r["status"] for r in manifest(paths) if r["file_name"] == delta.name]
    assert statuses == ["failed", "processed"]


def test_an_empty_file_is_reported_only_once_it_is_stable(paths, settings):
    dealer = settings.dealer("leeds")
    dealer = dealer.model_copy(update={"source": dealer.source.model_copy(update={"stability_seconds": 30})})
    inbox = paths.inbox / "leeds"
    inbox.mkdir(parents=True)
    paths.state.mkdir(parents=True, exist_ok=True)
    (inbox / "stock_full_20261121_0200.csv").write_bytes(b"")
    (inbox / "stock_delta_20261121_0300.csv").write_bytes(b"")
    engine = engine_for(paths.operations_db_url)
    source = ingest.open_source(dealer, paths)
    assert ingest.ready_files(source, dealer, engine, now=1000.0) == []  # a writer may still be filling them
    (inbox / "stock_delta_20261121_0300.csv").write_bytes(b"Stock\r\n")  # and this one it was
    assert ingest.ready_files(source, dealer, engine, now=1020.0) == []
    ready = ingest.ready_files(source, dealer, engine, now=1031.0)
    assert [(f.name, f.problem is not None) for f in ready] == [("stock_full_20261121_0200.csv", True)]
    report = land_files(source, ready, "leeds", ingest.profile_for(dealer, paths), paths.landing, engine)
    assert len(report.failed) == 1 and report.failed[0].startswith("stock_full_20261121_0200.csv: empty file")
    assert [p for p in paths.landing.rglob("*") if p.is_file()] == []


def test_a_file_swapped_for_a_link_on_the_sftp_server_after_the_listing_is_refused(sshd_server, remote_dir, tmp_path):
    from dms_pipelines.sources.sftp import SftpSource

    put(remote_dir, "stock_full_20261121_0200.csv", b"Stock,Reg\n1,A\n")
    (tmp_path / "secret").write_bytes(b"Stock,Reg\n" + b"x" * 4)  # the same size
    with SftpSource(settings_for(sshd_server, remote_dir)) as source:
        [listed] = source.list_files()
        (remote_dir / listed.name).unlink()
        os.symlink(tmp_path / "secret", remote_dir / listed.name)
        engine = engine_for(f"sqlite:///{tmp_path / 'ops.db'}")
        report = land_files(source, [listed], "leeds", find_profile("navigator_csv", PROFILES), tmp_path / "landing", engine)
    assert report.landed == [] and len(report.failed) == 1 and "symbolic link" in report.failed[0]
    assert [p for p in (tmp_path / "landing").rglob("*") if p.is_file()] == []


def test_an_encoding_name_with_a_nul_byte_is_refused_not_a_crash(tmp_path):
    from dms_pipelines.formats.safe_xml import UnsafeXmlError, check_prolog

    path = tmp_path / "inventory_full_nul.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="\x00UTF-8"?><Inventory/>')  # found by test_xml_with_bytes_spliced_in
    with pytest.raises(UnsafeXmlError, match="declares encoding"):
        check_prolog(path)
