"""The one retry layer: only transient errors retried, full-jitter backoff within bounds, Retry-After honoured, deadline kept."""

import math
import random

import pytest

from dms_pipelines.delivery.retry import (
    PERMANENT_STATUSES,
    TRANSIENT_STATUSES,
    RetryPolicy,
    backoff_delay,
    call_with_retries,
    is_transient_status,
)


class Transient(Exception):
    def __init__(self, retry_after: float | None = None):
        super().__init__("transient")
        self.retry_after = retry_after


class Permanent(Exception):
    pass


class FakeTime:
    """A clock that only moves when the code sleeps (or an attempt says it took time)."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(operation, policy: RetryPolicy, time: FakeTime, **kwargs):
    return call_with_retries(
        operation,
        policy,
        is_transient=lambda e: isinstance(e, Transient),
        retry_after=lambda e: getattr(e, "retry_after", None),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(1),
        **kwargs,
    )


def failing(errors: list[Exception], result="done"):
    """An operation raising the given errors in turn, then returning `result`; `attempts` counts its calls."""
    queue = list(errors)

    def operation():
        operation.attempts += 1
        if queue:
            raise queue.pop(0)
        return result

    operation.attempts = 0
    return operation


def test_backoff_delay_stays_within_the_capped_exponential_bound():
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(42)
    for attempt in range(1, 15):
        for _ in range(50):
            delay = backoff_delay(attempt, policy, rng)
            assert 0 <= delay <= min(8.0, 0.5 * 2 ** (attempt - 1))


def test_backoff_delay_is_reproducible_with_a_seed_and_actually_jitters():
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0)
    first = [backoff_delay(a, policy, random.Random(7)) for a in range(1, 8)]
    again = [backoff_delay(a, policy, random.Random(7)) for a in range(1, 8)]
    assert first == again
    spread = {round(backoff_delay(5, policy, random.Random(seed)), 6) for seed in range(20)}
    assert len(spread) > 10  # full jitter spreads clients out instead of synchronising them


def test_backoff_delay_never_overflows_on_a_huge_attempt_number():
    delay = backoff_delay(10_000, RetryPolicy(base_delay=0.5, max_delay=30.0), random.Random(3))
    assert math.isfinite(delay) and 0 <= delay <= 30.0


def test_success_needs_no_retry_and_no_sleep():
    time = FakeTime()
    operation = failing([])
    assert run(operation, RetryPolicy(), time) == "done"
    assert operation.attempts == 1 and time.sleeps == []


def test_transient_errors_are_retried_until_success_and_reported():
    time = FakeTime()
    operation = failing([Transient(), Transient()])
    retries = []
    assert run(operation, RetryPolicy(base_delay=0.01, max_delay=0.05), time, on_retry=lambda *args: retries.append(args)) == "done"
    assert operation.attempts == 3 and len(time.sleeps) == 2
    assert [(attempt, type(error), wait) for attempt, error, wait in retries] == [(1, Transient, time.sleeps[0]), (2, Transient, time.sleeps[1])]
    assert all(0 <= wait <= 0.05 for wait in time.sleeps)


def test_a_permanent_error_is_raised_at_once():
    time = FakeTime()
    operation = failing([Permanent("bad request"), Transient()])
    with pytest.raises(Permanent):
        run(operation, RetryPolicy(), time)
    assert operation.attempts == 1 and time.sleeps == []


def test_exhausted_attempts_reraise_the_last_error():
    time = FakeTime()
    errors = [Transient(), Transient(), Transient(), Transient()]
    operation = failing(errors)
    with pytest.raises(Transient) as caught:
        run(operation, RetryPolicy(max_attempts=3, base_delay=0.01), time)
    assert caught.value is errors[2] and operation.attempts == 3 and len(time.sleeps) == 2


def test_retry_after_is_honoured_even_beyond_max_delay():
    time = FakeTime()
    operation = failing([Transient(retry_after=5.0)])
    assert run(operation, RetryPolicy(base_delay=0.01, max_delay=1.0, deadline_seconds=60), time) == "done"
    assert time.sleeps == [5.0]


def test_jittered_backoff_wins_over_a_shorter_retry_after():
    time = FakeTime()
    policy = RetryPolicy(base_delay=4.0, max_delay=4.0)
    expected = backoff_delay(1, policy, random.Random(1))
    run(failing([Transient(retry_after=0.0)]), policy, time)
    assert time.sleeps == [max(0.0, expected)]


@pytest.mark.parametrize("nonsense", [-3.0, float("nan"), float("inf")])
def test_a_nonsensical_retry_after_is_ignored(nonsense):
    time = FakeTime()
    run(failing([Transient(retry_after=nonsense)]), RetryPolicy(base_delay=0.01, max_delay=0.05), time)
    assert len(time.sleeps) == 1 and 0 <= time.sleeps[0] <= 0.05


def test_a_retry_after_past_the_deadline_stops_without_waiting():
    time = FakeTime()
    operation = failing([Transient(retry_after=50.0)])
    with pytest.raises(Transient):
        run(operation, RetryPolicy(max_attempts=10, deadline_seconds=10), time)
    assert operation.attempts == 1 and time.sleeps == []


def test_the_deadline_counts_the_time_attempts_take():
    time = FakeTime()

    def slow_failure():
        slow_failure.attempts += 1
        time.now += 4.0  # each attempt burns four seconds (a timeout, say)
        raise Transient()

    slow_failure.attempts = 0
    with pytest.raises(Transient):
        run(slow_failure, RetryPolicy(max_attempts=100, base_delay=0.01, max_delay=0.01, deadline_seconds=10), time)
    assert slow_failure.attempts == 3 and time.now <= 10 + 4.0


def test_policy_rejects_impossible_values():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


def test_status_classes():
    assert TRANSIENT_STATUSES == {408, 425, 429, 500, 502, 503, 504}
    assert all(is_transient_status(s) for s in TRANSIENT_STATUSES | {507, 599})
    assert not any(is_transient_status(s) for s in PERMANENT_STATUSES | {402, 405, 413, 418, 501, 505})
