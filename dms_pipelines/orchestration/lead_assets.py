"""Dagster lead assets, one dealer per partition (customers, landed, validated, linked, identified, delivered, warehouse), their checks, the lead job and the sensor that starts it."""

import hashlib
import warnings

import dagster as dg

from dms_pipelines.orchestration.assets import TRIGGER_TAG
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.pipeline import customers as customer_stages
from dms_pipelines.pipeline import identity as identity_stages
from dms_pipelines.pipeline import leads as stages

GROUP = "leads"
LEAD_JOB = "lead_sync"


def lead_counts(value) -> dict:
    """A stage's figures as metadata: numbers and file names only (never a lead's contents)."""
    metadata = {}
    for name, item in vars(value).items():
        if isinstance(item, int):
            metadata[name] = item
        elif isinstance(item, dict):
            metadata[name] = dg.MetadataValue.json(item)
        elif isinstance(item, list):
            metadata[name] = len(item)
            if item:
                metadata[f"{name}_list"] = dg.MetadataValue.json([str(entry) for entry in item[:50]])
    return metadata


def files_read_check(reading) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="lead_files_read", passed=not reading.failed, severity=dg.AssetCheckSeverity.ERROR, metadata={"unreadable": len(reading.failed), "files": dg.MetadataValue.json(reading.failed[:20])}
    )


def customer_files_check(sync) -> dg.AssetCheckResult:
    failed = sync.reading.failed + sync.landing.failed if sync is not None else []
    return dg.AssetCheckResult(
        check_name="customer_files_read", passed=not failed, severity=dg.AssetCheckSeverity.ERROR, metadata={"unreadable": len(failed), "files": dg.MetadataValue.json(failed[:20])}
    )


def customer_counts(sync) -> dict:
    if sync is None:
        return {"configured": False}
    return {f"landing_{k}": v for k, v in lead_counts(sync.landing).items()} | lead_counts(sync.reading)


def delivered_check(owed: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name="every_lead_delivered_or_quarantined", passed=not owed, severity=dg.AssetCheckSeverity.ERROR, metadata={"undelivered": dg.MetadataValue.json(owed)})


def owed_leads(problems) -> list[str]:
    """The problems that are leads not delivered (not unreadable files, not a leak)."""
    return [p.message for p in problems if p.kind in ("lead_no_crm", "lead_retrying", "lead_dead_letter")]


def warehouse_metadata(rows: dict[str, int], problems) -> dict:
    return {f"{table}_rows": count for table, count in rows.items()} | {"problems": len(problems), "problem_list": dg.MetadataValue.json([p.message for p in problems][:50])}


def lead_events(run) -> dict[str, tuple[dict, list]]:
    """A whole lead run (pipeline.leads.sync_leads) as the lead assets log it: per asset, its metadata and check results,
    for the group's nightly run to log on the dealer's partition."""
    return {
        "dms_customer_records": (customer_counts(run.customers), [customer_files_check(run.customers)]),
        "landed_leads": (lead_counts(run.landing), []),
        "validated_leads": (lead_counts(run.reading), [files_read_check(run.reading)]),
        "linked_leads": (lead_counts(run.linking), []),
        "identified_leads": (lead_counts(run.identity), []),
        "delivered_leads": (lead_counts(run.delivery), [delivered_check(owed_leads(run.problems))]),
        "lead_warehouse": (warehouse_metadata(run.warehouse_rows, run.problems), [leaks_check(run.leaks)]),
    }


def leaks_check(found: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="no_personal_data_outside_crm",
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"files_with_personal_data": len(found), "files": dg.MetadataValue.json(found[:20])},
    )


