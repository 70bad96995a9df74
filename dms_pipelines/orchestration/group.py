"""The group's nightly run as one Dagster run: a step per batch of dealers, spread over processes by Dagster's multiprocess executor."""

import multiprocessing
import re

import dagster as dg

from dms_pipelines.orchestration import outcomes
from dms_pipelines.orchestration.assets import TRIGGER_TAG
from dms_pipelines.orchestration.lead_assets import lead_events
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.pipeline.account import account_file
from dms_pipelines.pipeline.dealer import sync_dealer
from dms_pipelines.pipeline.leads import sync_leads
from dms_pipelines.pipeline.publish import finish_account_run, finish_dealer_run
from dms_pipelines.stock.store import read_price_reference

PROBLEMS_REPORTED = "group sync incomplete"  # starts the last step's failure: each problem has alerted as an incident already
NIGHTLY = "nightly"


def mapping_key(dealer_id: str) -> str:
    """A dynamic-output key for the dealer (Dagster allows letters, digits and underscores only)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", dealer_id)


class BatchConfig(dg.Config):
    dealers_per_step: int = 10  # a step costs a process start; batching keeps that cost small next to the work


def batches(dealer_ids: list[str], size: int) -> list[list[str]]:
    size = max(1, size)
    return [dealer_ids[start : start + size] for start in range(0, len(dealer_ids), size)]


@dg.op(out=dg.DynamicOut(list))
def dealers_to_sync(config: BatchConfig, pipeline: PipelineResource):
    """The configured dealers in batches: each batch becomes a step, and the executor runs as many steps at once as it may."""
    pipeline.engine()  # the operational tables exist before parallel steps first touch them
    used: set[str] = set()
    for number, batch in enumerate(batches([dealer.id for dealer in pipeline.settings().dealers], config.dealers_per_step), start=1):
        key = mapping_key(batch[0] if len(batch) == 1 else f"{batch[0]}__{batch[-1]}")
        key = key if key not in used else f"{key}_{number}"  # "a-b" and "a_b" make the same key
        used.add(key)
        yield dg.DynamicOutput(batch, mapping_key=key)


@dg.op
def sync_dealers(context: dg.OpExecutionContext, dealer_ids: list, pipeline: PipelineResource) -> list:
    """Every stage for each dealer of the batch (pipeline.dealer.sync_dealer, the stages the per-dealer assets run), logged
    as those assets' materialisations and check evaluations on the dealer's partition, from the same outcome functions.

    A dealer whose sync raises is reported (a problem of its own, alerted once) and returned as failed rather than raised,
    so that the other dealers and the account file still run; the last step fails the run if any dealer has a problem.
    """
    trigger = context.run.tags.get(TRIGGER_TAG, NIGHTLY)
    settings, paths, engine, specs = pipeline.settings(), pipeline.paths(), pipeline.engine(), pipeline.specs()
    # Read once for the batch: other steps update their dealers meanwhile anyway, and the rule it serves only warns.
    currencies = {settings.dealer(dealer_id).market.currency for dealer_id in dealer_ids}  # prices are compared within a currency
    references = {currency: read_price_reference(paths.state, [d.id for d in settings.dealers if d.market.currency == currency]) for currency in currencies}
    results = []
    for dealer_id in dealer_ids:
        try:
            run = sync_dealer(dealer_id, settings, specs, paths, engine, context.run_id, trigger, logger=context.log, price_reference=references[settings.dealer(dealer_id).market.currency])
        except Exception as error:  # reported with the dealer's name; the run fails at the end
            context.log.exception(f"{dealer_id}: sync failed: {type(error).__name__}: {error}")
            problems = finish_dealer_run(settings, specs, engine, dealer_id, context.run_id, context.log, crashed=f"{type(error).__name__}: {error}")
            lead_messages = _sync_leads(context, dealer_id, settings, paths, engine)  # its leads do not wait for its stock
            results.append({"dealer_id": dealer_id, "vehicles": 0, "problems": [p.message for p in problems] + lead_messages, "crashed": True})
            continue
        for asset, (metadata, check_results) in outcomes.dealer_events(run, settings, specs, paths).items():
            context.log_event(dg.AssetMaterialization(asset_key=asset, partition=dealer_id, metadata=metadata))
            for result in check_results:
                context.log_event(outcomes.as_evaluation(result, asset, dealer_id))
        lead_messages = _sync_leads(context, dealer_id, settings, paths, engine)
        results.append({"dealer_id": dealer_id, "vehicles": run.stock.status_counts()["vehicles"], "problems": [p.message for p in run.problems] + lead_messages, "crashed": False})
    return results


def _sync_leads(context: dg.OpExecutionContext, dealer_id: str, settings, paths, engine) -> list[str]:
    """The nightly run picks up whatever leads are left for the dealer (the sensor's runs take them at once); logged as the
    lead assets' materialisations on the dealer's partition. A crash is the dealer's problem, not the batch's."""
    try:
        leads = sync_leads(dealer_id, settings, paths, engine, context.run_id, context.log)
    except Exception as error:
        context.log.exception(f"{dealer_id}: lead sync failed: {type(error).__name__}: {error}")
        return [f"lead sync failed: {type(error).__name__}: {error}"]
    for asset, (metadata, check_results) in lead_events(leads).items():
        context.log_event(dg.AssetMaterialization(asset_key=asset, partition=dealer_id, metadata=metadata))
        for result in check_results:
            context.log_event(outcomes.as_evaluation(result, asset, dealer_id))
    return [p.message for p in leads.problems]


@dg.op(out={})
def account_files(context: dg.OpExecutionContext, batch_results: list, pipeline: PipelineResource):
    """Each account-wide file from every dealer's last good part, read back per dealer; then the run fails if any dealer
    has a problem (a crashed sync, a held export, a failed file, an undelivered feed, drift), naming each."""
    results = [result for batch in batch_results for result in batch]
    settings, engine, specs = pipeline.settings(), pipeline.engine(), pipeline.specs()
    problems = {r["dealer_id"]: list(r["problems"]) for r in results}
    for spec in [s for s in specs if s.account_file is not None]:
        assembled = account_file(spec, specs, settings, pipeline.paths(), engine, context.run_id, context.run.tags.get(TRIGGER_TAG, NIGHTLY))
        found = finish_account_run(settings, spec, engine, context.run_id, context.log, assembled.drift)
        # yielded, not logged: the events must be in the run before the step fails on the problems below
        metadata = outcomes.account_file_metadata(spec, assembled) | outcomes.problems_metadata([p for listed in found.values() for p in listed])
        yield dg.AssetMaterialization(asset_key=spec.account_asset, metadata=metadata)
        yield outcomes.as_evaluation(outcomes.account_file_delivered(assembled), spec.account_asset, None)
        yield outcomes.as_evaluation(outcomes.account_file_allowlisted(spec, settings, pipeline.paths()), spec.account_asset, None)
        for dealer_id, drift in assembled.drift.items():
            yield outcomes.as_evaluation(outcomes.drift_free(drift), spec.dealer_asset, dealer_id)
        for dealer_id, listed in found.items():
            problems.setdefault(dealer_id, []).extend(p.message for p in listed)
    troubled = {dealer_id: found for dealer_id, found in problems.items() if found}
    crashed = sorted(r["dealer_id"] for r in results if r["crashed"])
    context.log.info(f"{len(results)} dealers synced, {sum(r['vehicles'] for r in results)} vehicles, {len(crashed)} crashed, {len(troubled)} with problems")
    if troubled:
        raise dg.Failure(
            f"{PROBLEMS_REPORTED}: {len(troubled)} dealer(s) with problems: " + "; ".join(f"{d}: {' | '.join(found)}" for d, found in sorted(troubled.items())),
            metadata={"problems": dg.MetadataValue.json(troubled), "crashed": dg.MetadataValue.json(crashed)},
        )


@dg.configured(
    dg.multiprocess_executor,
    config_schema={
        "max_concurrent": dg.Field(int, default_value=multiprocessing.cpu_count(), description="processes at once"),
        "start_method": dg.Field(
            dg.Enum("StartMethod", [dg.EnumValue("forkserver"), dg.EnumValue("spawn")]),
            default_value="forkserver",
            description="forkserver: steps forked from a server that imported our code once (fast); spawn: each step a fresh interpreter",
        ),
    },
)
def group_executor(config: dict) -> dict:
    """Dagster's multiprocess executor, by default forking its processes from a server that has already imported our code.

    A forkserver keeps the environment it started with, so a process that runs group_sync for several data roots in
    turn (a test session) uses `spawn`.
    """
    start = {"forkserver": {"preload_modules": ["dms_pipelines.definitions"]}} if config["start_method"] == "forkserver" else {"spawn": {}}
    return {"max_concurrent": config["max_concurrent"], "start_method": start}


@dg.job(
    executor_def=group_executor,
    tags={TRIGGER_TAG: NIGHTLY},
    description="Every dealer's sync in one run, a step per batch of dealers over a bounded pool of processes, then the account-wide files.",
)
def group_sync():
    account_files(dealers_to_sync().map(sync_dealers).collect())
