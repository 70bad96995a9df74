"""A stage's outcome as Dagster sees it: materialisation metadata and check results, one function each, used by the assets and the group run."""

import csv

import dagster as dg

from dms_pipelines.delivery.drift import Drift
from dms_pipelines.marketplaces.base import KEY, MarketplaceSpec
from dms_pipelines.orchestration.metadata import preview
from dms_pipelines.pipeline.account import AccountFile
from dms_pipelines.pipeline.dealer import DealerRun, Landed, ParseSummary, rows_conserved
from dms_pipelines.pipeline.feeds import FeedOutcome
from dms_pipelines.pipeline.images import ImageRun
from dms_pipelines.pipeline.ingest import StockUpdate, ValidationSummary
from dms_pipelines.pipeline.publish import Published
from dms_pipelines.stock.schema import PRIVATE_COLUMNS


def landing_metadata(landed: Landed) -> dict:
    report = landed.report
    return {
        "files_landed": len(report.landed),
        "duplicates": len(report.duplicates),
        "failed": len(report.failed),
        "released": landed.released,
        "not_matching_profile": dg.MetadataValue.json(report.skipped_unmatched[:20]),
    }


def landing_checks(landed: Landed, rules) -> list[dg.AssetCheckResult]:
    """`rules`: the dealer's validation settings (Settings.rules_for)."""
    hours, limit = landed.hours_since_last_export, rules.freshness_hours
    failed = landed.report.failed
    return [
        dg.AssetCheckResult(
            check_name="export_freshness",
            passed=hours is not None and hours <= limit,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"hours_since_last_export": round(hours, 2) if hours is not None else -1.0, "limit_hours": limit},
        ),
        dg.AssetCheckResult(check_name="files_landed", passed=not failed, metadata={"files_failed": len(failed), "failures": dg.MetadataValue.json(failed[:20])}),
    ]


def parse_metadata(summary: ParseSummary) -> dict:
    return {
        "files": summary.files,
        "unreadable_files": len(summary.unreadable),
        "records": summary.records,
        "encodings": dg.MetadataValue.json(summary.encodings),
    }


def parse_checks(summary: ParseSummary) -> list[dg.AssetCheckResult]:
    unreadable = summary.unreadable
    return [dg.AssetCheckResult(check_name="files_readable", passed=not unreadable, metadata={"files_unreadable": len(unreadable), "unreadable": dg.MetadataValue.json(unreadable)})]


def validation_metadata(summaries: list[ValidationSummary]) -> dict:
    """The validated exports' figures, and their first quarantined or flagged rows as a table."""
    total = sum(v.records_total for v in summaries)
    accepted = sum(v.accepted_rows for v in summaries)
    warnings = sum(n for v in summaries for key, n in v.issues_per_rule.items() if key.startswith("warning:"))
    errors = sum(n for v in summaries for key, n in v.issues_per_rule.items() if key.startswith("error:"))
    return {
        "records": total,
        "accepted": accepted,
        "quarantined": total - accepted,  # vehicles
        "quarantine_issues": errors,  # the error issues behind them (a vehicle can have several)
        "skipped_by_profile": sum(v.skipped for v in summaries),
        "warnings": warnings,
        "pass_rate_percent": round(100 * accepted / total, 2) if total else 100.0,
        "issues": quarantine_table(summaries),
    }


def validation_checks(summaries: list[ValidationSummary], rules) -> list[dg.AssetCheckResult]:
    """`rules`: the dealer's validation settings (Settings.rules_for)."""
    mismatches = rows_conserved(summaries)
    total = sum(v.records_total for v in summaries)
    accepted = sum(v.accepted_rows for v in summaries)
    rate = accepted / total if total else 1.0
    threshold = rules.pass_rate_warning
    per_rule: dict[str, int] = {}
    for item in summaries:
        for key, count in item.issues_per_rule.items():
            per_rule[key] = per_rule.get(key, 0) + count
    return [
        dg.AssetCheckResult(check_name="rows_conserved", passed=not mismatches, metadata={"files": len(summaries), "mismatches": dg.MetadataValue.json(mismatches)}),
        dg.AssetCheckResult(
            check_name="pass_rate",
            passed=rate >= threshold,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"pass_rate_percent": round(100 * rate, 2), "threshold_percent": round(100 * threshold, 2), "records": total, "rows_per_rule": dg.MetadataValue.json(per_rule)},
        ),
    ]


def quarantine_table(summaries: list[ValidationSummary]) -> dg.MetadataValue:
    """The first quarantined or flagged rows of each file as a table: file, row, stock id, field, rule, value, severity."""
    columns = ["file", "source_row", "stock_id", "field", "rule", "value", "severity"]
    records = [dg.TableRecord({"file": v.file_name, **{c: str(issue.get(c, "")) for c in columns[1:]}}) for v in summaries for issue in v.first_issues]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]))


