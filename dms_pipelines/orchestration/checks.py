"""Asset checks shown per asset and dealer partition in the Dagster UI: files, rows, held exports, deliveries, drift, allowlisted feeds."""

import csv
import warnings

import dagster as dg

from dms_pipelines.marketplaces import google
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.stock.schema import PRIVATE_COLUMNS

# Checks on per-dealer assets are computed inside the asset (one partition at a time) and declared here, each with the
# dealers' partitions so that every dealer has its own result: one dealer passing never hides another failing.
CHECK_DESCRIPTIONS = {
    "landed_exports": {
        "export_freshness": "The dealer sent an export within validation.freshness_hours.",
        "files_landed": "Every ready export was fetched and landed (none failed or waiting for a retry).",
    },
    "parsed_exports": {"files_readable": "Every landed file could be read with the dealer's mapping profile."},
    "validated_exports": {
        "rows_conserved": "Every input row ends in stock or in quarantine (blocking: nothing downstream runs if rows went missing).",
        "pass_rate": "Warns when the share of accepted rows falls below validation.pass_rate_warning.",
    },
    "dealer_stock": {
        "stock_present": "The dealer has vehicles after the run (an empty dealer is worth a look).",
        "no_held_exports": "No full export was held by the delisting or distribution guards.",
    },
} | {
    asset: {
        "delivered": "Every file or change was delivered and acknowledged: nothing failed, nothing refused (dead-lettered).",
        "drift_free": "The marketplace shows exactly what the stock renders for it (read back after delivery); a sold car still offered is an error.",
    }
    for asset in ("website_feed", "meta_feed", "carsnip_feed", "autotrader_listings")
}
BLOCKING = {"rows_conserved"}
GOOGLE_DRIFT = "drift_free"  # on google_listings, evaluated by the account-wide file's run for each dealer


def dealer_check_specs(partitions: dg.PartitionsDefinition) -> dict[str, list[dg.AssetCheckSpec]]:
    """Per per-dealer asset, its checks, partitioned by dealer (a Dagster preview feature: its warning is silenced here only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return {
            asset: [dg.AssetCheckSpec(name, asset=asset, description=text, blocking=name in BLOCKING, partitions_def=partitions) for name, text in checks.items()]
            for asset, checks in CHECK_DESCRIPTIONS.items()
        }


def as_evaluation(result: dg.AssetCheckResult, asset: str, partition: str | None) -> dg.AssetCheckEvaluation:
    """The result as an event another step logs for the dealer's partition (group_sync runs the stages outside the assets)."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset), check_name=result.check_name, passed=result.passed, metadata=result.metadata,
        severity=result.severity, description=result.description, partition=partition,
    )


def export_freshness(hours: float | None, limit: float) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="export_freshness", passed=hours is not None and hours <= limit, severity=dg.AssetCheckSeverity.WARN,
        metadata={"hours_since_last_export": round(hours, 2) if hours is not None else -1.0, "limit_hours": limit},
    )


def files_landed(failed: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="files_landed", passed=not failed, metadata={"files_failed": len(failed), "failures": dg.MetadataValue.json(failed[:20])})


