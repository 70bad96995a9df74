"""Counters the hostile-input and fault tests add to; printed at the end of the test run."""

from collections import Counter

STATS: Counter = Counter()
