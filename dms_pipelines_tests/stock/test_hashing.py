"""Row digests come back one per row, in row order, however DuckDB splits the work between its threads."""

import numpy as np
import pandas as pd

from dms_pipelines.stock import hashing


def test_digests_keep_row_order_when_hashed_in_many_batches(monkeypatch):
    rows = 40_000
    frame = pd.DataFrame(
        {
            "stock_id": pd.Series([f"S{n:06d}" for n in range(rows)], dtype="string"),
            "price": pd.Series(np.arange(rows) * 1.5, dtype="Float64"),
            "features": pd.Series([f"a|b{n % 7}" if n % 5 else None for n in range(rows)], dtype="string"),
        }
    )
    monkeypatch.setattr(hashing, "BATCH_ROWS", rows)
    whole = hashing.row_digests(frame, list(frame.columns))
    monkeypatch.setattr(hashing, "BATCH_ROWS", 1_000)
    batched = hashing.row_digests(frame, list(frame.columns))
    assert len(set(whole)) == rows and batched.tolist() == whole.tolist()
    single = hashing.row_digests(frame.iloc[[12_345]], list(frame.columns))
    assert single[0] == batched[12_345]
