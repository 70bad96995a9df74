"""Retries for transient faults only: capped exponential backoff with full jitter, honouring Retry-After.

This is the one retry layer for marketplace calls. The HTTP client (`stock_api.StockApiClient`) sends each request
exactly once per attempt and retries nowhere else (no urllib retry, no redirect following, no Dagster op retry around
delivery), so a failing call is never multiplied by two layers retrying at once.
"""

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 409, 410, 422})
# 501 Not Implemented and 505 HTTP Version Not Supported describe the request, not the server's health.
_PERMANENT_SERVER_STATUSES = frozenset({501, 505})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: `max_attempts` counts the first try; `deadline_seconds` bounds the whole call."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.deadline_seconds < 0:
            raise ValueError("base_delay, max_delay and deadline_seconds must not be negative")


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status may succeed when sent again: 408, 425, 429 and 5xx (but 501/505); every other 4xx is permanent."""
    return status in TRANSIENT_STATUSES or (500 <= status <= 599 and status not in _PERMANENT_SERVER_STATUSES)


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and min(max_delay, base_delay * 2**(attempt - 1)) for this attempt (1-based)."""
    exponent = max(0, attempt - 1)
    ceiling = policy.max_delay if exponent >= 64 else min(policy.max_delay, policy.base_delay * 2**exponent)
    return rng.uniform(0, ceiling)


def _clean_retry_after(value: float | None) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def call_with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    is_transient: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None] = lambda error: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """Run `operation`, retrying only errors `is_transient` accepts; re-raise the last error when retrying stops.

    Each wait is max(Retry-After, jittered backoff). Backoff is capped by `max_delay`, but a server's Retry-After is
    honoured even when longer, as long as the wait ends before `deadline_seconds` (counted from the first attempt);
    a wait that would pass the deadline is not started and the error is raised at once. `on_retry(attempt, error,
    wait)` is called before each wait, with the 1-based number of the attempt that failed.
    """
    rng = random.Random() if rng is None else rng
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Exception as error:
            if attempt >= policy.max_attempts or not is_transient(error):
                raise
            wait = max(_clean_retry_after(retry_after(error)), backoff_delay(attempt, policy, rng))
            if clock() - started + wait > policy.deadline_seconds:
                raise
            if on_retry is not None:
                on_retry(attempt, error, wait)
            sleep(wait)
