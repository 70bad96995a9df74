"""The operational database: processes that start together on a new database all get their tables."""

import multiprocessing
import sqlite3

from sqlalchemy import inspect, text

from dms_pipelines.operations.db import engine_for, metadata


def _open_when_all_ready(url: str, together) -> None:
    together.wait(60)
    engine_for(url)


def _open_each_when_all_ready(folder: str, trials: int, together, failures) -> None:
    import sqlite3

    from dms_pipelines.operations.db import set_sqlite_pragmas

    for trial in range(trials):
        together.wait(60)
        try:
            connection = sqlite3.connect(f"{folder}/{trial}.sqlite", timeout=60)
            set_sqlite_pragmas(connection, None)
            connection.close()
        except sqlite3.Error as error:
            failures.put(f"{trial}: {error}")


def test_processes_opening_new_databases_at_once_all_switch_them_to_wal(tmp_path):
    # Switching a new database to WAL from several processes at once used to fail one of them now and then with
    # "database is locked" (SQLite refuses at once where waiting would deadlock): 14 of 480 connections in 60 trials.
    context = multiprocessing.get_context("spawn")
    processes, trials = 8, 40
    together, failures = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_open_each_when_all_ready, args=(str(tmp_path), trials, together, failures)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0] * processes
    assert failures.empty(), failures.get()
    for trial in range(trials):
        with sqlite3.connect(tmp_path / f"{trial}.sqlite") as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_processes_creating_the_tables_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    # spawned, not forked: a fork of the test process copies locks that its other threads (thread pools, a simulator) may hold
    context = multiprocessing.get_context("spawn")
    together = context.Barrier(6)  # every process has started up before any opens the database
    workers = [context.Process(target=_open_when_all_ready, args=(url, together)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert set(metadata.tables) <= set(inspect(engine_for(url)).get_table_names())


def test_a_database_from_before_group_runs_keeps_its_sync_runs_and_takes_one_row_per_dealer(tmp_path):
    import sqlite3
    from datetime import datetime, timezone

    from dms_pipelines.operations.manifest import record_sync_run

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # the table as earlier versions created it
        old.execute(
            'CREATE TABLE sync_runs (run_id VARCHAR(64) NOT NULL, dealer_id VARCHAR(64) NOT NULL, "trigger" VARCHAR(32), started_at DATETIME, '
            "finished_at DATETIME NOT NULL, files INTEGER, records INTEGER, accepted INTEGER, quarantined INTEGER, held INTEGER, "
            "vehicles INTEGER, outcome VARCHAR(16) NOT NULL, PRIMARY KEY (run_id))"
        )
        old.execute("CREATE INDEX ix_sync_runs_dealer_id ON sync_runs (dealer_id)")
        old.execute("INSERT INTO sync_runs (run_id, dealer_id, finished_at, vehicles, outcome) VALUES ('r0', 'leeds', ?, 5, 'ok')", [datetime.now(timezone.utc).isoformat()])
    engine = engine_for(f"sqlite:///{path}")
    assert inspect(engine).get_pk_constraint("sync_runs")["constrained_columns"] == ["run_id", "dealer_id"]
    for dealer in ("leeds", "york", "sheffield"):
        record_sync_run(engine, "group-1", dealer, "nightly", 10)
    record_sync_run(engine, "group-1", "york", "nightly", 11)  # re-executed: replaced, not added
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT run_id, dealer_id, vehicles FROM sync_runs ORDER BY run_id, dealer_id")).fetchall()
    assert [tuple(r) for r in rows] == [("group-1", "leeds", 10), ("group-1", "sheffield", 10), ("group-1", "york", 11), ("r0", "leeds", 5)]


def test_a_database_from_before_change_sequences_gets_the_column(tmp_path):
    import sqlite3

    from dms_pipelines.operations import db

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:  # the ledger as an earlier version created it
        connection.execute(
            "CREATE TABLE listing_ledger (marketplace VARCHAR(32), dealer_id VARCHAR(64), item_key TEXT, content_hash VARCHAR(64), pending_hash VARCHAR(64), "
            "external_id TEXT, generation INTEGER NOT NULL, content TEXT, state VARCHAR(32), status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, "
            "last_error TEXT, updated_at DATETIME NOT NULL, acknowledged_at DATETIME, PRIMARY KEY (marketplace, dealer_id, item_key))"
        )
        connection.execute("INSERT INTO listing_ledger VALUES ('autotrader', 'leeds', 'A1', 'h', NULL, 'x', 0, NULL, 'FORECOURT', 'acknowledged', 0, NULL, '2026-01-01', NULL)")
    engine = db.engine_for(f"sqlite:///{path}")
    from dms_pipelines.delivery import ledger

    assert ledger.ledger_rows(engine, "autotrader", "leeds")["A1"]["change_seq"] == 0
    assert ledger.mark_pending(engine, "autotrader", "leeds", "A1", "h2") == 1
