"""How a feed file is laid out: a head, one text per vehicle in sort order, a tail (the RowFile a marketplace declares)."""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from dms_pipelines.kernels.csv_bytes import delimited_lines


@dataclass(frozen=True)
class RowFile:
    """How one feed file is laid out.

    The file is `head(rows, columns)`, then each row's text joined by `separator`, then `end` when there is a row, then `tail`.
    Rows are in the order of `sort_keys`, ties in stock-number order. `width` is, per row, what the head and every row's
    layout depend on (Meta: how many image columns the row fills); the file's width is the largest (at least `min_width`).
    """

    sort_keys: tuple[str, ...]
    columns: Callable[[pd.DataFrame, int], list[str]]
    texts: Callable[[dict[str, pd.Series]], pa.Array]
    head: Callable[[int, list[str]], bytes]
    separator: bytes
    end: bytes
    tail: bytes = b""
    width: Callable[[pd.DataFrame], np.ndarray] | None = None
    min_width: int = 0

    def file_width(self, widths: np.ndarray) -> int:
        return max(self.min_width, int(widths.max())) if len(widths) else self.min_width

    def widths(self, items: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.width(items), dtype=np.int64) if self.width else np.zeros(len(items), dtype=np.int64)


def delimited(sort_keys: tuple[str, ...], columns: Callable[[pd.DataFrame, int], list[str]], delimiter: str = ",", **extra) -> RowFile:
    """An RFC 4180 CSV (or TSV) file with a header line and formula-like cells defused, as `to_delimited` writes it."""
    return RowFile(
        sort_keys,
        columns,
        lambda part: delimited_lines(part, delimiter, defuse_formulas=True),
        lambda rows, names: (delimiter.join(names) + "\r\n").encode("utf-8"),
        b"\r\n",
        b"\r\n",
        **extra,
    )
