"""Jobs and schedules: the nightly sync of the whole group in one run, the hourly one a run per dealer, then the account-wide feeds."""

import dagster as dg

from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.orchestration.checks import ACCOUNT_DRIFT


def dealer_selection(specs: list[MarketplaceSpec]) -> dg.AssetSelection:
    """Every per-dealer asset: the stages, each marketplace's dealer asset, the warehouse rows; not the checks of an
    account-wide file's parts, which that file's run evaluates."""
    parts = [dg.AssetCheckKey(dg.AssetKey(spec.dealer_asset), ACCOUNT_DRIFT) for spec in specs if spec.account_file is not None]
    selection = dg.AssetSelection.groups("ingest", "quality", "stock", "warehouse") | dg.AssetSelection.assets(*[spec.dealer_asset for spec in specs])
    return selection - dg.AssetSelection.checks(*parts) if parts else selection


def build_jobs(partitions: dg.StaticPartitionsDefinition, specs: list[MarketplaceSpec]) -> tuple:
    dealer_sync = dg.define_asset_job(
        "dealer_sync",
        selection=dealer_selection(specs),
        partitions_def=partitions,
        executor_def=dg.in_process_executor,  # small per-dealer runs: no per-step process start-up; dealers run in parallel as separate runs
        description="Land, parse, validate and apply one dealer's new exports, render its feeds and publish its warehouse rows.",
    )
    account_feeds = dg.define_asset_job(
        "account_feeds",
        selection=dg.AssetSelection.assets(*[spec.account_asset for spec in specs if spec.account_file is not None]),
        executor_def=dg.in_process_executor,
        description="Assemble the account-wide feed files from every dealer's last good rows.",
    )
    return dealer_sync, account_feeds


def build_schedules(dealer_sync, account_feeds, group_sync, dealer_ids: list[str]) -> list[dg.ScheduleDefinition]:
    @dg.schedule(job=group_sync, cron_schedule="30 2 * * *", execution_timezone="Europe/London", name="nightly_sync")
    def nightly_sync(context: dg.ScheduleEvaluationContext):
        """Every dealer's nightly full export in one run: a step per dealer over the multiprocess executor's bounded pool."""
        stamp = context.scheduled_execution_time.strftime("%Y%m%d")
        return dg.RunRequest(run_key=f"nightly-{stamp}", tags={"dms_pipelines/trigger": "nightly"})

    @dg.schedule(job=dealer_sync, cron_schedule="5 7-21 * * *", execution_timezone="Europe/London", name="hourly_sync")
    def hourly_sync(context: dg.ScheduleEvaluationContext):
        """Hourly delta exports during trading hours."""
        stamp = context.scheduled_execution_time.strftime("%Y%m%d%H")
        for dealer_id in dealer_ids:
            yield dg.RunRequest(run_key=f"hourly-{dealer_id}-{stamp}", partition_key=dealer_id, tags={"dms_pipelines/trigger": "hourly"})

    account_feeds_schedule = dg.ScheduleDefinition(
        name="account_feeds_after_sync",
        job=account_feeds,
        cron_schedule="15 * * * *",
        execution_timezone="Europe/London",
        description="Re-assemble the account-wide files each hour (nothing is delivered when no dealer changed).",
    )
    return [nightly_sync, hourly_sync, account_feeds_schedule]
