"""The sold-vehicle fast path, demonstrated: write a DMS delta that sells one car, sync that dealer, check every marketplace."""

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from dms_pipelines.config import Settings
from dms_pipelines.delivery.destinations import destination_for
from dms_pipelines.devtools.sample.generator import export_name, render_export
from dms_pipelines.marketplaces.registry import specs_for
from dms_pipelines.paths import DataPaths
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
    """Per marketplace the dealer uses: is the car still offered for sale there? A file marketplace's files are read back
    at their destination (its own read_back); an API marketplace's last acknowledged call for the car is looked up."""
    result = {}
    dealer = settings.dealer(dealer_id)
    for spec in specs_for(settings, paths.root):
        if spec.name not in dealer.marketplaces:
            continue
        account = dealer.marketplaces[spec.name]
        if spec.mode == "api":
            with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
                state = db.execute(
                    "SELECT action FROM deliveries WHERE marketplace = ? AND dealer_id = ? AND item_key = ? AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                    [spec.name, dealer_id, stock_id],
                ).fetchall()
            result[spec.name] = not state or state[0][0] != "sold"
            continue
        destination = destination_for(settings.marketplaces[spec.name], paths)
        file_format = spec.file_format(settings.marketplaces[spec.name].file_format)
        if spec.account_file is not None:
            names, key = [spec.account_file.name(file_format)], spec.account_file.part_key(dealer, account) + stock_id
        else:
            names, key = [f.name for f in spec.files(dealer, account, file_format)], stock_id
        shown = {}
        for name in names:
            content = destination.read(name)
            shown |= (spec.read_back(name, content) or {}) if content is not None else {}
        result[spec.name] = key in shown
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
