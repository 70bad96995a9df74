"""Benchmark of the lead pipeline: N leads from Meta CSV exports through landing, checks, linking, ADF delivery and the warehouse, stage by stage."""

import csv
import io
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import yaml

from dms_pipelines.devtools.sample.leads import META_HEADER
from dms_pipelines.kernels.atomic import write_bytes_atomically
from dms_pipelines.paths import DataPaths

LEADS_PER_FILE = 10_000
STOCK_SIZE = 2_000


def _write_meta_files(inbox: Path, stock_ids: list[str], leads: int, seed: int = 11) -> int:
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    files = 0
    for start in range(0, leads, LEADS_PER_FILE):
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(META_HEADER)
        for number in range(start, min(leads, start + LEADS_PER_FILE)):
            writer.writerow(
                [
                    f"l:{10_000_000 + number}",
                    (now - timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%S+0000"),
                    "1202",
                    "Stock",
                    "1203",
                    "1204",
                    "4455",
                    "Enquiry",
                    "false",
                    "fb",
                    rng.choice(stock_ids),
                    f"Buyer {number}",
                    f"buyer{number}@example.com",
                    f"07700 9{number % 100000:05d}",
                    "LS3 1JL",
                    rng.choice(("yes", "no")),
                ]
            )
        write_bytes_atomically(inbox / f"meta_leads_{start // LEADS_PER_FILE:04d}.csv", text.getvalue().encode())
        files += 1
    return files


def bench_leads(leads: int, work: Path, echo=print) -> dict:
    """Time each lead stage on `leads` leads for one dealer with a local CRM drop (plain calls, no Dagster run)."""
    from dms_pipelines.config import load_settings, operations_db_url
    from dms_pipelines.devtools.demo import SAMPLE_CONFIG
    from dms_pipelines.devtools.sample.generator import sample_vehicles
    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.pipeline import leads as stages
    from dms_pipelines.stock.schema import coerce_to_schema
    from dms_pipelines.stock.store import write_stock

    root = work / f"leads-{leads}"
    (root / "config").mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    paths = DataPaths(root)
    settings = load_settings(root / "config" / "dms_pipelines.yaml")
    dealer = settings.dealer("leeds")
    vehicles = sample_vehicles(STOCK_SIZE, "B", 1, np.random.default_rng(5), datetime.now(), "leeds", "LS")
    write_stock(paths.state, "leeds", coerce_to_schema(vehicles))
    files = _write_meta_files(paths.lead_inbox / "leeds", [str(s) for s in vehicles["stock_id"]], leads)
    engine = engine_for(operations_db_url(settings, paths))
    timings = {}

    def timed(name, call):
        started = time.perf_counter()
        value = call()
        timings[name] = round(time.perf_counter() - started, 2)
        return value

    landing = timed("land", lambda: stages.land_leads(dealer, settings, paths, engine, "bench"))
    reading = timed("read_and_check", lambda: stages.read_leads(dealer, settings, paths, engine, "bench"))
    group = stages.group_stock(settings, paths)
    linked = timed("link", lambda: stages.link_leads(dealer, settings, paths, engine, group))
    delivery = timed("deliver_adf", lambda: stages.deliver_leads(dealer, settings, paths, engine, "bench", group=group))
    rows = timed("warehouse", lambda: stages.publish_lead_warehouse(paths, engine, "leeds"))
    timings["total"] = round(sum(timings.values()), 2)
    result = {
        "leads": leads,
        "files": files,
        "landed": len(landing.landed),
        "stored": reading.new,
        "quarantined": reading.quarantined,
        "linked": linked.linked,
        "delivered": delivery.delivered,
        "warehouse_leads": rows.get("leads"),
        "seconds": timings,
        "leads_per_second": round(leads / timings["total"]) if timings["total"] else None,
    }
    echo(f"leads {leads}: " + ", ".join(f"{name} {seconds} s" for name, seconds in timings.items()) + f"  ({result['delivered']} ADF files delivered)")
    return result
