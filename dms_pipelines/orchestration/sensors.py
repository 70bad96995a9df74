"""Sensors: new exports start a run for their dealer at once; a dealer run refreshes the account-wide feeds; failures alert."""

import hashlib

import dagster as dg

from dms_pipelines.operations.manifest import change_seen_at
from dms_pipelines.operations.run_health import Problem, report_incidents
from dms_pipelines.orchestration.assets import CHANGE_SEEN_TAG, TRIGGER_TAG
from dms_pipelines.orchestration.group import PROBLEMS_REPORTED
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.pipeline.ingest import files_waiting, profile_for
from dms_pipelines.sources.base import shown


def build_sensors(dealer_sync, account_feeds) -> list:
    @dg.sensor(job=dealer_sync, minimum_interval_seconds=5, name="new_exports", default_status=dg.DefaultSensorStatus.RUNNING)
    def new_exports(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
        """Each dealer with a ready export not yet landed gets a run now: a sold car in an hourly delta does not wait for the night."""
        settings = pipeline.settings()
        paths = pipeline.paths()
        engine = pipeline.engine()
        requests = []
        for dealer in settings.dealers:
            try:
                waiting = files_waiting(dealer, paths, engine)
            except Exception as error:  # one dealer's unreachable source must not stop the others' runs
                context.log.error(f"{dealer.id}: cannot list the source: {error}")
                continue
            if not waiting:
                continue
            fingerprint = hashlib.sha256("\n".join(sorted(f.key for f in waiting)).encode()).hexdigest()[:16]
            only_deltas = all(profile_for(dealer, paths).export_kind(f.name) == "delta" for f in waiting)
            requests.append(
                dg.RunRequest(
                    run_key=f"{dealer.id}-{fingerprint}",
                    partition_key=dealer.id,
                    tags={TRIGGER_TAG: "delta_sensor" if only_deltas else "file_sensor", "dms_pipelines/files": ",".join(shown(f.name) for f in waiting)[:200]},
                )
            )
        if not requests:
            return dg.SkipReason("no new exports")
        return requests

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[dealer_sync],
        request_job=account_feeds,
        name="account_feeds_after_dealer_run",
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def account_feeds_after_dealer_run(context: dg.RunStatusSensorContext, pipeline: PipelineResource):
        """A dealer's finished run re-assembles the account-wide files, so a sold car leaves them within seconds too."""
        trigger = context.dagster_run.tags.get(TRIGGER_TAG, "manual")
        tags = {TRIGGER_TAG: trigger}
        seen = change_seen_at(pipeline.engine(), context.dagster_run.run_id)
        if seen is not None:
            tags[CHANGE_SEEN_TAG] = seen.isoformat()
        return dg.RunRequest(run_key=f"after-{context.dagster_run.run_id}", tags=tags)

    @dg.run_failure_sensor(name="alert_on_run_failure", minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
    def alert_on_run_failure(context: dg.RunFailureSensorContext, pipeline: PipelineResource):
        """A failed run is an incident of its dealer ("*" for the group and account runs): alerted once through the
        configured channels (always the log), resolved (and said so) by the dealer's next run that completes."""
        run = context.dagster_run
        failures = [event.event_specific_data.error.message for event in context.get_step_failure_events() if event.event_specific_data.error]
        if failures and all(PROBLEMS_REPORTED in message for message in failures):
            return dg.SkipReason(f"run {run.run_id[:8]} failed on problems each alerted once as an incident")
        dealer_id = run.tags.get("dagster/partition") or "*"
        detail = failures[0].strip().splitlines()[0] if failures else (context.failure_event.message or "")
        problem = Problem(dealer_id, "run_failed", run.job_name, f"run {run.run_id[:8]} of {run.job_name} failed: {detail}")
        report_incidents(pipeline.settings(), pipeline.engine(), dealer_id, [problem], lambda key: False, run.run_id, context.log)

    return [new_exports, account_feeds_after_dealer_run, alert_on_run_failure]
