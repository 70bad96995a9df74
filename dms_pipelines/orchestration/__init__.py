"""The thin Dagster layer: assets, checks, jobs, schedules, sensors, resources."""
