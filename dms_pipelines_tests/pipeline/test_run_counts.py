"""The counts the operator reads after a run, and the runs that must not say ok: a failed file, a source nothing matches."""

import json

import pandas as pd
from sqlalchemy import update

from dms_pipelines.cli import main
from dms_pipelines.config import operations_db_url
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.operations.db import engine_for, ingested_files, source_listings
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.warehouse.report import kpis
from dms_pipelines_tests.support import csv_lines, navigator_row


def vehicle(number: int, **changes) -> str:
    """A Navigator row with its own stock number, VIN and plate (the rows of one export must not share them)."""
    changes.setdefault("reg", f"AB71C{chr(65 + number % 26)}{chr(65 + number // 26 % 26)}")
    return navigator_row(f"S{number:03d}", **changes).replace("WF0XXXGCDXKA12345", f"WF0XXXGCDXK{number:06d}")


def write_export(paths, rows: list[str], name: str = "stock_full_20261202_0200.csv") -> None:
    folder = paths.inbox / "leeds"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(csv_lines(*rows), encoding="utf-8")


def test_run_prints_vehicles_and_issues_as_such_and_the_report_counts_quarantined_vehicles(paths, settings, capsys):
    good = [vehicle(n) for n in range(5)]
    two_issues = vehicle(900, price="-5", reg="NOT A PLATE!")  # one vehicle, two errors
    one_issue = vehicle(901, price="0")
    write_export(paths, good + [two_issues, one_issue])
    main(["run", "--dealer", "leeds"])
    out = capsys.readouterr().out
    assert "vehicles in 7, accepted 5, quarantined 2 (3 issues)" in out
    assert "files landed 1, failed 0" in out and "skipped by profile 0" in out
    rows = [r for r in kpis(paths.warehouse_db) if r["dealer_id"] == "leeds"]
    assert rows and {r["quarantined_vehicles"] for r in rows} == {2} and {r["quarantine_issues"] for r in rows} == {3}
    assert main(["report", "--format", "json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert {r["quarantined_vehicles"] for r in report["kpis"] if r["dealer_id"] == "leeds"} == {2}


def test_a_failed_full_export_is_not_hidden_by_a_delta_processed_after_it(paths, settings, capsys):
    write_export(paths, [vehicle(1)], "stock_full_20261202_0200.csv")
    assert main(["run", "--dealer", "leeds"]) == 0
    (paths.inbox / "leeds" / "stock_full_20261203_0200.csv").write_text("not,the,header\r\n1,2,3\r\n", encoding="utf-8")
    (paths.inbox / "leeds" / "stock_delta_20261203_0900.csv").write_text(csv_lines(vehicle(1, price="11995")), encoding="utf-8")
    assert main(["run", "--dealer", "leeds"]) == 1
    out = capsys.readouterr().out
    assert "stock_full_20261203_0200.csv failed" in out


def test_a_source_whose_files_match_none_of_the_profile_patterns_fails_the_run_and_names_them(paths, settings, capsys):
    write_export(paths, [vehicle(1)], "StockList-2026-12-02.csv")  # the DMS names its files differently
    assert main(["run", "--dealer", "leeds"]) == 1
    out = capsys.readouterr().out
    assert "StockList-2026-12-02.csv" in out and "match none of its profile's file patterns" in out


def test_a_dealer_with_no_export_for_longer_than_its_freshness_window_fails_the_run(paths, settings, capsys):
    write_export(paths, [vehicle(1)])
    assert main(["run", "--dealer", "leeds"]) == 0
    engine = engine_for(operations_db_url(settings, paths))
    long_ago = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=settings.validation.freshness_hours + 2)
    with engine.begin() as connection:
        connection.execute(update(ingested_files).where(ingested_files.c.dealer_id == "leeds").values(received_at=long_ago.to_pydatetime()))
    capsys.readouterr()
    assert main(["run", "--dealer", "leeds"]) == 1
    assert "no export received for" in capsys.readouterr().out


def test_a_new_dealer_with_an_empty_source_is_not_failed_before_its_freshness_window_ends(paths, settings, capsys):
    (paths.inbox / "leeds").mkdir(parents=True, exist_ok=True)
    assert main(["run", "--dealer", "leeds"]) == 0
    engine = engine_for(operations_db_url(settings, paths))
    long_ago = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=settings.validation.freshness_hours + 2)
    with engine.begin() as connection:
        connection.execute(update(source_listings).where(source_listings.c.dealer_id == "leeds").values(first_listed_at=long_ago.to_pydatetime()))
    assert main(["run", "--dealer", "leeds"]) == 1
    assert "no export received in the" in capsys.readouterr().out


def test_a_broken_profile_is_printed_whole_with_a_non_zero_exit_and_no_stack_trace(paths, settings, capsys):
    (paths.root / "profiles").mkdir(exist_ok=True)
    broken = (BUILTIN_PROFILES / "navigator_csv.yaml").read_text().replace("  colour: {column: Colour}", "  colour: {colum: Colour}")
    (paths.root / "profiles" / "navigator_csv.yaml").write_text(broken)
    generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=5, seed=1, deltas=0)
    assert main(["run", "--dealer", "leeds"]) == 1
    out = capsys.readouterr().out
    assert "navigator_csv.yaml" in out and "fields.colour" in out and "colum" in out
    assert "Traceback" not in out
