"""Dagster assets for the sync, one dealer per partition; each body calls plain functions from dms_pipelines.sync."""

from datetime import datetime

import dagster as dg
import pandas as pd

from dms_pipelines import sync
from dms_pipelines.orchestration import checks
from dms_pipelines.alerts import alert_if_failing
from dms_pipelines.delivery.api_delivery import deliver as deliver_api
from dms_pipelines.delivery.api_delivery import reconcile
from dms_pipelines.delivery.destinations import api_client_for, destination_for
from dms_pipelines.delivery.stock_api import ApiError
from dms_pipelines.delivery.snapshot import ACCOUNT, deliver_file
from dms_pipelines.marketplaces import carsnip, google, meta, website
from dms_pipelines.marketplaces.base import KEY, listing_rows
from dms_pipelines.marketplaces.registry import render_dealer
from dms_pipelines.orchestration.metadata import preview, top_reasons
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.stock.schema import PRIVATE_COLUMNS
from dms_pipelines.stock.store import read_history, write_parquet_atomically
from dms_pipelines.warehouse.export import operational_rows
from dms_pipelines.warehouse.tables import publish, rebuild_catalog

RELEASE_TAG = "dms_pipelines/release_held"
TRIGGER_TAG = "dms_pipelines/trigger"
CHANGE_SEEN_TAG = "dms_pipelines/change_seen_at"


def _tagged_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ApiDeliveryConfig(dg.Config):
    reconcile: bool = False  # compare with the marketplace's own listing first (always on for nightly runs)


class LandingConfig(dg.Config):
    release_held: bool = False  # apply held full exports despite the delisting guard (an operator's deliberate choice)


