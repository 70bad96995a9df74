"""A state machine of DMS exports and marketplace faults: after every fault-free run each marketplace shows what the DMS says.

Random sequences of full and delta exports (new cars, prices up, down and back, sales, reservations, cancellations,
byte-identical repeats, quarantined rows, a truncated full, a car dropped) interleave with marketplace faults (5xx, 429
with Retry-After, dropped connections, slow answers, a file destination that refuses writes) and runs. The model is the
DMS's own truth; the marketplaces are read as a buyer would see them (the website file, the stock API's live items), and
the pipeline's own oracle must agree. DMS_STATEFUL_EXAMPLES sets how many sequences are tried (`make bench` tries more).
"""

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select

from dms_pipelines.config import load_settings
from dms_pipelines.devtools.sample.generator import export_name, render_export, sample_vehicles
from dms_pipelines.devtools.simulator import StockApiSimulator
from dms_pipelines.marketplaces.autotrader import LIFECYCLE
from dms_pipelines.marketplaces.registry import SPECS, specs_for
from dms_pipelines.operations.db import engine_for, ingested_files, listing_ledger
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline.account import account_file
from dms_pipelines.pipeline.dealer import DealerRun, sync_dealer
from dms_pipelines_tests.support import STATS, TEST_TOKEN, config_without_images

EXAMPLES = int(os.environ.get("DMS_STATEFUL_EXAMPLES", "12"))
ADVERTISER = "10001"
START = datetime(2026, 11, 22, 2, 0)


