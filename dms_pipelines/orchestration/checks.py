"""The asset checks declared per asset and dealer partition (files, rows, held exports, deliveries, drift), and the account files' own."""

import warnings

import dagster as dg

from dms_pipelines.delivery.drift import Drift
from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.operations.drift_state import last_drift_items
from dms_pipelines.orchestration.outcomes import account_file_allowlisted, allowlisted_name, drift_free
from dms_pipelines.orchestration.resources import PipelineResource

# Checks on per-dealer assets are computed inside the asset (one partition at a time) and declared here, each with the
# dealers' partitions so that every dealer has its own result: one dealer passing never hides another failing.
STAGE_CHECKS = {
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
    "vehicle_images": {
        "images_judged": "The image stage ran to the end (when it fails, the feeds go out on the last verdict and this check fails).",
        "image_hosts_reachable": "Every image host answered (one that did not is named once; its images are judged as last seen).",
        "image_standard": "Every listed vehicle has at least images.min_good_images good images (warns: the others are held back with the reason).",
    },
}
FEED_CHECKS = {
    "delivered": "Every file or change was delivered and acknowledged: nothing failed, nothing refused (dead-lettered).",
    "drift_free": "The marketplace shows exactly what the stock renders for it (read back after delivery); a sold car still offered is an error.",
}
BLOCKING = {"rows_conserved"}
ACCOUNT_DRIFT = "drift_free"  # on an account-wide file's per-dealer asset, evaluated by the account file's run for each dealer


def dealer_check_descriptions(specs: list[MarketplaceSpec]) -> dict[str, dict[str, str]]:
    """Per per-dealer asset, its checks evaluated in the asset (a dealer's own feed: delivered and drift free)."""
    feeds = {spec.dealer_asset: FEED_CHECKS for spec in specs if spec.account_file is None}
    return STAGE_CHECKS | feeds


def dealer_check_specs(partitions: dg.PartitionsDefinition, specs: list[MarketplaceSpec]) -> dict[str, list[dg.AssetCheckSpec]]:
    """Per per-dealer asset, its checks, partitioned by dealer (a Dagster preview feature: its warning is silenced here only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return {
            asset: [dg.AssetCheckSpec(name, asset=asset, description=text, blocking=name in BLOCKING, partitions_def=partitions) for name, text in checks.items()]
            for asset, checks in dealer_check_descriptions(specs).items()
        }


def account_delivered_spec(spec: MarketplaceSpec) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("delivered", asset=spec.account_asset, description=f"The account-wide {spec.name} file was delivered (or its bytes were there already).")


def account_checks(spec: MarketplaceSpec, partitions: dg.PartitionsDefinition) -> list:
    """An account-wide file's own checks: its columns are the allowlist, and each dealer's part as last read back."""
    return [allowlisted_check(spec), account_drift_check(spec, partitions)]


def allowlisted_check(spec: MarketplaceSpec):
    """The account file has exactly the marketplace's allowlisted columns: nothing private can be in it."""

    def allowlisted(pipeline: PipelineResource) -> dg.AssetCheckResult:
        return account_file_allowlisted(spec, pipeline.settings(), pipeline.paths())

    return dg.asset_check(
        asset=spec.account_asset,
        name=allowlisted_name(spec),
        description=f"The {spec.name} file has exactly the allowlisted columns: nothing private can be in it.",
    )(allowlisted)


def account_drift_check(spec: MarketplaceSpec, partitions: dg.PartitionsDefinition):
    """The dealer's part's drift_free, as last recorded: the account file's run evaluates it for every dealer after it
    delivers (and logs the result on each dealer's partition); run by hand, it shows the last recorded check."""

    def account_drift(context: dg.AssetCheckExecutionContext, pipeline: PipelineResource) -> dg.AssetCheckResult:
        checked, items, error = last_drift_items(pipeline.engine(), context.partition_key, spec.name)
        drift = Drift(context.partition_key, spec.name, checked=checked, error=error)
        for stock_id, kind in items:
            getattr(drift, kind).append(stock_id)
        return drift_free(drift)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.asset_check(
            asset=spec.dealer_asset,
            name=ACCOUNT_DRIFT,
            partitions_def=partitions,
            description=(f"The dealer's rows in the account-wide {spec.name} file at its destination are exactly its rows as built; checked by the account file's run."),
        )(account_drift)
