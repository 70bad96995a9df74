"""dms-pipelines: DMS stock exports to marketplace feeds, orchestrated with Dagster."""
