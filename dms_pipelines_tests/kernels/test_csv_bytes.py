"""The column-wise CSV writer writes what Python's csv module writes (minimal quoting), with formula-like cells defused."""

import csv
import io

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.kernels.csv_bytes import delimited_text
from dms_pipelines.marketplaces.base import defuse_formula

CELL = st.text(alphabet=st.sampled_from(list('ab ,"\r\n\t=+-@é|;') + ["🚗"]), max_size=8) | st.none()


def per_row(rows: list[tuple], delimiter: str, defuse: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["first", "second"])
    for row in rows:
        writer.writerow([defuse_formula(v) if defuse else v for v in ("" if v is None else v for v in row)])
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(CELL, CELL), max_size=40), st.sampled_from([",", "\t", ";"]), st.booleans())
def test_rows_are_written_as_the_csv_module_writes_them(rows, delimiter, defuse):
    columns = {name: pd.Series([row[i] for row in rows], dtype="string") for i, name in enumerate(["first", "second"])}
    assert delimited_text(columns, delimiter, defuse_formulas=defuse) == per_row(rows, delimiter, defuse)
