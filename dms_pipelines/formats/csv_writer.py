"""Fast RFC 4180 CSV writing, column-wise: minimal quoting, optional defusing of spreadsheet formulas."""

import re

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("")


def delimited_text(columns: dict[str, pd.Series], delimiter: str = ",", line_end: str = "\r\n", defuse_formulas: bool = False) -> str:
    """Header plus one line per row; cells quoted only when they hold the delimiter, a quote or a line break."""
    needs_quote = "[" + re.escape(delimiter) + '"\r\n]'

    def cell(values: pd.Series) -> list:
        text = as_text(values)
        if defuse_formulas:
            text = text.mask(text.str.startswith(FORMULA_START).fillna(False).astype(bool), "'" + text)
        quote = text.str.contains(needs_quote, regex=True).fillna(False).astype(bool)
        if quote.any():
            text = text.mask(quote, '"' + text.str.replace('"', '""', regex=False) + '"')
        return text.to_numpy(dtype=object)

    header = delimiter.join(columns)
    cells = [cell(values) for values in columns.values()]
    if not cells or len(cells[0]) == 0:
        return header + line_end
    lines = cells[0]
    for column in cells[1:]:
        lines = lines + delimiter + column
    return header + line_end + line_end.join(lines.tolist()) + line_end
