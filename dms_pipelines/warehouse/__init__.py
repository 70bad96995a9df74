"""The analysts' DuckDB warehouse: Parquet tables and a catalog of views."""