def files_readable(unreadable: dict[str, str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="files_readable", passed=not unreadable, metadata={"files_unreadable": len(unreadable), "unreadable": dg.MetadataValue.json(unreadable)})


def rows_conserved(validated: list) -> dg.AssetCheckResult:
    """`validated`: sync.ValidationSummary per file."""
    mismatches = {
        v.file_name: f"{v.records_total} records, {v.accepted_rows} accepted, {v.quarantined_rows} quarantined"
        for v in validated
        if v.accepted_rows + v.quarantined_rows != v.records_total
    }
    return dg.AssetCheckResult(check_name="rows_conserved", passed=not mismatches, metadata={"files": len(validated), "mismatches": dg.MetadataValue.json(mismatches)})


def pass_rate(validated: list, threshold: float) -> dg.AssetCheckResult:
    total = sum(v.records_total for v in validated)
    accepted = sum(v.accepted_rows for v in validated)
    rate = accepted / total if total else 1.0
    per_rule: dict[str, int] = {}
    for item in validated:
        for key, count in item.issues_per_rule.items():
            per_rule[key] = per_rule.get(key, 0) + count
    return dg.AssetCheckResult(
        check_name="pass_rate", passed=rate >= threshold, severity=dg.AssetCheckSeverity.WARN,
        metadata={"pass_rate_percent": round(100 * rate, 2), "threshold_percent": round(100 * threshold, 2), "records": total, "rows_per_rule": dg.MetadataValue.json(per_rule)},
    )


def delivered(outcome) -> dg.AssetCheckResult:
    """`outcome`: dealer_run.FeedOutcome. Failed: a file not delivered, a change not acknowledged after retries, a refusal."""
    api = outcome.api
    metadata = {
        "files_delivered": sum(f.sent for f in outcome.files), "files_failed": sum(f.error is not None for f in outcome.files),
        "changes_failed": api.failed if api else 0, "changes_dead_lettered": api.dead_lettered if api else 0,
        "errors": dg.MetadataValue.json(outcome.errors[:20]),
    }
    passed = not outcome.errors and not (api and (api.failed or api.dead_lettered))
    return dg.AssetCheckResult(check_name="delivered", passed=passed, metadata=metadata)


def drift_free(drift) -> dg.AssetCheckResult:
    """`drift`: delivery.drift.Drift, or None where the dealer does not publish. A sold car still offered is an ERROR; other drift a WARN."""
    if drift is None:
        return dg.AssetCheckResult(check_name="drift_free", passed=True, metadata={"vehicles_checked": 0, "note": "the dealer does not publish here"})
    records = [dg.TableRecord({"stock_id": stock_id, "kind": kind}) for stock_id, kind in drift.items()[:50]]
    metadata = {"vehicles_checked": drift.checked, **{f"vehicles_{kind}": count for kind, count in drift.counts().items()}}
    metadata["drifting"] = dg.MetadataValue.table(records, schema=dg.TableSchema(columns=[dg.TableColumn("stock_id", "string"), dg.TableColumn("kind", "string")]))
    if drift.error:
        metadata["error"] = drift.error
    severity = dg.AssetCheckSeverity.ERROR if drift.sold_live or drift.error else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name="drift_free", passed=drift.clean, severity=severity, metadata=metadata, description=drift.describe())


def quarantine_table(validated: list) -> dg.MetadataValue:
    """The first quarantined or flagged rows of each file as a table: file, row, stock id, field, rule, value, severity."""
    columns = ["file", "source_row", "stock_id", "field", "rule", "value", "severity"]
    records = [dg.TableRecord({"file": v.file_name, **{c: str(issue.get(c, "")) for c in columns[1:]}}) for v in validated for issue in v.first_issues]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]))


def stock_present(vehicles: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="stock_present", passed=vehicles > 0, severity=dg.AssetCheckSeverity.WARN, metadata={"vehicles": vehicles})


def not_held(held: dict[str, str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="no_held_exports", passed=not held, metadata={"held_exports": len(held), "held": dg.MetadataValue.json(held)})


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


def google_drift_check(partitions: dg.PartitionsDefinition):
    """google_listings' drift_free for one dealer, as last recorded: the account file's run evaluates it for every dealer
    after it delivers (and logs the result on each dealer's partition); run by hand, it shows the last recorded check."""

    def google_drift(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
        from dms_pipelines.delivery.drift import Drift
        from dms_pipelines.operations.drift_state import last_drift_items

        checked, items, error = last_drift_items(pipeline.engine(), context.partition_key, "google")
        drift = Drift(context.partition_key, "google", checked=checked, error=error)
        for stock_id, kind in items:
            getattr(drift, kind).append(stock_id)
        return drift_free(drift)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.asset_check(asset="google_listings", name=GOOGLE_DRIFT, partitions_def=partitions, description=(
            "The dealer's rows in the account-wide Google file at its destination are exactly its rows as built; checked by the account file's run."
        ))(google_drift)


def google_account_delivered(outcome) -> dg.AssetCheckResult:
    """`outcome`: delivery.snapshot.SnapshotOutcome of the account file."""
    return dg.AssetCheckResult(check_name="delivered", passed=outcome.error is None, metadata={"file_delivered": outcome.sent, "error": outcome.error or ""})


GOOGLE_DELIVERED = dg.AssetCheckSpec("delivered", asset="google_feed", description="The account-wide Google file was delivered (or its bytes were there already).")
CHECKS = [google_feed_allowlisted]