def _check(name: str, asset: str, description: str, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    """A check on the dealer's partition (a Dagster preview feature: its warning is silenced here only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, description=description, partitions_def=partitions)


def lead_assets(partitions: dg.PartitionsDefinition) -> list:
    """The per-dealer lead assets, in the order the stages run (pipeline.leads.sync_leads runs the same stages at once)."""

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"pandera"},
        check_specs=[_check("customer_files_read", "dms_customer_records", "Every DMS customer export landed was read (none unreadable).", partitions)],
    )
    def dms_customer_records(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's DMS customer exports landed in customer_landing/<dealer>/ and read through its customer mapping
        profile: each customer checked (Pandera) and kept by customer number, bad rows quarantined with reasons."""
        settings = pipeline.settings()
        dealer = settings.dealer(context.partition_key)
        sync = customer_stages.sync_customers(dealer.id, settings, pipeline.paths(), pipeline.engine(), context.run_id, context.log) if dealer.customers is not None else None
        return dg.MaterializeResult(metadata=customer_counts(sync), check_results=[customer_files_check(sync)])

    @dg.asset(partitions_def=partitions, group_name=GROUP, kinds={"file"})
    def landed_leads(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """New lead files in lead_landing/<dealer>/, each with a sha256 and a manifest row: the lead inbox's Meta CSV exports
        and ADF e-mails, the webhook payloads the receiver wrote, and the deal behind each Auto Trader notification."""
        settings = pipeline.settings()
        landing = stages.land_leads(settings.dealer(context.partition_key), settings, pipeline.paths(), pipeline.engine(), context.run_id, context.log)
        return dg.MaterializeResult(metadata=lead_counts(landing))

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"pandera"},
        deps=[landed_leads],
        check_specs=[_check("lead_files_read", "validated_leads", "Every lead file landed was read (none unreadable).", partitions)],
    )
    def validated_leads(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Every landed lead file parsed into canonical leads and checked (Pandera): each stored once by its source id (a
        changed one as a new revision, a repeat counted), bad ones quarantined with reasons. Parsing and checking are one
        asset: passing parsed leads between two would keep another copy of personal data in the IO manager's files."""
        settings = pipeline.settings()
        reading = stages.read_leads(settings.dealer(context.partition_key), settings, pipeline.paths(), pipeline.engine(), context.run_id, context.log)
        check = dg.AssetCheckResult(
            check_name="lead_files_read",
            passed=not reading.failed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"unreadable": len(reading.failed), "files": dg.MetadataValue.json(reading.failed[:20])},
        )
        return dg.MaterializeResult(metadata=lead_counts(reading), check_results=[check])

    @dg.asset(partitions_def=partitions, group_name=GROUP, kinds={"python"}, deps=[validated_leads])
    def linked_leads(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Each lead to deliver tied to the dealer's car (advert id, stock id, VIN or registration), with similar available
        cars of the group when that car is sold or reserved."""
        settings = pipeline.settings()
        linked = stages.link_leads(settings.dealer(context.partition_key), settings, pipeline.paths(), pipeline.engine())
        return dg.MaterializeResult(metadata=lead_counts(linked))

    @dg.asset(partitions_def=partitions, group_name=GROUP, kinds={"duckdb"}, deps=[linked_leads, dms_customer_records])
    def identified_leads(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Each new or changed lead and DMS customer tied to one customer: e-mail or phone exact, then the pinned Splink
        model; between the thresholds, the review queue; the operator's decisions applied; consent statements kept."""
        settings = pipeline.settings()
        run = identity_stages.identify(settings.dealer(context.partition_key), settings, pipeline.paths(), pipeline.engine(), context.run_id, context.log)
        return dg.MaterializeResult(metadata=lead_counts(run))

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"xml"},
        deps=[identified_leads],
        check_specs=[_check("every_lead_delivered_or_quarantined", "delivered_leads", "No lead is left undelivered (retrying, dead-lettered, or without a CRM).", partitions)],
    )
    def delivered_leads(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Each lead's current revision in the dealer's CRM as ADF 1.0 XML (checked against the DTD), by file drop and/or
        e-mail, with what each destination acknowledged in the lead ledger."""
        settings, engine = pipeline.settings(), pipeline.engine()
        delivery = stages.deliver_leads(settings.dealer(context.partition_key), settings, pipeline.paths(), engine, context.run_id, context.log)
        owed = owed_leads(stages.lead_store.lead_problems(engine, context.partition_key))
        return dg.MaterializeResult(metadata=lead_counts(delivery), check_results=[delivered_check(owed)])

    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"duckdb", "parquet"},
        deps=[delivered_leads],
        check_specs=[_check("no_personal_data_outside_crm", "lead_warehouse", "No lead's e-mail or phone in a marketplace feed or the warehouse.", partitions)],
    )
    def lead_warehouse(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """The dealer's lead tables for analysts (contact details masked); then the dealer's lead problems, each an incident
        alerted once."""
        settings, paths, engine = pipeline.settings(), pipeline.paths(), pipeline.engine()
        rows = stages.publish_lead_warehouse(paths, engine, context.partition_key)
        found = stages.personal_data_leaks(settings, paths, engine, context.partition_key)
        problems = stages.finish_lead_run(settings, engine, context.partition_key, context.run_id, context.log, found)
        return dg.MaterializeResult(metadata=warehouse_metadata(rows, problems), check_results=[leaks_check(found)])

    return [dms_customer_records, landed_leads, validated_leads, linked_leads, identified_leads, delivered_leads, lead_warehouse]


def lead_job(partitions: dg.PartitionsDefinition):
    return dg.define_asset_job(
        LEAD_JOB,
        selection=dg.AssetSelection.groups(GROUP),
        partitions_def=partitions,
        executor_def=dg.in_process_executor,  # a lead should reach the CRM within seconds: no per-step process start-up
        description="Land, read, check, link and deliver one dealer's new leads to its CRM as ADF, then its lead warehouse rows.",
    )


def lead_sensor(job):
    @dg.sensor(job=job, minimum_interval_seconds=1, name="new_leads", default_status=dg.DefaultSensorStatus.RUNNING)
    def new_leads(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
        """Each dealer with a lead waiting (a webhook payload landed, a file in its lead inbox, a delivery due again) gets a lead run now."""
        settings, paths, engine = pipeline.settings(), pipeline.paths(), pipeline.engine()
        requests = []
        for dealer in settings.dealers:
            try:
                waiting = stages.leads_waiting(dealer, paths, engine)
            except Exception as error:  # one dealer's unreachable lead inbox must not stop the others' leads
                context.log.error(f"{dealer.id}: cannot list the lead inbox: {error}")
                continue
            if waiting:
                fingerprint = hashlib.sha256("\n".join(sorted(waiting)).encode()).hexdigest()[:16]
                requests.append(dg.RunRequest(run_key=f"leads-{dealer.id}-{fingerprint}", partition_key=dealer.id, tags={TRIGGER_TAG: "lead_sensor"}))
        return requests or dg.SkipReason("no new leads")

    return new_leads
