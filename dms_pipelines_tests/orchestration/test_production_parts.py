"""The same code on production parts: Dagster's instance and our operational state on a real PostgreSQL, the group run's steps on two Celery workers over a real Redis."""

import csv
import hashlib
import multiprocessing
import os
import queue
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from sqlalchemy import select

from dms_pipelines.config import load_settings, operations_db_url
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.devtools.servers import CeleryWorkers, PostgresServer, RedisServer, find_postgres, find_redis
from dms_pipelines.devtools.simulator import StockApiSimulator
from dms_pipelines.operations.db import deliveries, engine_for, listing_ledger, sync_runs
from dms_pipelines.operations.run_health import current_problems
from dms_pipelines.orchestration.assets import TRIGGER_TAG
from dms_pipelines.orchestration.celery import BACKEND_ENV, BROKER_ENV, JOB_NAME, group_celery_executor, group_sync_celery_job, pipeline_resources
from dms_pipelines.orchestration.group import account_files, batches, mapping_key, sync_dealers
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.paths import PROJECT_ROOT, DataPaths
from dms_pipelines.pipeline.publish import freshness_hours
from dms_pipelines.warehouse.tables import ensure_catalog
from dms_pipelines_tests.support import TEST_TOKEN

OPS_ENV = "DMS_OPS_DB_URL"
SPAWNED = {"max_concurrent": 2, "start_method": "spawn"}  # the embedded default's executor, as test_group_sync runs it
ONE_DEALER_PER_STEP = {"ops": {"dealers_to_sync": {"config": {"dealers_per_step": 1}}}}
POSTGRES_STORAGE = ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage")
# dagster-celery registers its step task on a new Celery app for each run; Celery 5.7 warns about the name each time
pytestmark = pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")


# --- the servers: one PostgreSQL cluster and one Redis server for the module, a database (and broker database) per test ---


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL cluster on a free loopback port (never skipped: CI installs the server)."""
    if find_postgres()[0] is None:
        pytest.fail(find_postgres()[1])
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server():
    """A real Redis server on a free loopback port, the Celery broker and result backend (never skipped: CI installs it)."""
    if find_redis()[0] is None:
        pytest.fail(find_redis()[1])
    with RedisServer() as server:
        yield server


class Production:
    """A test's data root on the production parts: DAGSTER_HOME's dagster.yaml on PostgreSQL, the operational state in
    another PostgreSQL database (operations_db_url_env), the broker on Redis; `workers()` starts the two Celery workers."""

    def __init__(self, paths: DataPaths, postgres: PostgresServer, redis: RedisServer, home: Path, base: Path, monkeypatch):
        self.paths, self.postgres, self.base = paths, postgres, base
        self.dagster_db, self.ops_db = postgres.create_database(), postgres.create_database()
        broker_db = redis.new_db()
        self.broker = self.backend = redis.url(broker_db)
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "storage": {"postgres": {"postgres_url": postgres.url(self.dagster_db, driver="psycopg2")}}}))
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv(OPS_ENV, postgres.url(self.ops_db))
        monkeypatch.setenv(BROKER_ENV, self.broker)
        monkeypatch.setenv(BACKEND_ENV, self.backend)
        self.edit_config(lambda raw: raw.update(operations_db_url_env=OPS_ENV))
        with dg.DagsterInstance.get():  # Dagster's schema, created once: workers starting at once would race to create it
            pass
        self._workers: list[CeleryWorkers] = []

    @property
    def config_file(self) -> Path:
        return self.paths.root / "config" / "dms_pipelines.yaml"

    def edit_config(self, change) -> None:
        raw = yaml.safe_load(self.config_file.read_text())
        change(raw)
        self.config_file.write_text(yaml.safe_dump(raw, sort_keys=False))

    def settings(self):
        return load_settings(self.config_file)

    def engine(self):
        return engine_for(operations_db_url(self.settings(), self.paths))

    def workers(self) -> CeleryWorkers:
        """Two dagster-celery workers with this test's environment (its data root, DAGSTER_HOME, secrets), stopped at teardown."""
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environment.get("PYTHONPATH", "")]))  # this module's stand-in job
        workers = CeleryWorkers(self.base / f"celery-{len(self._workers)}", self.broker, self.backend, environment, count=2, cwd=PROJECT_ROOT)
        self._workers.append(workers)
        return workers.start()

    def stop(self) -> None:
        for workers in self._workers:
            workers.stop()


