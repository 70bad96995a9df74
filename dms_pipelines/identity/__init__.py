"""Identity resolution: one customer across the DMS, the CRM and the web, as clusters of records (exact tier, then a pinned Splink model)."""
