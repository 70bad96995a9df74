"""Content hashes of table rows, computed by DuckDB over Arrow: the md5 of each row's fields, in a stable text form."""

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

FIELD_SEPARATOR = "chr(31)"  # between fields (SQL: control characters that never occur in a field)
ITEM_SEPARATOR = "chr(30)"  # between the items of a list field
BATCH_ROWS = 16_384  # DuckDB hashes one Arrow batch per thread; a single-chunk table would run on one thread
MISSING = "chr(1)"  # a missing value, so that it hashes apart from '' and from 0


def _arrow_column(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    if values.dtype == object:  # lists of strings (images, features), or None
        return pa.array([v if isinstance(v, list) else None for v in values.tolist()], type=pa.list_(pa.string()))
    return pa.array(values)


def row_digests(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The md5 (hex) of each row over `columns`, in that order: numbers and dates as DuckDB writes them as text."""
    if frame.empty:
        return np.array([], dtype=object)
    table = pa.table({f"c{i}": _arrow_column(frame[name]) for i, name in enumerate(columns)})
    table = pa.Table.from_batches(table.to_batches(max_chunksize=BATCH_ROWS))  # zero-copy; DuckDB scans batches on parallel threads
    fields = []
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):  # the length first: [] and [''] differ
            text = f"CAST(len(c{i}) AS VARCHAR) || ':' || array_to_string(c{i}, {ITEM_SEPARATOR})"
        else:
            text = f"CAST(c{i} AS VARCHAR)"
        fields.append(f"coalesce({text}, {MISSING})")
    with duckdb.connect() as connection:
        connection.register("row_table", table)
        digests = connection.execute(f"SELECT md5(concat_ws({FIELD_SEPARATOR}, {', '.join(fields)})) AS digest FROM row_table").fetchnumpy()["digest"]
    return np.asarray(digests, dtype=object)
