"""Asset checks shown per asset in the Dagster UI: row conservation, pass rate, readable files, held exports, allowlisted feeds."""

import csv

import dagster as dg

from dms_pipelines.marketplaces import google
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.stock.schema import PRIVATE_COLUMNS

# Checks on per-dealer assets are computed inside the asset (one partition at a time) and declared here.
FRESHNESS = dg.AssetCheckSpec("export_freshness", asset="landed_exports", description="The dealer sent an export within validation.freshness_hours.")
FILES_READABLE = dg.AssetCheckSpec("files_readable", asset="parsed_exports", description="Every landed file could be read with the dealer's mapping profile.")
ROWS_CONSERVED = dg.AssetCheckSpec("rows_conserved", asset="validated_exports", blocking=True, description="Every input row ends in stock or in quarantine (blocking: nothing downstream runs if rows went missing).")
PASS_RATE = dg.AssetCheckSpec("pass_rate", asset="validated_exports", description="Warns when the share of accepted rows falls below validation.pass_rate_warning.")
STOCK_PRESENT = dg.AssetCheckSpec("stock_present", asset="dealer_stock", description="The dealer has vehicles after the run (an empty dealer is worth a look).")
NOT_HELD = dg.AssetCheckSpec("no_held_exports", asset="dealer_stock", description="No full export was held by the mass-delisting guard.")


def export_freshness(hours: float | None, limit: float) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="export_freshness", passed=hours is not None and hours <= limit, severity=dg.AssetCheckSeverity.WARN,
        metadata={"hours_since_last_export": round(hours, 2) if hours is not None else -1.0, "limit_hours": limit},
    )


def files_readable(parsed: list) -> dg.AssetCheckResult:
    failures = {p.file_name: p.error for p in parsed if p.error}
    return dg.AssetCheckResult(check_name="files_readable", passed=not failures, metadata={"unreadable": dg.MetadataValue.json(failures)})


def rows_conserved(validated: list) -> dg.AssetCheckResult:
    mismatches = {
        v.file_name: f"{v.records_total} records, {len(v.accepted)} accepted, {v.quarantined_rows} quarantined"
        for v in validated
        if len(v.accepted) + v.quarantined_rows != v.records_total
    }
    return dg.AssetCheckResult(check_name="rows_conserved", passed=not mismatches, metadata={"files": len(validated), "mismatches": dg.MetadataValue.json(mismatches)})


def pass_rate(validated: list, threshold: float) -> dg.AssetCheckResult:
    total = sum(v.records_total for v in validated)
    accepted = sum(len(v.accepted) for v in validated)
    rate = accepted / total if total else 1.0
    per_rule: dict[str, int] = {}
    for item in validated:
        for (severity, rule), count in item.issues.groupby(["severity", "rule"]).size().items():
            per_rule[f"{severity}:{rule}"] = per_rule.get(f"{severity}:{rule}", 0) + int(count)
    return dg.AssetCheckResult(
        check_name="pass_rate", passed=rate >= threshold, severity=dg.AssetCheckSeverity.WARN,
        metadata={"pass_rate": round(rate, 4), "threshold": threshold, "records": total, "rows_per_rule": dg.MetadataValue.json(per_rule)},
    )


def stock_present(vehicles: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="stock_present", passed=vehicles > 0, severity=dg.AssetCheckSeverity.WARN, metadata={"vehicles": vehicles})


def not_held(held: dict[str, str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="no_held_exports", passed=not held, metadata={"held": dg.MetadataValue.json(held)})


@dg.asset_check(asset="google_feed", description="The Google file has exactly the allowlisted columns: nothing private can be in it.")
def google_feed_allowlisted(pipeline: PipelineResource) -> dg.AssetCheckResult:
    settings = pipeline.settings()
    destination = settings.marketplaces["google"]
    file_format = destination.file_format or "csv"
    path = pipeline.paths().resolve(destination.destination.path) / f"vehicle_listings.{file_format}"
    if not path.exists():
        return dg.AssetCheckResult(passed=False, metadata={"missing": str(path)})
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle, delimiter="\t" if file_format == "tsv" else ","), [])
    unexpected = sorted(set(header) - set(google.COLUMNS)) + [c for c in header if c in PRIVATE_COLUMNS]
    return dg.AssetCheckResult(passed=not unexpected, metadata={"unexpected_columns": dg.MetadataValue.json(unexpected)})


CHECKS = [google_feed_allowlisted]
