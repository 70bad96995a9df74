"""The identity engine's benchmark (precision and recall against a planted truth, review share, wall time, memory, run-to-run identity) and the retraining of its pinned model."""

import resource
import sys
import time
from pathlib import Path

import pandas as pd

from dms_pipelines.devtools.sample.people import generate_people
from dms_pipelines.identity.evaluate import pairwise_scores
from dms_pipelines.identity.exact import shared_phones_of
from dms_pipelines.identity.model import MODEL_FILE, load_model, save_model, train_model
from dms_pipelines.identity.reconcile import reconcile
from dms_pipelines.identity.records import records_from_customers, records_from_leads

DEALER = "D-BENCH"
MODEL_PATH = Path(__file__).resolve().parents[1] / "identity" / "models" / MODEL_FILE
TRAINING_SEED = 20240601


def planted_records(customers: int, leads: int, seed: int):
    """Identity records of a planted population: (customer records, lead records, truth)."""
    people = generate_people(DEALER, customers, leads, seed)
    return records_from_customers(people.customers), records_from_leads(people.leads, [lead["lead_key"] for lead in people.leads]), people.truth


def seed_customers(customer_records: pd.DataFrame, model: dict, upper: float = 0.99) -> pd.DataFrame:
    """A customer file's own clusters: every DMS customer number its own customer unless the exact tier or the model at
    or above `upper` ties two of them (a duplicate in the DMS); no review for the seed (lower = upper): an unsure pair of
    DMS customers stays two customers. Returns the records with cluster_id, ready to be `existing`."""
    seeded = reconcile(customer_records.iloc[0:0].assign(cluster_id=pd.Series(dtype="object")), customer_records, model, upper, upper)
    return customer_records.merge(seeded.clusters, on=["record_kind", "record_key"])


