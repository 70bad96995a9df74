"""Fast RFC 4180 CSV writing, column-wise: minimal quoting, optional defusing of spreadsheet formulas."""

from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.kernels.arrow_text import arrow_strings, holds_any_byte, rows_holding, rows_starting_with
from dms_pipelines.kernels.parallel import SLICE_ROWS, ordered_map, slice_bounds

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("")


def delimited_text(columns: dict[str, pd.Series], delimiter: str = ",", line_end: str = "\r\n", defuse_formulas: bool = False) -> str:
    """Header plus one line per row; cells quoted only when they hold the delimiter, a quote or a line break."""
    return delimited_bytes(columns, delimiter, line_end, defuse_formulas).decode("utf-8")


def delimited_bytes(columns: dict[str, pd.Series], delimiter: str = ",", line_end: str = "\r\n", defuse_formulas: bool = False) -> bytes:
    """`delimited_text` as UTF-8 bytes, built with Arrow string kernels (no per-row Python)."""
    return b"".join(delimited_parts(columns, delimiter, line_end, defuse_formulas))


def delimited_parts(
    columns: dict[str, pd.Series],
    delimiter: str = ",",
    line_end: str = "\r\n",
    defuse_formulas: bool = False,
    order: np.ndarray | None = None,
    part_rows: int = SLICE_ROWS,
) -> Iterator[pa.Buffer | bytes]:
    """`delimited_bytes` as consecutive pieces: the header, then the lines of `part_rows` rows at a time (built on parallel threads).

    `order`: the row positions in the order they are written (default: as they stand).
    """
    yield (delimiter.join(columns) + line_end).encode("utf-8")

    def lines_of(part: dict[str, pd.Series]) -> list:
        return list(joined_lines(delimited_lines(part, delimiter, defuse_formulas), line_end))

    parts = (row_slice(columns, order, start, stop) for start, stop in slice_bounds(_row_count(columns), part_rows))
    for pieces in ordered_map(lines_of, parts):
        yield from pieces


def delimited_lines(columns: dict[str, pd.Series], delimiter: str = ",", defuse_formulas: bool = False) -> pa.Array:
    """One line of text per row (no line end), its cells quoted as `delimited_text` quotes them."""
    cells = [_cell(values, delimiter, defuse_formulas) for values in columns.values()]
    return pc.binary_join_element_wise(*cells, _large(delimiter)) if len(cells) > 1 else cells[0]


def _row_count(columns: dict[str, pd.Series]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def row_slice(columns: dict[str, pd.Series], order: np.ndarray | None, start: int, stop: int) -> dict[str, pd.Series]:
    """Rows `start` to `stop` of the columns, taken in `order` (row positions) when given; without an order, zero-copy slices."""
    if order is None:
        return {name: values.iloc[start:stop] for name, values in columns.items()}
    return {name: values.take(order[start:stop]) for name, values in columns.items()}


def in_place_order(order: np.ndarray | None) -> np.ndarray | None:
    """None when `order` leaves the rows as they stand (slices need no copy), else `order`."""
    return None if order is None or np.array_equal(order, np.arange(len(order))) else order


def joined_lines(lines: pa.Array, separator: str, end: str | None = None) -> Iterator[pa.Buffer | bytes]:
    """The lines joined by `separator`, then `end` (default: the separator once more), as buffers (no copy into bytes)."""
    yield pc.binary_join(pa.LargeListArray.from_arrays(pa.array([0, len(lines)], pa.int64()), lines), _large(separator))[0].as_buffer()
    yield (separator if end is None else end).encode("utf-8")


def _cell(values: pd.Series, delimiter: str, defuse_formulas: bool) -> pa.Array:
    text = arrow_strings(as_text(values)).cast(pa.large_string())
    if defuse_formulas:
        formula = rows_starting_with(text, "".join(FORMULA_START).encode("ascii"))
        if formula.any():  # only the rows that change are rebuilt
            mask = pa.array(formula)
            text = pc.replace_with_mask(text, mask, pc.binary_join_element_wise(_large("'"), text.filter(mask), _large("")))
    special = (delimiter + '"\r\n').encode("utf-8")
    if not holds_any_byte(text, special):
        return text
    quote = rows_holding(text, special) if special.isascii() else pc.match_substring_regex(text, _any_of(delimiter + '"\r\n')).to_numpy(zero_copy_only=False)
    if quote.any():
        mask = pa.array(quote)
        quoted = pc.binary_join_element_wise(_large('"'), pc.replace_substring(text.filter(mask), '"', '""'), _large('"'), _large(""))
        text = pc.replace_with_mask(text, mask, quoted)
    return text


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _any_of(characters: str) -> str:
    """A regular expression class matching any of `characters`, each written as a code point so none is special."""
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in characters) + "]"
