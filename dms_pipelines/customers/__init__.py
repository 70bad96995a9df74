"""DMS customer records: the canonical customer, its contact normalisation and its checks."""