def train(customers: int = 200_000, leads: int = 20_000, seed: int = TRAINING_SEED, path: Path = MODEL_PATH) -> dict:
    """Retrain the pinned model on a planted population of this size and write it to `path` (the package's model JSON)."""
    customer_records, lead_records, _ = planted_records(customers, leads, seed)
    records = pd.concat([customer_records, lead_records], ignore_index=True)
    started = time.monotonic()
    model = train_model(records, seed=seed, shared_phones=shared_phones_of(records))
    save_model(model, path)
    print(f"trained on {customers} customers + {leads} leads in {time.monotonic() - started:.1f}s; wrote {path}")
    return model


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_identity_bench(customers: int = 200_000, leads: int = 20_000, incremental: int = 500, seed: int = 7, upper: float = 0.99, lower: float = 0.5) -> dict:
    """Seed `customers` as existing clusters, reconcile `leads` new leads against them (twice, the second on shuffled
    input), then `incremental` more leads against the result; print and return the figures."""
    model = load_model()
    customer_records, lead_records, truth = planted_records(customers, leads + incremental, seed)
    batch, extra = lead_records.iloc[:leads].reset_index(drop=True), lead_records.iloc[leads:].reset_index(drop=True)

    started = time.monotonic()
    existing = seed_customers(customer_records, model, upper)
    seed_seconds = time.monotonic() - started

    started = time.monotonic()
    first = reconcile(existing, batch, model, upper, lower)
    reconcile_seconds = time.monotonic() - started
    second = reconcile(existing.sample(frac=1, random_state=1), batch.sample(frac=1, random_state=2), model, upper, lower)
    identical = first.assignments.equals(second.assignments) and first.clusters.equals(second.clusters)

    linked = pd.concat([customer_records, batch], ignore_index=True).merge(first.clusters, on=["record_kind", "record_key"])
    started = time.monotonic()
    later = reconcile(linked, extra, model, upper, lower)
    incremental_seconds = time.monotonic() - started

    scores = pairwise_scores(later.clusters, truth)
    review_share = float((first.assignments["outcome"] == "review").mean()) if len(first.assignments) else 0.0
    figures = {
        "customers": customers,
        "leads": leads,
        "incremental": incremental,
        "precision": round(scores.precision, 4),
        "recall": round(scores.recall, 4),
        "review_share_of_leads": round(review_share, 4),
        "seed_customers_seconds": round(seed_seconds, 2),
        "reconcile_leads_seconds": round(reconcile_seconds, 2),
        "incremental_seconds": round(incremental_seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "identical_runs": bool(identical),
        "outcomes": first.assignments["outcome"].value_counts().to_dict(),
        "tiers": first.assignments["tier"].value_counts().to_dict(),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    return figures


def run_stage_bench(customers: int = 200_000, leads: int = 20_000, incremental: int = 500, seed: int = 7) -> dict:
    """The identity stage as a dealer's lead run calls it (`pipeline.identity.identify`), on a real SQLite file in a
    temporary folder: `customers` DMS customers and `leads` leads stored, identified once (seeding), then `incremental`
    more leads stored and identified again; print and return the figures."""
    import tempfile
    from datetime import datetime, timezone

    from dms_pipelines.config import Settings
    from dms_pipelines.operations import customer_store, lead_store
    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.paths import DataPaths
    from dms_pipelines.pipeline.identity import identify

    dealer_id = "bench"
    people = generate_people(dealer_id, customers, leads + incremental, seed)
    settings = Settings.model_validate(
        {
            "group_name": "bench",
            "marketplaces": {},
            "dealers": [
                {
                    "id": dealer_id,
                    "name": "Bench Motors",
                    "address": {"street": "1 Road", "city": "Leeds", "postcode": "LS1 1AA"},
                    "phone": "0113 496 0000",
                    "website": "https://bench.example",
                    "source": {"kind": "local_inbox"},
                    "profile": "navigator_csv",
                    "customers": {"profile": "navigator_customers_csv"},
                }
            ],
        }
    )
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    lead_rows = [{name: value for name, value in lead.items() if name != "lead_key"} for lead in people.leads]
    with tempfile.TemporaryDirectory(prefix="identity-stage-") as folder:
        paths, engine = DataPaths(Path(folder)), engine_for(f"sqlite:///{folder}/operations.sqlite")

        def store_leads(batch: list[dict], name: str) -> None:
            file_id = lead_store.register_file(engine, dealer_id, name, "bench", name, 0, at, None)
            with engine.begin() as connection:
                lead_store.store_leads(connection, dealer_id, batch, file_id, at, "pending")

        file_id = customer_store.register_file(engine, dealer_id, "customers.csv", "0" * 64, 0, at, None)
        with engine.begin() as connection:
            customer_store.store_customers(connection, dealer_id, people.customers, file_id, full=True)
        store_leads(lead_rows[:leads], "leads-1")
        started = time.monotonic()
        first = identify(settings.dealer(dealer_id), settings, paths, engine, "bench-1")
        first_seconds = time.monotonic() - started
        store_leads(lead_rows[leads:], "leads-2")
        started = time.monotonic()
        later = identify(settings.dealer(dealer_id), settings, paths, engine, "bench-2")
        incremental_seconds = time.monotonic() - started
        engine.dispose()
    figures = {
        "stage_customers": customers,
        "stage_leads": leads,
        "stage_first_seconds": round(first_seconds, 2),
        "stage_first_linked": first.customers_linked + first.leads_linked,
        "stage_incremental_leads": later.leads_linked,
        "stage_incremental_seconds": round(incremental_seconds, 2),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    return figures


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dms_pipelines.devtools.identity_bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run the benchmark")
    bench.add_argument("--customers", type=int, default=200_000)
    bench.add_argument("--leads", type=int, default=20_000)
    bench.add_argument("--incremental", type=int, default=500)
    bench.add_argument("--seed", type=int, default=7)
    stage = commands.add_parser("stage", help="time the identity stage on a real SQLite file: seeding, then an incremental run")
    stage.add_argument("--customers", type=int, default=200_000)
    stage.add_argument("--leads", type=int, default=20_000)
    stage.add_argument("--incremental", type=int, default=500)
    stage.add_argument("--seed", type=int, default=7)
    retrain = commands.add_parser("train", help="retrain the pinned model and write its JSON")
    retrain.add_argument("--customers", type=int, default=200_000)
    retrain.add_argument("--leads", type=int, default=20_000)
    retrain.add_argument("--seed", type=int, default=TRAINING_SEED)
    retrain.add_argument("--out", type=Path, default=MODEL_PATH)
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.customers, args.leads, args.seed, args.out)
    elif args.command == "stage":
        run_stage_bench(args.customers, args.leads, args.incremental, args.seed)
    else:
        run_identity_bench(args.customers, args.leads, args.incremental, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
