"""Dagster assets, one dealer per partition and a feed asset per marketplace of the registry; each body calls one stage of dms_pipelines.pipeline."""

from datetime import datetime

import dagster as dg

from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.operations.manifest import change_seen_at
from dms_pipelines.orchestration import checks, outcomes
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.pipeline import dealer as stages
from dms_pipelines.pipeline.account import account_file
from dms_pipelines.pipeline.dealer import ParseSummary
from dms_pipelines.pipeline.feeds import publish_feed
from dms_pipelines.pipeline.images import image_stage
from dms_pipelines.pipeline.publish import finish_account_run
from dms_pipelines.stock.store import StockView

RELEASE_TAG = "dms_pipelines/release_held"
TRIGGER_TAG = "dms_pipelines/trigger"
CHANGE_SEEN_TAG = "dms_pipelines/change_seen_at"
DEFAULT_TRIGGER = "manual"  # a run with no trigger tag: a materialisation from the UI or the command line


def trigger_of(context) -> str:
    return context.run.tags.get(TRIGGER_TAG, DEFAULT_TRIGGER)


def _tagged_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ApiDeliveryConfig(dg.Config):
    reconcile: bool = False  # compare with the marketplace's own listing first (always on for nightly runs)


class LandingConfig(dg.Config):
    release_held: bool = False  # apply held full exports despite the guards: delisting, distribution (an operator's deliberate choice)


