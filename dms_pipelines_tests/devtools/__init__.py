"""Tests of the developer tools: sample generator, simulator, demo, benchmarks, the installed package."""
