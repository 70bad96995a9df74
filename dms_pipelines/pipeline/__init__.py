"""The plain application layer: the stage order stated once (ingest, feeds, account files, publish, one dealer's run)."""
