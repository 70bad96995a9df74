"""Ordered map over a few threads, for vectorised work on slices of a big dealer's rows (Arrow and numpy release the GIL)."""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

SLICE_ROWS = 25_000  # rows per slice: big enough for the kernels; small enough that a file is written while the next slices render
THREADS_VARIABLE = "DMS_PIPELINES_THREADS"

_END = object()
In = TypeVar("In")
Out = TypeVar("Out")


def thread_count() -> int:
    """Threads per process for sliced work: DMS_PIPELINES_THREADS, or the number of CPUs."""
    configured = os.environ.get(THREADS_VARIABLE, "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"{THREADS_VARIABLE} must be a whole number of threads, not {configured!r}") from None
    return os.cpu_count() or 1


def threads_for(rows: int) -> int:
    """Threads worth starting for column-by-column work on `rows` rows: one below a slice's worth (a small dealer)."""
    return thread_count() if rows >= SLICE_ROWS else 1


def ordered_map(function: Callable[[In], Out], items: Iterable[In], threads: int | None = None) -> Iterator[Out]:
    """`map(function, items)` on `threads` threads, results in order, at most one more than `threads` computed ahead of the reader."""
    threads = threads or thread_count()
    iterator = iter(items)
    if threads == 1:
        yield from map(function, iterator)
        return
    first = next(iterator, _END)
    second = next(iterator, _END) if first is not _END else _END
    if second is _END:  # one slice at most: no thread to start
        if first is not _END:
            yield function(first)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="dms-slices") as pool:
        pending = deque([pool.submit(function, first), pool.submit(function, second)])
        for item in iterator:
            pending.append(pool.submit(function, item))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def slice_bounds(rows: int, slice_rows: int = SLICE_ROWS) -> list[tuple[int, int]]:
    return [(start, min(start + slice_rows, rows)) for start in range(0, rows, slice_rows)]


class Background:
    """`function(*args)` started on a thread of its own when `threaded` (else called when its result is asked for), for
    use in a `with` block; leaving the block waits for the thread."""

    def __init__(self, threaded: bool, function: Callable, *args):
        self._call = lambda: function(*args)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dms-background") if threaded else None
        self._future = self._pool.submit(self._call) if self._pool else None

    def result(self):
        return self._future.result() if self._future else self._call()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool:
            self._pool.shutdown()
