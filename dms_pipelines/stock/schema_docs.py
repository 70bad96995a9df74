"""Render the canonical vehicle's field reference (docs/canonical-vehicle.md) from the schema itself."""

from dms_pipelines.stock.schema import FIELDS

GROUP_TITLES = {
    "identifiers": "Identifiers",
    "description": "Description",
    "state": "State",
    "numbers": "Numbers",
    "content": "Content",
    "dates": "Dates",
    "private": "Private (never leaves the dealership)",
}


def canonical_vehicle_markdown() -> str:
    lines = [
        "# The canonical vehicle",
        "",
        "Generated from `dms_pipelines/stock/schema.py` by `dms-pipelines schema-docs`; do not edit by hand.",
        "Every mapping profile maps a DMS layout onto these fields; the Pandera model `CANONICAL_SCHEMA` checks their",
        "types, required fields and allowed values, and `dms_pipelines/stock/validate.py` adds the row rules.",
        "",
    ]
    for group, title in GROUP_TITLES.items():
        lines += [f"## {title}", "", "| field | type | required | allowed values | meaning |", "|---|---|---|---|---|"]
        for field in (f for f in FIELDS if f.group == group):
            allowed = ", ".join(field.allowed) if field.allowed else ""
            lines.append(f"| `{field.name}` | {field.dtype} | {'yes' if field.required else ''} | {allowed} | {field.description} |")
        lines.append("")
    lines += [
        "Lineage columns on every row: `source_file` (the export's file name) and `source_row` (the record's ordinal in",
        "that file, 1 for the first vehicle; a CSV's header line is not counted).",
        "",
    ]
    return "\n".join(lines)