def dealer_assets(partitions: dg.PartitionsDefinition, specs: list[MarketplaceSpec]) -> list:
    """The per-dealer assets over `partitions` (the configured dealer ids), each with its checks on the dealer's partition:
    the ingest and stock stages, a feed asset per marketplace in `specs`, and the warehouse rows."""
    check_specs = checks.dealer_check_specs(partitions, specs)

    @dg.asset(partitions_def=partitions, group_name="ingest", kinds={"python", "file"}, check_specs=check_specs["landed_exports"])
    def landed_exports(context: dg.AssetExecutionContext, config: LandingConfig, pipeline: PipelineResource) -> dict:
        """New DMS export files copied from the dealer's source into landing/<dealer>/, each with a sha256 and a manifest row."""
        settings = pipeline.settings()
        release = config.release_held or context.run.tags.get(RELEASE_TAG) == "true"
        landed = stages.land_stage(settings.dealer(context.partition_key), settings, pipeline.paths(), pipeline.engine(), context.run_id, release, context.log)
        report = landed.report
        yield dg.Output({"landed": report.landed, "duplicates": report.duplicates, "failed": report.failed}, metadata=outcomes.landing_metadata(landed))
        yield from outcomes.landing_checks(landed, settings.rules_for(context.partition_key))

    @dg.asset(partitions_def=partitions, group_name="ingest", kinds={"pandas"}, check_specs=check_specs["parsed_exports"])
    def parsed_exports(context: dg.AssetExecutionContext, landed_exports: dict, pipeline: PipelineResource) -> list:
        """The dealer's landed files read through its mapping profile into canonical columns, oldest first."""
        settings = pipeline.settings()
        parsed = stages.parse_stage(settings.dealer(context.partition_key), settings, pipeline.paths(), pipeline.engine(), context.log)
        summary = ParseSummary.of(parsed)
        yield dg.Output(parsed, metadata=outcomes.parse_metadata(summary))
        yield from outcomes.parse_checks(summary)

    @dg.asset(partitions_def=partitions, group_name="quality", kinds={"pandera"}, check_specs=check_specs["validated_exports"])
    def validated_exports(context: dg.AssetExecutionContext, parsed_exports: list, pipeline: PipelineResource) -> list:
        """Every row checked by the canonical Pandera model and the row rules; errors quarantined with reasons."""
        validated, summaries = stages.validate_stage(parsed_exports, pipeline.settings(), pipeline.paths(), pipeline.engine())
        yield dg.Output(validated, metadata=outcomes.validation_metadata(summaries))
        yield from outcomes.validation_checks(summaries, pipeline.settings().rules_for(context.partition_key))

    @dg.asset(partitions_def=partitions, group_name="stock", kinds={"parquet"}, check_specs=check_specs["dealer_stock"])
    def dealer_stock(context: dg.AssetExecutionContext, validated_exports: list, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's current stock (state/stock/<dealer>.parquet): a full export replaces it, deltas patch it, a held export leaves it as it was."""
        settings = pipeline.settings()
        update = stages.stock_stage(settings.dealer(context.partition_key), validated_exports, settings, pipeline.paths(), pipeline.engine(), context.run_id, context.log)
        return dg.MaterializeResult(metadata=outcomes.stock_metadata(update), check_results=outcomes.stock_checks(update))

    @dg.asset(partitions_def=partitions, group_name="stock", kinds={"python", "http"}, deps=[dealer_stock], check_specs=check_specs["vehicle_images"])
    def vehicle_images(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Each listed vehicle's photographs (the imaging service's set or the DMS's), every image looked at (only new or changed ones fetched), judged per marketplace."""
        settings, paths = pipeline.settings(), pipeline.paths()
        dealer, stock = settings.dealer(context.partition_key), StockView(paths.state, context.partition_key)
        run = image_stage(dealer, settings, paths, pipeline.engine(), stock, context.run_id, context.log, trigger_of(context))
        return dg.MaterializeResult(metadata=outcomes.image_metadata(run), check_results=outcomes.image_checks(run, settings.images.min_good_images))

    feeds = [feed_asset(spec, partitions, vehicle_images, check_specs.get(spec.dealer_asset, [])) for spec in specs]

    @dg.asset(partitions_def=partitions, group_name="warehouse", kinds={"duckdb", "parquet"}, deps=[dealer_stock, *feeds])
    def warehouse_tables(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's rows of every analysts' table (stock, history, quarantine, files, listings, deliveries, runs) in data/warehouse.duckdb."""
        paths = pipeline.paths()
        published = stages.publish_stage(pipeline.settings(), pipeline.specs(), paths, pipeline.engine(), context.partition_key, context.run_id, trigger_of(context), context.log)
        return dg.MaterializeResult(metadata=outcomes.warehouse_metadata(published, paths))

    return [landed_exports, parsed_exports, validated_exports, dealer_stock, vehicle_images, *feeds, warehouse_tables]


def feed_asset(spec: MarketplaceSpec, partitions: dg.PartitionsDefinition, upstream, check_specs: list):
    """The dealer's feed for one marketplace, as its spec delivers it: its own files (sent only when their bytes changed),
    its rows of an account-wide file, or only the changed vehicles through the API (the nightly run reconciles first)."""
    kinds = {"api"} if spec.mode == "api" else {spec.formats[0]}
    description = spec.description or f"The dealer's {spec.name} feed."

    def materialise(context: dg.AssetExecutionContext, pipeline: PipelineResource, reconcile: bool | None) -> dg.MaterializeResult:
        settings, paths = pipeline.settings(), pipeline.paths()
        dealer = settings.dealer(context.partition_key)
        engine = pipeline.engine()
        seen = change_seen_at(engine, context.run_id)
        outcome = publish_feed(spec, dealer, StockView(paths.state, dealer.id), settings, paths, engine, context.run_id, trigger_of(context), seen, context.log, reconcile)
        return dg.MaterializeResult(metadata=outcomes.feed_metadata(spec, outcome), check_results=outcomes.feed_checks(spec, outcome))

    asset = dg.asset(name=spec.dealer_asset, partitions_def=partitions, group_name="feeds", kinds=kinds, deps=[upstream], check_specs=check_specs, description=description)
    if spec.mode == "api":

        @asset
        def feed(context: dg.AssetExecutionContext, config: ApiDeliveryConfig, pipeline: PipelineResource) -> dg.MaterializeResult:
            return materialise(context, pipeline, True if config.reconcile else None)

    else:

        @asset
        def feed(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
            return materialise(context, pipeline, None)

    return feed


def account_asset(spec: MarketplaceSpec):
    """The marketplace's one file for the whole account: every dealer's last good part, rewritten only when changed, then
    read back for each dealer (its drift_free check on the per-dealer asset)."""

    @dg.asset(
        name=spec.account_asset,
        group_name="feeds",
        kinds={spec.formats[0]},
        deps=[dg.AssetKey(spec.dealer_asset)],
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[checks.account_delivered_spec(spec)],
        description=f"The one {spec.name} file for the whole account: every dealer's last good rows, rewritten only when changed, then read back per dealer.",
    )
    def account(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        settings, engine = pipeline.settings(), pipeline.engine()
        assembled = account_file(spec, pipeline.specs(), settings, pipeline.paths(), engine, context.run_id, trigger_of(context), _tagged_time(context.run.tags.get(CHANGE_SEEN_TAG)))
        for dealer_id, drift in assembled.drift.items():
            context.log_event(outcomes.as_evaluation(outcomes.drift_free(drift), spec.dealer_asset, dealer_id))
        problems = finish_account_run(settings, spec, engine, context.run_id, context.log, assembled.drift)
        return dg.MaterializeResult(
            metadata=outcomes.account_file_metadata(spec, assembled) | outcomes.problems_metadata([p for found in problems.values() for p in found]),
            check_results=[outcomes.account_file_delivered(assembled)],
        )

    return account