def dealer_assets(partitions: dg.PartitionsDefinition) -> list:
    """The per-dealer assets over `partitions` (the configured dealer ids)."""

    @dg.asset(partitions_def=partitions, group_name="ingest", kinds={"python", "file"}, check_specs=[checks.FRESHNESS])
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

    @dg.asset(partitions_def=partitions, group_name="ingest", kinds={"pandas"}, check_specs=[checks.FILES_READABLE])
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
        yield checks.files_readable(parsed)

    @dg.asset(partitions_def=partitions, group_name="quality", kinds={"pandera"}, check_specs=[checks.ROWS_CONSERVED, checks.PASS_RATE])
    def validated_exports(context: dg.AssetExecutionContext, parsed_exports: list, pipeline: PipelineResource) -> list:
        """Every row checked by the canonical Pandera model and the row rules; errors quarantined with reasons."""
        validated = sync.validate_parsed(parsed_exports, pipeline.settings(), pipeline.paths(), pipeline.engine())
        issues = pd.concat([v.issues for v in validated], ignore_index=True) if validated else pd.DataFrame(columns=["severity", "field", "rule"])
        total = sum(v.records_total for v in validated)
        accepted = sum(len(v.accepted) for v in validated)
        yield dg.Output(
            validated,
            metadata={
                "records": total,
                "accepted": accepted,
                "quarantined": total - accepted,
                "warnings": int((issues["severity"] == "warning").sum()),
                "pass_rate": round(accepted / total, 4) if total else 1.0,
                "top_reasons": dg.MetadataValue.md(top_reasons(issues)),
                "top_warnings": dg.MetadataValue.md(top_reasons(issues, "warning")),
            },
        )
        yield checks.rows_conserved(validated)
        yield checks.pass_rate(validated, pipeline.settings().validation.pass_rate_warning)

    @dg.asset(partitions_def=partitions, group_name="stock", kinds={"parquet"}, check_specs=[checks.STOCK_PRESENT, checks.NOT_HELD])
    def dealer_stock(context: dg.AssetExecutionContext, validated_exports: list, pipeline: PipelineResource) -> pd.DataFrame:
        """The dealer's current stock: a full export replaces it, deltas patch it, a held export leaves it as it was."""
        dealer = pipeline.settings().dealer(context.partition_key)
        outcome = sync.update_stock(dealer, validated_exports, pipeline.settings(), pipeline.paths(), pipeline.engine(), run_id=context.run_id)
        for name, reason in outcome.held.items():
            context.log.error(f"{name} held: {reason}")
        stock = outcome.stock
        yield dg.Output(
            stock,
            metadata={
                "vehicles": len(stock),
                "available": int((stock["status"] == "available").sum()),
                "reserved": int((stock["status"] == "reserved").sum()),
                "sold": int((stock["status"] == "sold").sum()),
                "added": outcome.added,
                "updated": outcome.updated,
                "removed": outcome.removed,
                "kept_last_good": outcome.kept_last_good,
                "held_exports": len(outcome.held),
                "held_reasons": dg.MetadataValue.json(outcome.held),
                "files_applied": dg.MetadataValue.json(outcome.applied),
            },
        )
        yield checks.stock_present(stock)
        yield checks.not_held(outcome.held)

    @dg.asset(partitions_def=partitions, group_name="feeds", kinds={"csv"})
    def google_listings(context: dg.AssetExecutionContext, dealer_stock: pd.DataFrame, pipeline: PipelineResource) -> pd.DataFrame:
        """The dealer's rows for the account-wide Google Vehicle Listings file, kept under state/feeds/google/."""
        dealer = pipeline.settings().dealer(context.partition_key)
        rendered = render_dealer(dealer, dealer_stock, "google")
        target = pipeline.paths().state / "feeds" / "google" / f"{dealer.id}.parquet"
        if rendered is None:
            target.unlink(missing_ok=True)
            context.add_output_metadata({"listed": 0, "note": "dealer does not publish to google"})
            return pd.DataFrame()
        write_parquet_atomically(rendered.items.drop(columns=[KEY]), target)
        for row in rendered.held.itertuples(index=False):
            context.log.warning(f"google: {row.stock_id} held back: {row.reasons}")
        context.add_output_metadata(
            {
                "listed": len(rendered.items),
                "held_back": len(rendered.held),
                "mean_completeness": float(rendered.completeness["completeness"].mean()) if len(rendered.completeness) else 0.0,
                "preview": preview(rendered.items, ["id", "make", "model", "price", "mileage", "condition"]),
            }
        )
        return listing_rows(rendered)

    website_feed = snapshot_feed_asset("website", partitions, "json")
    meta_feed = snapshot_feed_asset("meta", partitions, "csv")
    carsnip_feed = snapshot_feed_asset("carsnip", partitions, "csv")

    @dg.asset(partitions_def=partitions, group_name="feeds", kinds={"api"})
    def autotrader_listings(context: dg.AssetExecutionContext, config: ApiDeliveryConfig, dealer_stock: pd.DataFrame, pipeline: PipelineResource) -> pd.DataFrame:
        """The dealer's stock on the Auto Trader-style API: only changed vehicles sent; the nightly run reconciles first."""
        settings = pipeline.settings()
        dealer = settings.dealer(context.partition_key)
        rendered = render_dealer(dealer, dealer_stock, "autotrader")
        if rendered is None or "autotrader" not in settings.marketplaces:
            context.add_output_metadata({"listed": 0, "note": f"{dealer.id} does not publish to autotrader"})
            return pd.DataFrame()
        engine = pipeline.engine()
        client = api_client_for(settings.marketplaces["autotrader"])
        advertiser = dealer.marketplaces["autotrader"].advertiser_id or dealer.id
        trigger = context.run.tags.get(TRIGGER_TAG, "manual")
        repaired = 0
        if config.reconcile or trigger == "nightly":
            try:
                repaired = reconcile(engine, client, dealer.id, advertiser, rendered.items)
            except ApiError as error:
                context.log.error(f"autotrader reconciliation for {dealer.id} failed: {error}; delivering from the ledger alone")
        report = deliver_api(engine, client, dealer.id, advertiser, rendered.items, run_id=context.run_id, trigger=trigger, change_seen_at=sync.change_seen_at(engine, context.run_id))
        for error in report.errors:
            context.log.error(f"autotrader: {error}")
        if report.failed or report.dead_lettered:
            alert_if_failing(settings, engine, "autotrader", dealer.id, context.log)
        context.add_output_metadata(
            {
                "listed": len(rendered.items), "held_back": len(rendered.held), "created": report.created, "updated": report.updated,
                "deleted": report.deleted, "unchanged": report.unchanged, "failed": report.failed, "dead_lettered": report.dead_lettered,
                "calls": report.calls, "reconciled": repaired,
                "preview": preview(rendered.items, ["external_reference", "lifecycle_state", "make", "model", "amount_gbp"]),
            }
        )
        return listing_rows(rendered)

    @dg.asset(partitions_def=partitions, group_name="warehouse", kinds={"duckdb", "parquet"})
    def warehouse_tables(
        context: dg.AssetExecutionContext, dealer_stock: pd.DataFrame, validated_exports: list, google_listings: pd.DataFrame,
        website_feed: pd.DataFrame, meta_feed: pd.DataFrame, carsnip_feed: pd.DataFrame, autotrader_listings: pd.DataFrame,
        pipeline: PipelineResource,
    ) -> None:
        """The dealer's rows of every analysts' table (stock, history, quarantine, files, listings, deliveries, runs) in data/warehouse.duckdb."""
        dealer_id = context.partition_key
        paths = pipeline.paths()
        engine = pipeline.engine()
        sync.record_sync_run(engine, context.run_id, dealer_id, context.run.tags.get(TRIGGER_TAG, "manual"), validated_exports, len(dealer_stock))
        operational = operational_rows(engine, dealer_id)
        operational.pop("ledger")
        listings = [f for f in (google_listings, website_feed, meta_feed, carsnip_feed, autotrader_listings) if len(f)]
        tables = {
            "stock_current": dealer_stock.drop(columns=PRIVATE_COLUMNS),
            "stock_history": read_history(paths.state, dealer_id),
            "marketplace_listings": pd.concat(listings, ignore_index=True) if listings else pd.DataFrame(),
        } | operational
        counts = publish(paths, dealer_id, tables)
        rebuild_catalog(paths)
        context.add_output_metadata({f"{table}_rows": count for table, count in counts.items()} | {"database": dg.MetadataValue.path(str(paths.warehouse_db))})

    return [landed_exports, parsed_exports, validated_exports, dealer_stock, google_listings, website_feed, meta_feed, carsnip_feed, autotrader_listings, warehouse_tables]


