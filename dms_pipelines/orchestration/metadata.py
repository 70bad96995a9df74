"""Materialisation metadata for the Dagster UI: markdown previews of a feed's first rows."""

import dagster as dg
import pandas as pd


def preview(frame: pd.DataFrame, columns: list[str] | None = None, rows: int = 5) -> dg.MetadataValue:
    shown = frame[columns] if columns else frame.iloc[:, :8]
    head = shown.head(rows).astype("string").fillna("")
    if head.empty:
        return dg.MetadataValue.md("_no rows_")
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    for row in head.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|")[:60] for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))