def stock_metadata(update: StockUpdate) -> dict:
    counts = update.status_counts()
    return {
        "vehicles": counts["vehicles"],
        "available": counts.get("available", 0),
        "reserved": counts.get("reserved", 0),
        "sold": counts.get("sold", 0),
        "added": update.added,
        "updated": update.updated,
        "removed": update.removed,
        "kept_last_good": update.kept_last_good,
        "held_exports": len(update.held),
        "held_reasons": dg.MetadataValue.json(update.held),
        "files_applied": dg.MetadataValue.json(update.applied),
    }


def stock_checks(update: StockUpdate) -> list[dg.AssetCheckResult]:
    vehicles = update.status_counts()["vehicles"]
    return [
        dg.AssetCheckResult(check_name="stock_present", passed=vehicles > 0, severity=dg.AssetCheckSeverity.WARN, metadata={"vehicles": vehicles}),
        dg.AssetCheckResult(check_name="no_held_exports", passed=not update.held, metadata={"held_exports": len(update.held), "held": dg.MetadataValue.json(update.held)}),
    ]


def image_metadata(run: ImageRun) -> dict:
    if run.error is not None:
        return {"vehicles": 0, "error": run.error, "note": "the image stage failed; the feeds went out on the last verdict"}
    if not run.checked:
        return {"vehicles": 0, "note": "the dealer's images are not judged (no images: section in its configuration): the DMS's lists go out as they are"}
    return {
        "vehicles": run.vehicles,
        "images": run.images,
        "meeting_group_standard": run.meeting_standard,
        "requests": run.requested,
        "unchanged_since_last_check": run.not_modified,
        "seconds": round(run.seconds, 2),
        "imaging_feed": run.feed_file or "(none)",
        "by_source": dg.MetadataValue.json(run.by_source),
        "by_status": dg.MetadataValue.json(run.by_status),
        "flags": dg.MetadataValue.json(run.flags),
        "held_back_per_marketplace": dg.MetadataValue.json(run.held),
        "left_out_per_marketplace": dg.MetadataValue.json(run.left_out),
        "unreachable_hosts": dg.MetadataValue.json(run.failed_hosts),
        "imaging_feed_problems": dg.MetadataValue.json(run.feed_problems[:50]),
    }


def image_checks(run: ImageRun, min_good: int) -> list[dg.AssetCheckResult]:
    """Both warn, never fail the run: an image host down or a dealer's poor photographs are for the operator to see, and
    the vehicles they concern are already held back with the reason."""
    hosts = dg.AssetCheckResult(
        check_name="image_hosts_reachable",
        passed=not run.failed_hosts,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unreachable_hosts": dg.MetadataValue.json(run.failed_hosts), "imaging_feed_problems": len(run.feed_problems)},
    )
    share = run.meeting_standard / run.vehicles if run.vehicles else 1.0
    standard = dg.AssetCheckResult(
        check_name="image_standard",
        passed=not run.checked or share == 1.0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"vehicles": run.vehicles, "meeting_standard": run.meeting_standard, "share": round(share, 4), "min_good_images": min_good, "flags": dg.MetadataValue.json(run.flags)},
    )
    judged = dg.AssetCheckResult(check_name="images_judged", passed=run.error is None, metadata={"error": run.error or ""})
    return [judged, hosts, standard]


def feed_metadata(spec: MarketplaceSpec, outcome: FeedOutcome) -> dict:
    """Materialisation metadata for one marketplace's feed of one dealer."""
    if not outcome.published:
        return {"listed": 0, "note": f"dealer does not publish to {outcome.marketplace}"}
    metadata = {"listed": outcome.listed, "held_back": outcome.held_back, "mean_completeness": outcome.mean_completeness}
    if outcome.rows_changed is not None:
        metadata["rebuilt_from_changed_vehicles"] = outcome.rows_changed
    if outcome.files:
        metadata |= {"files_delivered": sum(f.sent for f in outcome.files), "delivery_failed": sum(f.error is not None for f in outcome.files)}
    if outcome.api is not None:
        report = outcome.api
        metadata |= {
            "created": report.created,
            "updated": report.updated,
            "deleted": report.deleted,
            "unchanged": report.unchanged,
            "failed": report.failed,
            "dead_lettered": report.dead_lettered,
            "calls": report.calls,
            "reconciled": outcome.reconciled,
        }
    items = outcome.preview
    columns = list(spec.preview_columns) if spec.preview_columns else None
    metadata["preview"] = preview(items, columns) if columns else preview(items.drop(columns=[KEY]), None, rows=5)
    return metadata


def feed_checks(spec: MarketplaceSpec, outcome: FeedOutcome) -> list[dg.AssetCheckResult]:
    """A dealer's own feed: delivered and drift free (an account-wide file's part has the account run's checks instead)."""
    if spec.account_file is not None:
        return []
    return [delivered(outcome), drift_free(outcome.drift)]


