"""Feed files as a head, one text per vehicle in sort order and a tail: built whole, or spliced from the last file's unchanged bytes."""

import mmap
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.kernels.csv_bytes import joined_lines, row_slice
from dms_pipelines.kernels.parallel import SLICE_ROWS, ordered_map, slice_bounds
from dms_pipelines.marketplaces.base import KEY, sort_order
from dms_pipelines.marketplaces.layout import RowFile

KEY_SEPARATOR = "\x00"  # below every other character, so joined keys sort as the tuples they join


@dataclass
class RowIndex:
    """Where each row of a built file lies: stock number, sort key, first byte, length and width, in file order."""

    head_length: int
    width: int
    table: pa.Table = field(repr=False)

    def __len__(self) -> int:
        return self.table.num_rows


def _index_table(stock_ids: pa.Array, keys: pa.Array, lengths: np.ndarray, widths: np.ndarray, head_length: int, separator: int) -> pa.Table:
    starts = np.empty(len(lengths), dtype=np.int64)
    if len(lengths):
        starts[0] = head_length
        np.cumsum(lengths[:-1] + separator, out=starts[1:])
        starts[1:] += head_length
    return pa.table({"stock_id": stock_ids, "key": keys, "start": starts, "length": lengths.astype(np.int64), "width": widths})


def _keys(row_file: RowFile, items: pd.DataFrame) -> pa.Array | None:
    """The sort key of each item as one string, or None when a key is missing or not text (no index is kept then)."""
    parts = []
    for name in (*row_file.sort_keys, KEY):
        values = items[name]
        if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
            return None
        parts.append(_text(values))
    joined = pc.binary_join_element_wise(*parts, pa.scalar(KEY_SEPARATOR, pa.large_string())) if len(items) else pa.array([], pa.large_string())
    return None if joined.null_count else joined


