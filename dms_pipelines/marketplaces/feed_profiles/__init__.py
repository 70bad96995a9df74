"""The feed profiles shipped with dms-pipelines: one YAML file per marketplace that takes a plain CSV or TSV feed (read by marketplaces.feed_profile)."""