@pytest.fixture
def production(paths, postgres, redis_server, tmp_path, monkeypatch):
    parts = Production(paths, postgres, redis_server, tmp_path / "dagster_home", tmp_path, monkeypatch)
    try:
        yield parts
    finally:
        parts.stop()


# --- what a run leaves behind, in a form two runs of the same inputs can be compared by --------------------------------


def outbox_files(paths: DataPaths) -> dict[str, str]:
    return {path.relative_to(paths.outbox).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(paths.outbox.rglob("*")) if path.is_file()}


def ledger_rows(engine) -> list[tuple]:
    c = listing_ledger.c
    with engine.connect() as connection:
        rows = connection.execute(select(c.marketplace, c.dealer_id, c.item_key, c.content_hash, c.pending_hash, c.state, c.status, c.generation, c.change_seq, c.attempts)).all()
    return sorted(tuple(row) for row in rows)


def delivery_rows(engine) -> list[tuple]:
    c = deliveries.c
    with engine.connect() as connection:
        rows = connection.execute(select(c.marketplace, c.dealer_id, c.item_key, c.action, c.content_hash, c.outcome)).all()
    return sorted(tuple(row) for row in rows)


def sync_figures(engine) -> dict[str, tuple]:
    c = sync_runs.c
    with engine.connect() as connection:
        rows = connection.execute(select(c.dealer_id, c.outcome, c.files, c.records, c.accepted, c.quarantined, c.vehicles, c.held, c.failed)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def warehouse_counts(paths: DataPaths) -> dict[str, int]:
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        names = [row[0] for row in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        return {name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}


def worker_of_each_step(instance, run_id: str) -> dict[str, str]:
    """The Celery worker (its name) that executed each step, from the engine event dagster-celery logs on the worker."""
    found = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        worker = event.engine_event_data.metadata.get("Celery worker")
        if worker is not None:
            found[event.step_key] = worker.value.split("@", 1)[0]
    return found


# --- (a) the group sync on PostgreSQL with the Celery executor: the same outputs as the embedded default ---------------


def test_the_group_sync_on_postgresql_and_celery_gives_the_embedded_defaults_outputs(paths, production, tmp_path, monkeypatch):
    from dms_pipelines.definitions import group_sync_job

    settings = production.settings()
    assert len(settings.dealers) >= 3
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], vehicles=150, seed=23, deltas=1)

    # The embedded default: a twin of the data root with the same inputs, SQLite, Dagster's local instance, multiprocess.
    twin = DataPaths(tmp_path / "twin")
    shutil.copytree(paths.root, twin.root)
    with StockApiSimulator(token=TEST_TOKEN) as twin_api:
        raw = yaml.safe_load((twin.root / "config" / "dms_pipelines.yaml").read_text())
        raw.pop("operations_db_url_env")
        raw["marketplaces"]["autotrader"]["destination"]["base_url"] = twin_api.base_url
        (twin.root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        with monkeypatch.context() as embedded:
            embedded.setenv("DMS_PIPELINES_DATA", str(twin.root))
            with dg.instance_for_test() as instance:
                default = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config={"execution": {"config": SPAWNED}, **ONE_DEALER_PER_STEP})
                assert default.success
        embedded_engine = engine_for(operations_db_url(load_settings(twin.root / "config" / "dms_pipelines.yaml"), twin))
        assert embedded_engine.url.get_backend_name() == "sqlite"

    # The production parts: the same code, launched as the group_sync_celery job on the PostgreSQL instance.
    workers = production.workers()
    with dg.DagsterInstance.get() as instance:
        assert tuple(type(storage).__name__ for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)) == POSTGRES_STORAGE
        result = dg.execute_job(dg.reconstructable(group_sync_celery_job), instance=instance, run_config=ONE_DEALER_PER_STEP)
        assert result.success, workers.logs()
        assert result.job_def.name == JOB_NAME
        on_workers = worker_of_each_step(instance, result.run_id)
        stored = instance.get_run_by_id(result.run_id)
        assert stored.job_name == JOB_NAME and stored.status == dg.DagsterRunStatus.SUCCESS
        assert str(production.broker) not in repr(stored.run_config)  # the run's record names the broker's variable only

    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert {f"sync_dealers[{mapping_key(d.id)}]" for d in settings.dealers} | {"dealers_to_sync", "account_files"} == steps
    assert set(on_workers) == steps  # every step ran on a Celery worker, none in the run's own process
    assert set(on_workers.values()) == set(workers.names)  # and both workers took steps
    step_processes = {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
    assert len(step_processes) == 2 and None not in step_processes  # the workers' pool processes, one each

    engine = production.engine()
    assert engine.url.get_backend_name() == "postgresql"
    assert not (paths.state / "operations.sqlite").exists()  # the operational state is in PostgreSQL only
    assert {dealer for dealer, (outcome, *_) in sync_figures(engine).items() if outcome == "ok"} == {d.id for d in settings.dealers}

    # The same outputs: each feed file's bytes, the ledger, the deliveries, each dealer's figures, the warehouse's rows.
    assert outbox_files(paths) == outbox_files(twin)
    assert len(outbox_files(paths)) >= 3 * len(settings.dealers)
    assert ledger_rows(engine) == ledger_rows(embedded_engine)
    assert len(ledger_rows(engine)) > 3 * len(settings.dealers)
    assert delivery_rows(engine) == delivery_rows(embedded_engine)
    assert sync_figures(engine) == sync_figures(embedded_engine)
    counts = warehouse_counts(paths)
    assert counts == warehouse_counts(twin)
    assert counts["stock_current"] > 50 and counts["deliveries"] > 0


# --- (b) concurrency on shared state: two group runs for different dealer sets and a sensor-started dealer run at once ----


class DealerSet(dg.Config):
    dealers: list[str]
    dealers_per_step: int = 1


@dg.op(out=dg.DynamicOut(list))
def dealer_set_to_sync(config: DealerSet, pipeline: PipelineResource):
    """dealers_to_sync for a chosen set of the configured dealers (group.py's BatchConfig has no dealer list yet)."""
    pipeline.engine()
    known = {dealer.id for dealer in pipeline.settings().dealers}
    assert set(config.dealers) <= known, f"not configured: {sorted(set(config.dealers) - known)}"
    for batch in batches(config.dealers, config.dealers_per_step):
        yield dg.DynamicOutput(batch, mapping_key=mapping_key(batch[0] if len(batch) == 1 else f"{batch[0]}__{batch[-1]}"))


@dg.job(executor_def=group_celery_executor, tags={TRIGGER_TAG: "nightly"})
def group_sync_for_dealer_set():
    account_files(dealer_set_to_sync().map(sync_dealers).collect())  # group_sync's own steps after the first


def dealer_set_job() -> dg.JobDefinition:
    """For `dg.reconstructable`: the Celery workers import this module (PYTHONPATH) and bind the resources as they would."""
    return dg.Definitions(jobs=[group_sync_for_dealer_set], resources=pipeline_resources()).resolve_job_def("group_sync_for_dealer_set")


def _group_run(name: str, dealers: list[str], ready, go, outcomes) -> None:
    """A group run for a dealer set, launched on the PostgreSQL instance in this (spawned) process; its steps go to the workers."""
    outcome, run_id = "not run", None
    try:
        with dg.DagsterInstance.get() as instance:
            ready.put(name)
            go.wait(120)
            config = {"ops": {"dealer_set_to_sync": {"config": {"dealers": dealers}}}}
            result = dg.execute_job(dg.reconstructable(dealer_set_job), instance=instance, run_config=config, raise_on_error=False)
            outcome, run_id = "ok" if result.success else _failure(result), result.run_id
    except BaseException as error:
        outcome = f"{type(error).__name__}: {error}"
    finally:
        outcomes.put((name, outcome, run_id))


def _sensor_run(partition_key: str, tags: dict, config_file: str, ready, go, outcomes) -> None:
    """The run the new_exports sensor asked for (its partition and tags), then the account_feeds run that the run status
    sensor requests after it, as the daemon would launch them, in this (spawned) process."""
    from dms_pipelines.orchestration.build import build_definitions

    outcome, run_id, name = "not run", None, "dealer"
    try:
        defs = build_definitions(load_settings(Path(config_file)), DataPaths(Path(config_file).parents[1]), Path(config_file))
        with dg.DagsterInstance.get() as instance:
            ready.put(name)
            go.wait(120)
            result = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False)
            outcomes.put((name, "ok" if result.success else _failure(result), result.run_id))
            name = "account"
            result = defs.resolve_job_def("account_feeds").execute_in_process(instance=instance, tags={TRIGGER_TAG: tags[TRIGGER_TAG]}, raise_on_error=False)
            outcome, run_id = "ok" if result.success else _failure(result), result.run_id
    except BaseException as error:
        outcome = f"{type(error).__name__}: {error}"
    finally:
        outcomes.put((name, outcome, run_id))


