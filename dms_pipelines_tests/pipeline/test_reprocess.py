"""Reprocessing landed files through the current profile: a profile fixed after a failed file brings the file's vehicles into stock."""

from datetime import datetime

from sqlalchemy import select

from dms_pipelines.cli import main
from dms_pipelines.config import operations_db_url
from dms_pipelines.devtools.sample.generator import SampleDealer, export_name, generate_group, render_export
from dms_pipelines.operations.db import engine_for, ingested_files
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.stock.store import read_stock

NAVIGATOR = (BUILTIN_PROFILES / "navigator_csv.yaml").read_text()


def manifest(paths, settings, dealer_id: str = "leeds") -> list:
    engine = engine_for(operations_db_url(settings, paths))
    with engine.connect() as connection:
        return list(connection.execute(select(ingested_files).where(ingested_files.c.dealer_id == dealer_id).order_by(ingested_files.c.id)))


def break_profile(paths) -> None:
    """A data-root copy of the Navigator profile that reads the stock number from a column the file does not have."""
    (paths.root / "profiles").mkdir(exist_ok=True)
    (paths.root / "profiles" / "navigator_csv.yaml").write_text(NAVIGATOR.replace("stock_id: {column: Stock}", "stock_id: {column: StockNumber}"))


def fix_profile(paths) -> None:
    (paths.root / "profiles" / "navigator_csv.yaml").write_text(NAVIGATOR)


def test_a_profile_fixed_after_a_failed_file_and_reprocess_bring_its_vehicles_into_stock(paths, settings, capsys):
    report = generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=40, seed=5, deltas=0)
    break_profile(paths)
    assert main(["run", "--dealer", "leeds"]) == 1  # a failed file is a failure the operator must see
    (row,) = manifest(paths, settings)
    assert row.status == "failed" and "StockNumber" in row.error
    assert read_stock(paths.state, "leeds").empty
    fix_profile(paths)
    assert main(["run", "--dealer", "leeds"]) == 1  # fixing the profile alone changes nothing: the file stays failed
    capsys.readouterr()

    assert main(["reprocess", "--dealer", "leeds"]) == 0
    out = capsys.readouterr().out
    (row,) = manifest(paths, settings)
    assert row.status == "processed" and row.reprocessed_at is not None and "reprocess" in (row.reprocessed_by or "")
    assert row.file_name in out
    stock = read_stock(paths.state, "leeds")
    assert len(stock) == row.rows_accepted > 0
    assert len(stock) <= report.vehicles["leeds"]


def test_reprocess_names_the_file_it_takes_and_refuses_a_name_it_does_not_know(paths, settings, capsys):
    generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=20, seed=5, deltas=0)
    assert main(["run", "--dealer", "leeds"]) == 0
    (row,) = manifest(paths, settings)
    capsys.readouterr()
    assert main(["reprocess", "--dealer", "leeds", "--file", "no_such_file.csv"]) == 2
    err = capsys.readouterr().err
    assert "no_such_file.csv" in err and row.file_name in err  # names what there is to choose from
    assert main(["reprocess", "--dealer", "leeds"]) == 0  # nothing failed: nothing to do, said so
    assert "nothing to reprocess" in capsys.readouterr().out
    assert main(["reprocess", "--dealer", "leeds", "--file", row.file_name]) == 0
    (again,) = manifest(paths, settings)
    assert again.status == "processed" and again.reprocessed_at is not None


def test_reprocessing_a_delta_replays_the_deltas_after_it_so_the_newest_change_wins(paths, settings):
    generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=20, seed=5, deltas=0)
    assert main(["run", "--dealer", "leeds"]) == 0
    stock = read_stock(paths.state, "leeds")
    car = stock.head(1).assign(location="Forecourt")
    stock_id = str(car["stock_id"].iloc[0])
    old_price = float(car["price"].iloc[0])
    first = export_name("navigator_csv", "delta", datetime(2026, 12, 1, 9, 0))
    second = export_name("navigator_csv", "delta", datetime(2026, 12, 1, 10, 0))
    (paths.inbox / "leeds" / first).write_bytes(render_export(car.assign(price=old_price + 100).reset_index(drop=True), "navigator_csv"))
    (paths.inbox / "leeds" / second).write_bytes(render_export(car.assign(price=old_price + 200).reset_index(drop=True), "navigator_csv"))
    assert main(["run", "--dealer", "leeds"]) == 0
    assert main(["reprocess", "--dealer", "leeds", "--file", first]) == 0
    after = read_stock(paths.state, "leeds").set_index("stock_id")
    assert float(after.loc[stock_id, "price"]) == old_price + 200  # the later delta applied again after the reprocessed one
    statuses = {r.file_name: r.status for r in manifest(paths, settings)}
    assert statuses[first] == statuses[second] == "processed"


def test_a_failed_file_older_than_an_applied_full_export_is_superseded_not_reprocessed(paths, settings, capsys):
    generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=20, seed=5, deltas=0)
    break_profile(paths)
    assert main(["run", "--dealer", "leeds"]) == 1
    fix_profile(paths)
    stock_rows = read_stock(paths.state, "leeds")
    assert stock_rows.empty
    (old,) = manifest(paths, settings)
    newer = export_name("navigator_csv", "full", datetime(2026, 12, 2, 2, 0))
    generate_group(paths.root / "later", [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=15, seed=9, deltas=0)
    for path in (paths.root / "later" / "leeds").iterdir():
        (paths.inbox / "leeds" / newer).write_bytes(path.read_bytes())
    assert main(["run", "--dealer", "leeds"]) == 0  # the newer full export applied: the old failure no longer matters
    capsys.readouterr()
    assert main(["reprocess", "--dealer", "leeds"]) == 0
    out = capsys.readouterr().out
    assert "superseded" in out and old.file_name in out
    statuses = {r.file_name: r.status for r in manifest(paths, settings)}
    assert statuses[old.file_name] == "superseded" and statuses[newer] == "processed"