def delivered(outcome: FeedOutcome) -> dg.AssetCheckResult:
    """Failed: a file not delivered, a change not acknowledged after retries, a refusal."""
    api = outcome.api
    metadata = {
        "files_delivered": sum(f.sent for f in outcome.files),
        "files_failed": sum(f.error is not None for f in outcome.files),
        "changes_failed": api.failed if api else 0,
        "changes_dead_lettered": api.dead_lettered if api else 0,
        "errors": dg.MetadataValue.json(outcome.errors[:20]),
    }
    passed = not outcome.errors and not (api and (api.failed or api.dead_lettered))
    return dg.AssetCheckResult(check_name="delivered", passed=passed, metadata=metadata)


def drift_free(drift: Drift | None) -> dg.AssetCheckResult:
    """None where the dealer does not publish. A sold car still offered is an ERROR; other drift a WARN."""
    if drift is None:
        return dg.AssetCheckResult(check_name="drift_free", passed=True, metadata={"vehicles_checked": 0, "note": "the dealer does not publish here"})
    records = [dg.TableRecord({"stock_id": stock_id, "kind": kind}) for stock_id, kind in drift.items()[:50]]
    metadata = {"vehicles_checked": drift.checked, **{f"vehicles_{kind}": count for kind, count in drift.counts().items()}}
    metadata["drifting"] = dg.MetadataValue.table(records, schema=dg.TableSchema(columns=[dg.TableColumn("stock_id", "string"), dg.TableColumn("kind", "string")]))
    if drift.error:
        metadata["error"] = drift.error
    severity = dg.AssetCheckSeverity.ERROR if drift.sold_live or drift.error else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name="drift_free", passed=drift.clean, severity=severity, metadata=metadata, description=drift.describe())


def warehouse_metadata(published: Published, paths) -> dict:
    problems = published.problems
    return {f"{table}_rows": count for table, count in published.rows.items()} | {"database": dg.MetadataValue.path(str(paths.warehouse_db))} | problems_metadata(problems)


def problems_metadata(problems: list) -> dict:
    """What is wrong after the run (each also an open incident, alerted once)."""
    return {"problems": len(problems), "problem_list": dg.MetadataValue.json([p.message for p in problems][:50])}


def account_file_metadata(spec: MarketplaceSpec, account: AccountFile) -> dict:
    shown = [c for c in spec.preview_columns or account.preview.columns[:5] if c in account.preview.columns]
    return {
        "listed": account.listed,
        "dealers": account.dealers,
        "file": dg.MetadataValue.path(account.outcome.file),
        "delivered": account.outcome.sent,
        "preview": preview(account.preview, shown),
    }


def account_file_delivered(account: AccountFile) -> dg.AssetCheckResult:
    outcome = account.outcome
    return dg.AssetCheckResult(check_name="delivered", passed=outcome.error is None, metadata={"file_delivered": outcome.sent, "error": outcome.error or ""})


def allowlisted_name(spec: MarketplaceSpec) -> str:
    return f"{spec.account_asset}_allowlisted"


def account_file_allowlisted(spec: MarketplaceSpec, settings, paths) -> dg.AssetCheckResult:
    """The account file at its destination has exactly the marketplace's allowlisted columns: nothing private can be in it."""
    market = settings.marketplaces[spec.name]
    file_format = spec.file_format(market.file_format)
    path = paths.resolve(market.destination.path) / spec.account_file.name(file_format)
    if not path.exists():
        return dg.AssetCheckResult(check_name=allowlisted_name(spec), passed=False, metadata={"missing": str(path)})
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle, delimiter=spec.account_file.delimiter(file_format)), [])
    unexpected = sorted(set(header) - set(spec.account_file.columns)) + [c for c in header if c in PRIVATE_COLUMNS]
    return dg.AssetCheckResult(check_name=allowlisted_name(spec), passed=not unexpected, metadata={"unexpected_columns": dg.MetadataValue.json(unexpected)})


def as_evaluation(result: dg.AssetCheckResult, asset: str, partition: str | None) -> dg.AssetCheckEvaluation:
    """The result as an event another step logs for the dealer's partition (the group run, the account file's run)."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset),
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=partition,
    )


def dealer_events(run: DealerRun, settings, specs: list[MarketplaceSpec], paths) -> dict[str, tuple[dict, list[dg.AssetCheckResult]]]:
    """Per per-dealer asset, the metadata and the check results its own materialisation gives: the same functions, the same outcomes."""
    events = {
        "landed_exports": (landing_metadata(run.landed), landing_checks(run.landed, settings.rules_for(run.dealer_id))),
        "parsed_exports": (parse_metadata(run.parsed), parse_checks(run.parsed)),
        "validated_exports": (validation_metadata(run.validated), validation_checks(run.validated, settings.rules_for(run.dealer_id))),
        "dealer_stock": (stock_metadata(run.stock), stock_checks(run.stock)),
        "vehicle_images": (image_metadata(run.images), image_checks(run.images, settings.images.min_good_images)),
    }
    for spec in specs:
        outcome = run.feeds[spec.name]
        events[spec.dealer_asset] = (feed_metadata(spec, outcome), feed_checks(spec, outcome))
    events["warehouse_tables"] = (warehouse_metadata(run.published, paths), [])
    return events