class DmsAndMarketplaces(RuleBasedStateMachine):
    """One dealer (leeds, Navigator CSV) on every marketplace; the model is the fleet as its DMS knows it."""

    @initialize()
    def start(self):
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.simulator = StockApiSimulator(token=TEST_TOKEN).start()
        root = self.folder / "data"
        (root / "config").mkdir(parents=True)
        raw = config_without_images()
        raw["dealers"] = [d for d in raw["dealers"] if d["id"] == "leeds"]
        raw["marketplaces"]["autotrader"]["destination"].update(base_url=self.simulator.base_url, max_retry_delay_seconds=0.05, timeout_seconds=2)
        raw["marketplaces"]["autotrader"]["destination"].pop("base_url_env", None)
        (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        os.environ["DMS_AUTOTRADER_TOKEN"] = TEST_TOKEN
        self.paths = DataPaths(root)
        self.settings = load_settings(root / "config" / "dms_pipelines.yaml")
        self.paths.state.mkdir(parents=True, exist_ok=True)
        self.engine = engine_for(self.paths.operations_db_url)
        self.rng = np.random.default_rng(7)
        self.fleet = sample_vehicles(10, "LEE", 1, self.rng, START, "leeds", "Y").assign(status="available").reset_index(drop=True)
        self.next_number = 11
        self.clock = START
        self.deltas: list[tuple[bytes, pd.DataFrame | None]] = []  # every delta's bytes and rows (None: quarantined), for repeats
        self.faulty = False  # a fault is queued for the next run
        self.refusing: Path | None = None
        self.write("full", self.fleet)
        self.run_pipeline()

    def teardown(self):
        if hasattr(self, "simulator"):
            self.simulator.stop()
            shutil.rmtree(self.folder, ignore_errors=True)

    # exports

    def write(self, kind: str, rows: pd.DataFrame, content: bytes | None = None, applies: bool = True) -> bytes:
        """Drop an export in the inbox; `applies`: whether its rows become the DMS's truth when it is repeated (a delta)."""
        self.clock += timedelta(minutes=7)
        content = content if content is not None else render_export(rows.reset_index(drop=True), "navigator_csv")
        path = self.paths.inbox / "leeds" / export_name("navigator_csv", kind, self.clock)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        stamp = self.clock.replace(tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
        if kind == "delta":
            self.deltas.append((content, rows.copy() if applies else None))
        return content

    def pick(self, data, statuses=("available", "reserved", "in_preparation", "in_transit", "sold")) -> int:
        candidates = self.fleet.index[self.fleet["status"].isin(statuses)].tolist()
        return data.draw(st.sampled_from(candidates)) if candidates else -1

    @rule(data=st.data(), change=st.sampled_from([-500, 750, 1500]))
    def reprice(self, data, change):
        row = self.pick(data, ("available", "reserved"))
        if row < 0:
            return
        self.fleet.loc[row, "price"] = max(995.0, float(self.fleet.loc[row, "price"]) + change)
        self.write("delta", self.fleet.loc[[row]])

    @rule(data=st.data())
    def price_back_and_forth(self, data):
        """Up, then back to the price before: the second delta is byte-identical to an earlier export of the car."""
        row = self.pick(data, ("available",))
        if row < 0:
            return
        before = self.write("delta", self.fleet.loc[[row]])
        self.fleet.loc[row, "price"] = float(self.fleet.loc[row, "price"]) + 1000
        self.write("delta", self.fleet.loc[[row]])
        self.fleet.loc[row, "price"] = float(self.fleet.loc[row, "price"]) - 1000
        assert self.write("delta", self.fleet.loc[[row]]) == before

    @rule(data=st.data(), status=st.sampled_from(["sold", "reserved", "available"]))
    def change_status(self, data, status):
        """A sale, a reservation, or a cancellation (back on sale)."""
        row = self.pick(data)
        if row < 0:
            return
        self.fleet.loc[row, "status"] = status
        self.write("delta", self.fleet.loc[[row]])

    @rule(data=st.data())
    def sold_cancelled_sold_again(self, data):
        row = self.pick(data, ("available",))
        if row < 0:
            return
        sold = self.write("delta", self.fleet.loc[[row]].assign(status="sold"))
        self.write("delta", self.fleet.loc[[row]])
        self.fleet.loc[row, "status"] = "sold"
        assert self.write("delta", self.fleet.loc[[row]]) == sold

    @rule()
    def new_car(self):
        car = sample_vehicles(1, "LEE", self.next_number, self.rng, self.clock, "leeds", "Y").assign(status="available")
        self.next_number += 1
        self.fleet = pd.concat([self.fleet, car], ignore_index=True)
        self.write("delta", car)

    @rule()
    def quarantined_new_car(self):
        """A new car whose row is bad: quarantined with a reason, never in stock, nothing else touched."""
        car = sample_vehicles(1, "LEE", self.next_number, self.rng, self.clock, "leeds", "Y").assign(status="available", registration="NOT A PLATE!")
        self.next_number += 1
        self.write("delta", car, applies=False)

    @rule()
    def full_export(self):
        self.write("full", self.fleet)

    @rule(data=st.data())
    def full_export_without_a_car(self, data):
        """A car gone from the DMS (sold to the trade, transferred): off every marketplace."""
        if len(self.fleet) <= 8:
            return
        row = self.pick(data)
        if row < 0:
            return
        self.fleet = self.fleet.drop(index=row).reset_index(drop=True)
        self.write("full", self.fleet)

    @rule()
    def truncated_full(self):
        """A full export cut short: held by the delisting guard; the stock and every feed stay as they were."""
        if len(self.fleet) >= 8:
            self.write("full", self.fleet.head(2))

    @precondition(lambda self: len(self.deltas) > 0)
    @rule(data=st.data())
    def repeat_an_earlier_delta(self, data):
        """The bytes of an earlier delta again, under a new name: new data, applied (so the model applies its rows again)."""
        content, rows = data.draw(st.sampled_from(self.deltas[-6:]))
        self.write("delta", rows, content, applies=rows is not None)
        if rows is not None:
            kept = self.fleet[~self.fleet["stock_id"].isin(rows["stock_id"])]
            self.fleet = pd.concat([kept, rows], ignore_index=True)

    # faults, each for the next run only

    @rule(kind=st.sampled_from(["5xx", "429", "drop", "slow"]), count=st.integers(1, 6))
    def marketplace_fault(self, kind, count):
        {
            "5xx": lambda: self.simulator.fail_next(count, 503),
            "429": lambda: self.simulator.rate_limit_next(count, 0.05),
            "drop": lambda: self.simulator.drop_next(count),
            "slow": lambda: self.simulator.slow_next(count, 0.05),
        }[kind]()
        self.faulty = True
        STATS["faults injected"] += 1

    @rule()
    def file_destination_refuses_writes(self):
        folder = self.paths.outbox / "meta"
        if folder.is_dir():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_text("a file where the folder should be: every write fails")
        self.refusing, self.faulty = folder, True
        STATS["faults injected"] += 1

    # runs

    def run_pipeline(self) -> DealerRun:
        run = sync_dealer("leeds", self.settings, specs_for(self.settings, self.paths.root), self.paths, self.engine, f"run-{self.clock:%H%M%S}", "hourly")
        self.account = account_file(SPECS["google"], specs_for(self.settings, self.paths.root), self.settings, self.paths, self.engine, None, "hourly")
        return run

    @rule()
    def run(self):
        faulty = self.faulty
        self.last = self.run_pipeline()
        self.simulator.reset_failures()
        if self.refusing is not None:
            self.refusing.unlink()
            self.refusing = None
        self.faulty = False
        if not faulty:  # after a run with faults nothing is promised but no duplicates; the next fault-free run must heal all
            self.every_marketplace_shows_what_the_dms_says()
            self.the_ledger_equals_the_marketplace_and_every_row_is_accounted_for()

    @invariant()
    def no_vehicle_is_listed_twice(self):
        if hasattr(self, "simulator"):
            live = [i["metadata"]["externalStockReference"] for i in self.simulator.live_items(ADVERTISER)]
            STATS["duplicate deliveries"] += len(live) - len(set(live))
            assert len(live) == len(set(live)), sorted(live)

    def every_marketplace_shows_what_the_dms_says(self):
        run = self.last
        for marketplace, outcome in run.feeds.items():
            assert outcome.drift is None or outcome.drift.clean, outcome.drift.describe()
        assert all(drift.clean for drift in self.account.drift.values()), [d.describe() for d in self.account.drift.values()]
        truth = self.fleet.set_index("stock_id")
        for_sale = truth[truth["status"].isin(["available", "reserved"])]
        website = json.loads((self.paths.outbox / "website" / "leeds.json").read_text(encoding="utf-8"))
        shown = {v["stock_id"]: v for v in website["vehicles"]}
        assert set(shown) == set(for_sale.index), (sorted(shown), sorted(for_sale.index))
        assert all(float(shown[i]["price_gbp"]) == float(for_sale.loc[i, "price"]) for i in shown)
        live = {i["metadata"]["externalStockReference"]: i for i in self.simulator.live_items(ADVERTISER)}
        offered = {ref for ref, item in live.items() if item["metadata"]["lifecycleState"] not in ("SOLD",)}
        assert offered == set(truth.index[truth["status"] != "sold"]), (sorted(offered), truth["status"].to_dict())
        for stock_id, row in truth.iterrows():
            item = live.get(stock_id)
            assert item is not None and item["metadata"]["lifecycleState"] == LIFECYCLE[row["status"]], (stock_id, row["status"], item and item["metadata"])
            if row["status"] != "sold":
                assert item["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"] == int(row["price"] + 0.5), stock_id
        problems = [p for p in run.problems if p.kind != "held_export"]  # a held export is the guard working, and is reported
        assert problems == [], [p.message for p in problems]

    def the_ledger_equals_the_marketplace_and_every_row_is_accounted_for(self):
        with self.engine.connect() as connection:
            rows = connection.execute(select(listing_ledger).where(listing_ledger.c.marketplace == "autotrader")).mappings().all()
            files = connection.execute(select(ingested_files).where(ingested_files.c.status == "processed")).mappings().all()
        live = {i["metadata"]["stockId"]: i for i in self.simulator.live_items(ADVERTISER)}
        for row in rows:
            if row["status"] == "acknowledged" and row["external_id"]:
                assert row["external_id"] in live and live[row["external_id"]]["metadata"]["lifecycleState"] == row["state"], dict(row)
        for file in files:
            STATS["rows lost"] += file["rows_total"] - file["rows_accepted"] - file["rows_quarantined"]
            assert file["rows_total"] == file["rows_accepted"] + file["rows_quarantined"], dict(file)


DmsAndMarketplaces.TestCase.settings = hypothesis_settings(
    max_examples=EXAMPLES,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
TestDmsAndMarketplaces = DmsAndMarketplaces.TestCase
