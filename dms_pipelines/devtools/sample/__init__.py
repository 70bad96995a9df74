"""Believable, reproducible sample DMS exports for demos, tests and benchmarks."""
