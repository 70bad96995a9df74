"""Dagster assets for the sync, one dealer per partition; each body calls plain functions from dms_pipelines.sync."""

from datetime import datetime

import dagster as dg

from dms_pipelines import dealer_run, sync
from dms_pipelines.orchestration import checks
from dms_pipelines.marketplaces.base import KEY
from dms_pipelines.orchestration.metadata import preview
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.stock.store import StockView

RELEASE_TAG = "dms_pipelines/release_held"
TRIGGER_TAG = "dms_pipelines/trigger"
CHANGE_SEEN_TAG = "dms_pipelines/change_seen_at"


def _tagged_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ApiDeliveryConfig(dg.Config):
    reconcile: bool = False  # compare with the marketplace's own listing first (always on for nightly runs)


class LandingConfig(dg.Config):
    release_held: bool = False  # apply held full exports despite the guards: delisting, distribution (an operator's deliberate choice)


def dealer_assets(partitions: dg.PartitionsDefinition) -> list:
    """The per-dealer assets over `partitions` (the configured dealer ids), each with its checks on the dealer's partition."""
    specs = checks.dealer_check_specs(partitions)

    @dg.asset(partitions_def=partitions, group_name="ingest", kinds={"python", "file"}, check_specs=specs["landed_exports"])
    def landed_exports(context: dg.AssetExecutionContext, config: LandingConfig, pipeline: PipelineResource) -> dict:
        """New DMS export files copied from the dealer's source into landing/<dealer>/, each with a sha256 and a manifest row."""
        dealer = pipeline.settings().dealer(context.partition_key)
        engine = pipeline.engine()
        released = 0
        if config.release_held or context.run.tags.get(RELEASE_TAG) == "true":
            released = sync.release_held_files(engine, dealer.id, released_by=f"run {context.run_id}")
            context.log.warning(f"{released} held export(s) of {dealer.id} released by this run")
        report = sync.land(dealer, pipeline.paths(), engine, run_id=context.run_id)
        for failure in report.failed:
            context.log.error(failure)
        yield dg.Output(
            {"landed": report.landed, "duplicates": report.duplicates, "failed": report.failed},
            metadata={
                "files_landed": len(report.landed),
                "duplicates": len(report.duplicates),
                "failed": len(report.failed),
                "released": released,
                "not_matching_profile": dg.MetadataValue.json(report.skipped_unmatched[:20]),
            },
        )
        yield checks.export_freshness(sync.hours_since_last_export(engine, dealer.id), pipeline.settings().validation.freshness_hours)
        yield checks.files_landed(report.failed)

    @dg.asset(partitions_def=partitions, group_name="ingest", kinds={"pandas"}, check_specs=specs["parsed_exports"])
    def parsed_exports(context: dg.AssetExecutionContext, landed_exports: dict, pipeline: PipelineResource) -> list:
        """The dealer's landed files read through its mapping profile into canonical columns, oldest first."""
        dealer = pipeline.settings().dealer(context.partition_key)
        parsed = sync.parse_pending(dealer, pipeline.paths(), pipeline.engine(), pipeline.settings().validation.max_uncompressed_mb)
        for item in parsed:
            if item.error:
                context.log.error(item.error)
            elif item.result and item.result.warnings:
                for warning in item.result.warnings:
                    context.log.warning(warning)
        yield dg.Output(
            parsed,
            metadata={
                "files": len(parsed),
                "unreadable_files": sum(1 for p in parsed if p.error),
                "records": sum(p.result.records_total for p in parsed if p.result),
                "encodings": dg.MetadataValue.json({p.file_name: p.result.encoding for p in parsed if p.result}),
            },
        )
        yield checks.files_readable({p.file_name: p.error for p in parsed if p.error})

    @dg.asset(partitions_def=partitions, group_name="quality", kinds={"pandera"}, check_specs=specs["validated_exports"])
    def validated_exports(context: dg.AssetExecutionContext, parsed_exports: list, pipeline: PipelineResource) -> list:
        """Every row checked by the canonical Pandera model and the row rules; errors quarantined with reasons."""
        validated = sync.validate_parsed(parsed_exports, pipeline.settings(), pipeline.paths(), pipeline.engine())
        summaries = [sync.ValidationSummary.of(v) for v in validated]
        yield dg.Output(validated, metadata=validation_metadata(summaries))
        yield checks.rows_conserved(summaries)
        yield checks.pass_rate(summaries, pipeline.settings().validation.pass_rate_warning)

    @dg.asset(partitions_def=partitions, group_name="stock", kinds={"parquet"}, check_specs=specs["dealer_stock"])
    def dealer_stock(context: dg.AssetExecutionContext, validated_exports: list, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's current stock (state/stock/<dealer>.parquet): a full export replaces it, deltas patch it, a held export leaves it as it was."""
        dealer = pipeline.settings().dealer(context.partition_key)
        outcome = sync.update_stock(dealer, validated_exports, pipeline.settings(), pipeline.paths(), pipeline.engine(), run_id=context.run_id)
        for name, reason in outcome.held.items():
            context.log.error(f"{name} held: {reason}")
        counts = outcome.status_counts()
        return dg.MaterializeResult(metadata=stock_metadata(outcome, counts), check_results=[checks.stock_present(counts["vehicles"]), checks.not_held(outcome.held)])

    @dg.asset(partitions_def=partitions, group_name="feeds", kinds={"csv"}, deps=[dealer_stock])
    def google_listings(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's rows for the account-wide Google Vehicle Listings file, kept under state/feeds/google/<dealer>/."""
        paths = pipeline.paths()
        dealer = pipeline.settings().dealer(context.partition_key)
        outcome = dealer_run.google_rows(dealer, StockView(paths.state, dealer.id), pipeline.settings(), paths, context.log)
        return dg.MaterializeResult(metadata=feed_metadata(outcome))

    website_feed = snapshot_feed_asset("website", partitions, "json", dealer_stock, specs["website_feed"])
    meta_feed = snapshot_feed_asset("meta", partitions, "csv", dealer_stock, specs["meta_feed"])
    carsnip_feed = snapshot_feed_asset("carsnip", partitions, "csv", dealer_stock, specs["carsnip_feed"])

    @dg.asset(partitions_def=partitions, group_name="feeds", kinds={"api"}, deps=[dealer_stock], check_specs=specs["autotrader_listings"])
    def autotrader_listings(context: dg.AssetExecutionContext, config: ApiDeliveryConfig, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's stock on the Auto Trader-style API: only changed vehicles sent; the nightly run reconciles first."""
        settings, paths, engine = pipeline.settings(), pipeline.paths(), pipeline.engine()
        dealer = settings.dealer(context.partition_key)
        trigger = context.run.tags.get(TRIGGER_TAG, "manual")
        outcome = dealer_run.autotrader_feed(
            dealer, StockView(paths.state, dealer.id), settings, paths, engine, context.run_id, trigger,
            reconcile_first=config.reconcile or trigger == "nightly", change_seen_at=sync.change_seen_at(engine, context.run_id), logger=context.log,
        )
        return dg.MaterializeResult(metadata=feed_metadata(outcome), check_results=feed_checks(outcome))

    @dg.asset(partitions_def=partitions, group_name="warehouse", kinds={"duckdb", "parquet"}, deps=[dealer_stock, google_listings, website_feed, meta_feed, carsnip_feed, autotrader_listings])
    def warehouse_tables(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's rows of every analysts' table (stock, history, quarantine, files, listings, deliveries, runs) in data/warehouse.duckdb."""
        paths = pipeline.paths()
        dealer_id = context.partition_key
        problems = dealer_run.finish_dealer_run(pipeline.settings(), pipeline.engine(), dealer_id, context.run_id, context.log)
        counts = dealer_run.publish_dealer_warehouse(dealer_id, paths, pipeline.engine(), context.run_id, context.run.tags.get(TRIGGER_TAG, "manual"), len(problems))
        return dg.MaterializeResult(metadata=warehouse_metadata(counts, paths) | problems_metadata(problems))

    return [landed_exports, parsed_exports, validated_exports, dealer_stock, google_listings, website_feed, meta_feed, carsnip_feed, autotrader_listings, warehouse_tables]


def stock_metadata(outcome: sync.StockUpdate, counts: dict[str, int] | None = None) -> dict:
    counts = counts or outcome.status_counts()
    return {
        "vehicles": counts["vehicles"],
        "available": counts.get("available", 0),
        "reserved": counts.get("reserved", 0),
        "sold": counts.get("sold", 0),
        "added": outcome.added,
        "updated": outcome.updated,
        "removed": outcome.removed,
        "kept_last_good": outcome.kept_last_good,
        "held_exports": len(outcome.held),
        "held_reasons": dg.MetadataValue.json(outcome.held),
        "files_applied": dg.MetadataValue.json(outcome.applied),
    }


PREVIEW_COLUMNS = {
    "google": ["id", "make", "model", "price", "mileage", "condition"],
    "autotrader": ["external_reference", "lifecycle_state", "make", "model", "amount_gbp"],
}


def feed_metadata(outcome: dealer_run.FeedOutcome) -> dict:
    """Materialisation metadata for one marketplace's feed of one dealer."""
    if not outcome.published:
        return {"listed": 0, "note": f"dealer does not publish to {outcome.marketplace}"}
    items = outcome.preview
    metadata = {"listed": outcome.listed, "held_back": outcome.held_back, "mean_completeness": outcome.mean_completeness}
    if outcome.rows_changed is not None:
        metadata["rebuilt_from_changed_vehicles"] = outcome.rows_changed
    if outcome.files:
        metadata |= {"files_delivered": sum(f.sent for f in outcome.files), "delivery_failed": sum(f.error is not None for f in outcome.files)}
    if outcome.api is not None:
        report = outcome.api
        metadata |= {
            "created": report.created, "updated": report.updated, "deleted": report.deleted, "unchanged": report.unchanged,
            "failed": report.failed, "dead_lettered": report.dead_lettered, "calls": report.calls, "reconciled": outcome.reconciled,
        }
    columns = PREVIEW_COLUMNS.get(outcome.marketplace)
    metadata["preview"] = preview(items, columns) if columns else preview(items.drop(columns=[KEY]), None, rows=5)
    return metadata


def warehouse_metadata(counts: dict[str, int], paths) -> dict:
    return {f"{table}_rows": count for table, count in counts.items()} | {"database": dg.MetadataValue.path(str(paths.warehouse_db))}


def snapshot_feed_asset(marketplace: str, partitions: dg.PartitionsDefinition, kind: str, dealer_stock, check_specs: list):
    """A per-dealer feed file for `marketplace`, delivered only when its bytes changed; its listing rows go to the warehouse."""

    @dg.asset(
        name=f"{marketplace}_feed", partitions_def=partitions, group_name="feeds", kinds={kind}, deps=[dealer_stock], check_specs=check_specs,
        description=f"The dealer's {marketplace} feed file(s), delivered only when their bytes changed; listing rows kept for the warehouse.",
    )
    def feed(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        settings, paths, engine = pipeline.settings(), pipeline.paths(), pipeline.engine()
        dealer = settings.dealer(context.partition_key)
        outcome = dealer_run.snapshot_feed(
            marketplace, dealer, StockView(paths.state, dealer.id), settings, paths, engine, context.run_id,
            context.run.tags.get(TRIGGER_TAG, "manual"), sync.change_seen_at(engine, context.run_id), context.log,
        )
        return dg.MaterializeResult(metadata=feed_metadata(outcome), check_results=feed_checks(outcome))

    return feed


def feed_checks(outcome: dealer_run.FeedOutcome) -> list[dg.AssetCheckResult]:
    return [checks.delivered(outcome), checks.drift_free(outcome.drift)]


def validation_metadata(summaries: list) -> dict:
    """The validated exports' figures, and their first quarantined or flagged rows as a table."""
    total = sum(v.records_total for v in summaries)
    accepted = sum(v.accepted_rows for v in summaries)
    warnings = sum(n for v in summaries for key, n in v.issues_per_rule.items() if key.startswith("warning:"))
    return {
        "records": total, "accepted": accepted, "quarantined": total - accepted, "warnings": warnings,
        "pass_rate_percent": round(100 * accepted / total, 2) if total else 100.0,
        "issues": checks.quarantine_table(summaries),
    }


def problems_metadata(problems: list) -> dict:
    """What is wrong for the dealer after the run (each also an open incident, alerted once)."""
    return {"problems": len(problems), "problem_list": dg.MetadataValue.json([p.message for p in problems][:50])}


@dg.asset(
    group_name="feeds", kinds={"csv"}, deps=[dg.AssetKey("google_listings")], automation_condition=dg.AutomationCondition.eager(), check_specs=[checks.GOOGLE_DELIVERED],
)
def google_feed(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    """The one Google Vehicle Listings file for the whole account: every dealer's last good rows, rewritten only when changed,
    then read back for each dealer (its drift_free check on google_listings)."""
    settings, engine = pipeline.settings(), pipeline.engine()
    account = dealer_run.google_account_file(
        settings, pipeline.paths(), engine, context.run_id, context.run.tags.get(TRIGGER_TAG, "manual"), _tagged_time(context.run.tags.get(CHANGE_SEEN_TAG)),
    )
    for dealer_id, drift in account.drift.items():
        context.log_event(checks.as_evaluation(checks.drift_free(drift), "google_listings", dealer_id))
    problems = dealer_run.finish_account_run(settings, engine, context.run_id, context.log, account.drift)
    return dg.MaterializeResult(
        metadata=google_file_metadata(account) | problems_metadata([p for found in problems.values() for p in found]),
        check_results=[checks.google_account_delivered(account.outcome)],
    )


def google_file_metadata(account: "dealer_run.AccountFile") -> dict:
    return {
        "listed": account.listed,
        "dealers": account.dealers,
        "file": dg.MetadataValue.path(account.outcome.file),
        "delivered": account.outcome.sent,
        "preview": preview(account.preview, ["store_code", "id", "make", "model", "price"]),
    }