def _failure(result) -> str:
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return "; ".join(f"{e.step_key}: {e.event_specific_data.error.message.strip()[:1500]}" for e in failed) or "the run failed"


def _clone(dealer: dict, dealer_id: str, number: int) -> dict:
    """Another rooftop like `dealer`, with its own id, name and marketplace accounts (and no leads)."""
    clone = {k: v for k, v in yaml.safe_load(yaml.safe_dump(dealer)).items() if k not in ("leads", "customers")}
    clone.update(id=dealer_id, name=f"Aire Valley Motors {dealer_id.title()}", website=f"https://www.airevalleymotors.example/{dealer_id}")
    clone["crm"] = {"drop": {"kind": "local", "path": f"crm_drop/{dealer_id}"}}
    for name, account in clone["marketplaces"].items():
        for key in ("store_code", "catalog_id", "feed_id"):
            if key in account:
                account[key] = f"AVM-{dealer_id.upper()}"
        if "advertiser_id" in account:
            account["advertiser_id"] = str(10100 + number)
    return clone


class CatalogReader(threading.Thread):
    """An analyst polling the warehouse catalog read-only for as long as the runs go: every table and view, counted."""

    def __init__(self, database: Path):
        super().__init__(name="warehouse-reader", daemon=True)
        self.database = database
        self.stopping = threading.Event()
        self.reads = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with duckdb.connect(str(self.database), read_only=True) as db:
                    for (name,) in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall():
                        db.execute(f'SELECT count(*) FROM "{name}"').fetchone()
                self.reads += 1
            except Exception as error:
                self.errors.append(f"{type(error).__name__}: {error}")
            time.sleep(0.02)