def _text(values: pd.Series) -> pa.Array:
    array = pa.array(values.astype("string").array, pa.large_string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _increasing(keys: pa.Array) -> bool:
    return len(keys) < 2 or pc.all(pc.less(keys[:-1], keys[1:])).as_py()


class Built:
    """A feed file's bytes as pieces in order; once every piece has been taken, `index` tells where each row lies (None if unusable)."""

    def __init__(self, pieces: Iterator, finish: Callable[[], RowIndex | None]):
        self._pieces, self._finish = pieces, finish
        self.index: RowIndex | None = None

    def __iter__(self):
        yield from self._pieces
        self.index = self._finish()


def whole(row_file: RowFile, items: pd.DataFrame, part_rows: int = SLICE_ROWS) -> Built:
    """The whole file from every listed item, a slice of rows at a time on parallel threads."""
    widths = row_file.widths(items)
    width = row_file.file_width(widths)
    names = row_file.columns(items, width)
    head = row_file.head(len(items), names)
    order = sort_order(items, list(row_file.sort_keys))
    columns = {name: items[name] for name in names}
    bounds = list(slice_bounds(len(items), part_rows))
    lengths: list[np.ndarray] = []

    def pieces() -> Iterator:
        yield head
        parts = (row_slice(columns, order, start, stop) for start, stop in bounds)
        for number, texts in enumerate(ordered_map(row_file.texts, parts)):
            lengths.append(pc.binary_length(texts).to_numpy(zero_copy_only=False))
            if len(texts):
                last = number == len(bounds) - 1
                yield from joined_lines(texts, row_file.separator.decode("utf-8"), (row_file.end if last else row_file.separator).decode("utf-8"))
        yield row_file.tail

    def finish() -> RowIndex | None:
        keys = _keys(row_file, items)
        if keys is None:
            return None
        in_order = keys if order is None else keys.take(pa.array(order))
        if not _increasing(in_order):
            return None
        ids = _text(items[KEY])
        ids = ids if order is None else ids.take(pa.array(order))
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        in_order_widths = widths if order is None else widths[order]
        return RowIndex(len(head), width, _index_table(ids, in_order, all_lengths, in_order_widths, len(head), len(row_file.separator)))

    return Built(pieces(), finish)


def spliced(row_file: RowFile, previous: Path, index: RowIndex, changed_ids: set[str], changed_items: pd.DataFrame) -> Built | None:
    """The file rebuilt from `previous` (built with `index`): the rows of `changed_ids` dropped, `changed_items` (those of them
    still listed) put in their places, every other row copied as it was. None when the change reaches the head or every row
    (the file's width changed), or a key is unusable: then only a whole build will do."""
    table = index.table
    keep = pc.invert(pc.is_in(table["stock_id"], pa.array(sorted(changed_ids), pa.large_string()))).to_numpy(zero_copy_only=False)
    kept = np.flatnonzero(keep)
    new_keys = _keys(row_file, changed_items)
    if new_keys is None:
        return None
    new_order = pc.sort_indices(new_keys).to_numpy()
    new_keys = new_keys.take(pa.array(new_order))
    if not _increasing(new_keys):
        return None
    new_widths = row_file.widths(changed_items)[new_order]
    old_widths = table["width"].to_numpy()
    if row_file.file_width(np.concatenate([old_widths[kept], new_widths])) != index.width:
        return None
    names = row_file.columns(changed_items, index.width)
    ordered = {name: changed_items[name].take(new_order) for name in names}
    new_texts = row_file.texts(ordered) if len(changed_items) else pa.array([], pa.large_string())
    new_lengths = pc.binary_length(new_texts).to_numpy(zero_copy_only=False).astype(np.int64)
    kept_keys = table["key"].combine_chunks().take(pa.array(kept))
    places = np.searchsorted(kept_keys.to_numpy(zero_copy_only=False), new_keys.to_numpy(zero_copy_only=False)) if len(kept) else np.zeros(len(new_keys), dtype=np.int64)

    rows = len(kept) + len(new_keys)
    head = row_file.head(rows, names)
    starts, lengths = table["start"].to_numpy(), table["length"].to_numpy()
    separator, text_list = row_file.separator, new_texts.cast(pa.large_string())

    def pieces() -> Iterator:
        yield head
        with previous.open("rb") as handle, _mapped(handle) as old:
            written = 0
            for run_start, run_stop, insert_before in _runs(kept, places):
                for position in insert_before:
                    yield (separator if written else b"") + text_list[int(position)].as_buffer().to_pybytes()
                    written += 1
                if run_stop > run_start:
                    first, last = kept[run_start], kept[run_stop - 1]
                    if written:
                        yield separator
                    yield from _chunks(old, int(starts[first]), int(starts[last] + lengths[last]))
                    written += run_stop - run_start
            if written:
                yield row_file.end
        yield row_file.tail

    def finish() -> RowIndex:
        combined_ids = pa.concat_arrays([table["stock_id"].combine_chunks().take(pa.array(kept)), _text(changed_items[KEY]).take(pa.array(new_order))])
        combined_keys = pa.concat_arrays([kept_keys.cast(pa.large_string()), new_keys.cast(pa.large_string())])
        combined_lengths = np.concatenate([lengths[kept], new_lengths])
        combined_widths = np.concatenate([old_widths[kept], new_widths])
        order = np.argsort(np.concatenate([np.arange(len(kept)) + np.searchsorted(places, np.arange(len(kept)), side="right"), places + np.arange(len(places))]), kind="stable")
        return RowIndex(
            len(head),
            index.width,
            _index_table(
                combined_ids.take(pa.array(order)),
                combined_keys.take(pa.array(order)),
                combined_lengths[order],
                combined_widths[order],
                len(head),
                len(separator),
            ),
        )

    return Built(pieces(), finish)


def merged(head: bytes, parts: list[tuple[BinaryIO, RowIndex | None]]) -> Iterator:
    """One file from the headless row files of one layout (each row followed by its line end), its rows in key order.

    The parts go one after another, ordered by their first key, when their keys do not interleave (the usual case: each
    dealer has its own store code); otherwise the rows are merged by key, ties in the order of `parts`. A part without
    an index cannot be placed by key and is added after the others, in the order given.
    """
    yield head
    with ExitStack() as maps:
        opened: dict[int, mmap.mmap | None] = {}
        for part, start, stop in _merge_plan(parts):
            if part not in opened:
                opened[part] = maps.enter_context(_mapped(parts[part][0]))
            yield from _chunks(opened[part], start, stop)


def _merge_plan(parts: list[tuple[BinaryIO, RowIndex | None]]) -> list[tuple[int, int, int]]:
    """(part number, first byte, end) ranges that, copied in order, give the merged rows."""
    sizes = [os.fstat(handle.fileno()).st_size for handle, _ in parts]
    indexed = [n for n, (_, index) in enumerate(parts) if index is not None and len(index) and sizes[n]]
    unindexed = [(n, 0, sizes[n]) for n, (_, index) in enumerate(parts) if index is None and sizes[n]]
    tables = {n: parts[n][1].table for n in indexed}
    ordered = sorted(indexed, key=lambda n: tables[n]["key"][0].as_py())
    bounds = [(tables[n]["key"][0].as_py(), tables[n]["key"][-1].as_py()) for n in ordered]
    if all(previous[1] < following[0] for previous, following in zip(bounds, bounds[1:])):
        return [(n, 0, sizes[n]) for n in ordered] + unindexed
    all_keys = pa.concat_arrays([tables[n]["key"].combine_chunks().cast(pa.large_string()) for n in indexed])
    part_of = np.concatenate([np.full(tables[n].num_rows, n) for n in indexed])
    row_of = np.concatenate([np.arange(tables[n].num_rows) for n in indexed])
    order = pc.sort_indices(all_keys).to_numpy()
    part_of, row_of = part_of[order], row_of[order]
    breaks = np.flatnonzero((np.diff(part_of) != 0) | (np.diff(row_of) != 1)) + 1
    run_bounds = np.concatenate([[0], breaks, [len(order)]])
    starts = {n: tables[n]["start"].to_numpy() for n in indexed}
    plan = []
    for first, stop in zip(run_bounds[:-1], run_bounds[1:]):
        part = int(part_of[first])
        following = int(row_of[stop - 1]) + 1
        end = int(starts[part][following]) if following < len(starts[part]) else sizes[part]  # the row's line end included
        plan.append((part, int(starts[part][int(row_of[first])]), end))
    return plan + unindexed


@contextmanager
def _mapped(handle: BinaryIO) -> Iterator[mmap.mmap | None]:
    """A read-only map of the open file (None for an empty one), closed afterwards unless a piece of it is still held."""
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(handle.fileno()).st_size else None
    try:
        yield mapped
    finally:
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:  # a piece is still held by whoever took it; the map closes when that is let go
                pass


CHUNK_BYTES = 4 << 20


def _chunks(old: mmap.mmap, start: int, stop: int) -> Iterator[memoryview]:
    """Bytes `start` to `stop` of the old file, in pieces small enough to be hashed and written while still in the CPU's cache."""
    view = memoryview(old)
    for offset in range(start, stop, CHUNK_BYTES):
        yield view[offset : min(offset + CHUNK_BYTES, stop)]


def _runs(kept: np.ndarray, places: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """Runs of kept rows (positions into `kept`) that lie together in the old file, each with the new rows to insert before it;
    the last run may be empty and carry only the new rows that go at the end."""
    breaks = set(np.flatnonzero(np.diff(kept) != 1) + 1) | set(int(p) for p in places if 0 < p < len(kept))
    bounds = [0, *sorted(b for b in breaks if 0 < b < len(kept)), len(kept)] if len(kept) else [0, 0]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        yield start, stop, np.flatnonzero(places == start)
    tail = np.flatnonzero(places == len(kept)) if len(kept) else np.array([], dtype=np.int64)
    if len(tail):
        yield len(kept), len(kept), tail