def snapshot_files(marketplace: str, rendered, dealer, file_format: str | None) -> dict[str, bytes]:
    """The files a per-dealer snapshot marketplace receives, by name."""
    if marketplace == "website":
        return {f"{dealer.id}.json": website.serialise(rendered.items, dealer)}
    if marketplace == "meta":
        fmt = file_format or "csv"
        return {f"{dealer.id}.{fmt}": meta.serialise(rendered.items, fmt)}
    if marketplace == "carsnip":
        account = dealer.marketplaces["carsnip"]
        return {f"{dealer.id}_dealer.csv": carsnip.serialise_dealer(dealer, account), f"{dealer.id}_vehicles.csv": carsnip.serialise_vehicles(rendered.items)}
    raise ValueError(f"{marketplace} is not a per-dealer snapshot marketplace")


def snapshot_feed_asset(marketplace: str, partitions: dg.PartitionsDefinition, kind: str):
    """A per-dealer feed file for `marketplace`, delivered only when its bytes changed; its listing rows go to the warehouse."""

    @dg.asset(name=f"{marketplace}_feed", partitions_def=partitions, group_name="feeds", kinds={kind})
    def feed(context: dg.AssetExecutionContext, dealer_stock: pd.DataFrame, pipeline: PipelineResource) -> pd.DataFrame:
        settings = pipeline.settings()
        dealer = settings.dealer(context.partition_key)
        rendered = render_dealer(dealer, dealer_stock, marketplace)
        if rendered is None or marketplace not in settings.marketplaces:
            context.add_output_metadata({"listed": 0, "note": f"{dealer.id} does not publish to {marketplace}"})
            return pd.DataFrame()
        market = settings.marketplaces[marketplace]
        destination = destination_for(market, pipeline.paths())
        seen = sync.change_seen_at(pipeline.engine(), context.run_id)
        outcomes = [
            deliver_file(pipeline.engine(), destination, marketplace, dealer.id, name, content, run_id=context.run_id,
                         trigger=context.run.tags.get(TRIGGER_TAG, "manual"), change_seen_at=seen)
            for name, content in snapshot_files(marketplace, rendered, dealer, market.file_format).items()
        ]
        for outcome in outcomes:
            if outcome.error:
                context.log.error(f"{marketplace} file for {dealer.id} not delivered: {outcome.error}")
        for row in rendered.held.itertuples(index=False):
            context.log.warning(f"{marketplace}: {row.stock_id} held back: {row.reasons}")
        context.add_output_metadata(
            {
                "listed": len(rendered.items),
                "held_back": len(rendered.held),
                "files_delivered": sum(o.sent for o in outcomes),
                "delivery_failed": sum(o.error is not None for o in outcomes),
                "mean_completeness": float(rendered.completeness["completeness"].mean()) if len(rendered.completeness) else 0.0,
                "preview": preview(rendered.items.drop(columns=[KEY]), None, rows=5),
            }
        )
        return listing_rows(rendered)

    return feed


@dg.asset(group_name="feeds", kinds={"csv"}, deps=[dg.AssetKey("google_listings")], automation_condition=dg.AutomationCondition.eager())
def google_feed(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> None:
    """The one Google Vehicle Listings file for the whole account: every dealer's last good rows, rewritten only when changed."""
    settings = pipeline.settings()
    paths = pipeline.paths()
    frames = []
    for dealer in settings.dealers:
        part = paths.state / "feeds" / "google" / f"{dealer.id}.parquet"
        if part.exists() and "google" in dealer.marketplaces:
            frames.append(pd.read_parquet(part))
    items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=google.COLUMNS)
    marketplace = settings.marketplaces["google"]
    file_format = marketplace.file_format or "csv"
    outcome = deliver_file(
        pipeline.engine(), destination_for(marketplace, paths), "google", ACCOUNT, f"vehicle_listings.{file_format}",
        google.serialise(items, file_format), run_id=context.run_id, trigger=context.run.tags.get(TRIGGER_TAG, "manual"),
        change_seen_at=_tagged_time(context.run.tags.get(CHANGE_SEEN_TAG)),
    )
    account_rows = operational_rows(pipeline.engine(), ACCOUNT)
    publish(paths, "account", {"deliveries": account_rows["deliveries"], "dead_letters": account_rows["dead_letters"]})
    rebuild_catalog(paths)
    if outcome.error:
        raise dg.Failure(f"Google feed not delivered: {outcome.error}")
    context.add_output_metadata(
        {
            "listed": len(items),
            "dealers": len(frames),
            "file": dg.MetadataValue.path(outcome.file),
            "delivered": outcome.sent,
            "preview": preview(items, ["store_code", "id", "make", "model", "price"]),
        }
    )
