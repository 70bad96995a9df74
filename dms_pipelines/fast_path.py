"""The sold-vehicle fast path, demonstrated: write a DMS delta that sells one car, sync that dealer, check every marketplace."""

import csv
import io
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from dms_pipelines.config import Settings
from dms_pipelines.paths import DataPaths
from dms_pipelines.sample.generator import export_name, render_export
from dms_pipelines.stock.store import read_stock


@dataclass
class SaleOutcome:
    dealer_id: str
    stock_id: str
    seconds: float
    gone_from: dict[str, bool]
    latency_by_marketplace: dict[str, float]


def write_sale(paths: DataPaths, dealer_id: str, layout: str, at: datetime) -> tuple[str, Path]:
    """A one-row delta export, in the dealer's own layout, that marks its first available car as sold."""
    stock = read_stock(paths.state, dealer_id)
    car = stock[stock["status"] == "available"].head(1).copy()
    if car.empty:
        raise ValueError(f"{dealer_id} has no available car to sell")
    car["status"] = "sold"
    car["location"] = "Forecourt"
    path = paths.inbox / dealer_id / export_name(layout, "delta", at)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_export(car.reset_index(drop=True), layout))
    return str(car["stock_id"].iloc[0]), path


def still_listed(paths: DataPaths, settings: Settings, dealer_id: str, stock_id: str) -> dict[str, bool]:
    """Per marketplace the dealer uses: is the car still offered for sale there?"""
    result = {}
    dealer = settings.dealer(dealer_id)
    for marketplace in dealer.marketplaces:
        destination = settings.marketplaces[marketplace].destination
        folder = paths.resolve(getattr(destination, "path", "")) if getattr(destination, "kind", "") == "local" else None
        if marketplace == "google":
            rows = csv.DictReader(io.StringIO((folder / "vehicle_listings.csv").read_text(encoding="utf-8")))
            result[marketplace] = any(r["id"] == stock_id and r["store_code"] == dealer.marketplaces["google"].setting("store_code") for r in rows)
        elif marketplace == "website":
            document = json.loads((folder / f"{dealer_id}.json").read_text(encoding="utf-8"))
            result[marketplace] = any(v["stock_id"] == stock_id for v in document["vehicles"])
        elif marketplace == "meta":
            rows = csv.DictReader(io.StringIO(next(folder.glob(f"{dealer_id}.*")).read_text(encoding="utf-8")))
            result[marketplace] = any(r["vehicle_id"] == stock_id for r in rows)
        elif marketplace == "carsnip":
            rows = csv.DictReader(io.StringIO((folder / f"{dealer_id}_vehicles.csv").read_text(encoding="utf-8")))
            result[marketplace] = any(r["Vehicle_Id"] == stock_id for r in rows)
        elif marketplace == "autotrader":
            with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
                state = db.execute(
                    "SELECT action FROM deliveries WHERE marketplace = 'autotrader' AND dealer_id = ? AND item_key = ? AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                    [dealer_id, stock_id],
                ).fetchall()
            result[marketplace] = not state or state[0][0] != "sold"
    return result


def sell_one_car(paths: DataPaths, settings: Settings, dealer_id: str, run_sync) -> SaleOutcome:
    """Sell a car through the DMS export path and time the dealer's fast sync until every marketplace has it off sale."""
    dealer = settings.dealer(dealer_id)
    stock_id, path = write_sale(paths, dealer_id, dealer.profile, datetime.now(timezone.utc).replace(tzinfo=None))
    started = time.perf_counter()
    run_sync([dealer_id], echo=lambda line: None, trigger="sold_fast_path")
    seconds = time.perf_counter() - started
    gone = {marketplace: not listed for marketplace, listed in still_listed(paths, settings, dealer_id, stock_id).items()}
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        latency = dict(
            db.execute(
                "SELECT marketplace, max(latency_seconds) FROM sold_latency s JOIN deliveries d USING (dealer_id, marketplace) "
                "WHERE d.trigger = 'sold_fast_path' AND s.finished_at = d.finished_at GROUP BY marketplace"
            ).fetchall()
        )
    return SaleOutcome(dealer_id, stock_id, seconds, gone, latency)
