"""Operational state (the file manifest, quarantine, file observations, the delivery ledger) in SQL through SQLAlchemy."""