def test_two_group_runs_and_a_sensor_run_at_once_on_postgresql_lose_nothing_and_deliver_nothing_twice(paths, production, stock_api):
    extra = {"harrogate": "leeds", "bradford": "york"}  # two more rooftops, cloned from the sample's
    production.edit_config(lambda raw: raw["dealers"].extend(_clone(next(d for d in raw["dealers"] if d["id"] == like), new, n) for n, (new, like) in enumerate(extra.items(), start=1)))
    settings = production.settings()
    first, second, by_sensor = ["leeds", "york"], ["sheffield", "harrogate"], "bradford"
    assert sorted(first + second + [by_sensor]) == sorted(d.id for d in settings.dealers)
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], vehicles=250, seed=31, deltas=0)
    ensure_catalog(paths)  # the analysts' catalog exists before the night starts
    workers = production.workers()

    from dms_pipelines.orchestration.build import build_definitions

    defs = build_definitions(settings, paths, production.config_file)
    with dg.DagsterInstance.get() as instance:
        requests = defs.resolve_sensor_def("new_exports")(dg.build_sensor_context(instance=instance, resources={"pipeline": defs.resources["pipeline"]}))
    request = next(r for r in requests if r.partition_key == by_sensor)  # the sensor's own run request for the dealer

    # Each run in a process of its own, as the run launcher starts them (Dagster's run machinery is not for threads).
    context = multiprocessing.get_context("spawn")
    ready, go, outcomes = context.Queue(), context.Event(), context.Queue()
    runs = [
        context.Process(target=_group_run, args=("first", first, ready, go, outcomes), name="group-run-first"),
        context.Process(target=_group_run, args=("second", second, ready, go, outcomes), name="group-run-second"),
        context.Process(target=_sensor_run, args=(request.partition_key, dict(request.tags), str(production.config_file), ready, go, outcomes), name="sensor-run"),
    ]
    reader = CatalogReader(paths.warehouse_db)
    results, run_ids = {}, {}
    try:
        for run in runs:
            run.start()
        for _ in runs:
            ready.get(timeout=120)  # each process has imported the code and opened the instance
        reader.start()
        go.set()  # then all three at once
        deadline = time.monotonic() + 240
        while len(results) < 4 and time.monotonic() < deadline and (any(run.is_alive() for run in runs) or not outcomes.empty()):
            try:
                name, outcome, run_id = outcomes.get(timeout=1)
                results[name], run_ids[name] = outcome, run_id
            except queue.Empty:
                pass
    finally:
        reader.stopping.set()
        if reader.is_alive():
            reader.join(timeout=30)
        for run in runs:
            run.join(timeout=30)
            if run.is_alive():
                run.terminate()
                run.join(timeout=10)
    assert results == {"first": "ok", "second": "ok", "dealer": "ok", "account": "ok"}, workers.logs()
    with dg.DagsterInstance.get() as instance:  # and they did run at once: the two group runs, and the dealer's with them
        spans = {name: (record.start_time, record.end_time) for name, run_id in run_ids.items() for record in instance.get_run_records(dg.RunsFilter(run_ids=[run_id]))}
    assert max(spans["first"][0], spans["second"][0]) < min(spans["first"][1], spans["second"][1])
    assert spans["dealer"][0] < min(spans["first"][1], spans["second"][1]) and spans["dealer"][1] > max(spans["first"][0], spans["second"][0])

    # The catalog stayed readable throughout, and is readable now.
    assert reader.errors == [] and reader.reads >= 3
    counts = warehouse_counts(paths)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        in_stock = dict(db.execute("SELECT dealer_id, count(*) FROM stock_current GROUP BY ALL").fetchall())
    assert set(in_stock) == {d.id for d in settings.dealers} and counts["stock_current"] == sum(in_stock.values())

    engine = production.engine()
    assert engine.url.get_backend_name() == "postgresql"
    figures = sync_figures(engine)
    assert {dealer: row[0] for dealer, row in figures.items()} == {d.id: "ok" for d in settings.dealers}
    assert {dealer: row[-3] for dealer, row in figures.items()} == in_stock  # each dealer's run recorded, its vehicles in the warehouse

    # No lost ledger rows: every file and every Auto Trader vehicle the marketplaces hold is in the ledger, acknowledged.
    ledger = ledger_rows(engine)
    acknowledged = Counter((marketplace, dealer) for marketplace, dealer, _, _, _, _, status, *_ in ledger if status == "acknowledged")
    for dealer in settings.dealers:
        for marketplace in dealer.marketplaces:
            if marketplace == "autotrader":
                held = {item["metadata"]["externalStockReference"]: item["metadata"]["lifecycleState"] for item in stock_api.items(dealer.marketplaces[marketplace].setting("advertiser_id"))}
                recorded = {key: state for m, d, key, _, _, state, status, *_ in ledger if m == marketplace and d == dealer.id and status == "acknowledged"}
                assert held and recorded == held, f"{dealer.id}: the ledger and Auto Trader disagree"
            elif marketplace != "google":
                assert acknowledged[(marketplace, dealer.id)] >= 1, f"{dealer.id}: no acknowledged {marketplace} file in the ledger"
    assert acknowledged[("google", "*")] == 1
    google = list(csv.DictReader(open(paths.outbox / "google" / "vehicle_listings.csv", encoding="utf-8")))
    assert {row["store_code"] for row in google} == {d.marketplaces["google"].setting("store_code") for d in settings.dealers if "google" in d.marketplaces}
    assert all(current_problems(engine, d.id, freshness_hours(settings, d.id)) == [] for d in settings.dealers)
    assert current_problems(engine, "*") == []

    # No duplicate deliveries: one Auto Trader item per vehicle, each created once; no file delivered twice with the same bytes.
    references = Counter((item["advertiserId"], item["metadata"]["externalStockReference"]) for item in stock_api.items())
    assert [key for key, count in references.items() if count > 1] == []
    delivered = Counter((m, d, key, action, content_hash) for m, d, key, action, content_hash, outcome in delivery_rows(engine) if outcome == "ok" and action in ("create", "file"))
    assert [key for key, count in delivered.items() if count > 1] == []
