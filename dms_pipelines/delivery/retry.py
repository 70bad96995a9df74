"""Retries for transient faults only: capped exponential backoff with full jitter, honouring Retry-After.

This is the one retry layer for marketplace calls; the HTTP client does not retry anywhere else, and Dagster's own
op retries are not used for delivery, so a failing call is never retried by two layers at once.
"""

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline_seconds: float = 120.0


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and the capped exponential delay for this attempt (1-based)."""
    return rng.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))


def call_with_retries(
    operation: Callable[[], T], policy: RetryPolicy, *, is_transient: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None] = lambda error: None, sleep=time.sleep, clock=time.monotonic,
    rng: random.Random | None = None, on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """Run `operation`; retry transient failures until attempts or the deadline run out, then re-raise the last error."""
    rng = rng or random.Random()
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Exception as error:
            if not is_transient(error) or attempt >= policy.max_attempts:
                raise
            wait = max(retry_after(error) or 0.0, backoff_delay(attempt, policy, rng))
            if clock() - started + wait > policy.deadline_seconds:
                raise
            if on_retry is not None:
                on_retry(attempt, error, wait)
            sleep(wait)
