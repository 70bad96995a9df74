"""The record kinds a mapping profile reads (`record: vehicle | customer | images`): each kind's canonical fields, key field and row shape."""

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from dms_pipelines.customers import schema as customer_schema
from dms_pipelines.stock import imaging_schema as image_schema
from dms_pipelines.stock import schema as stock_schema


@dataclass(frozen=True)
class RecordKind:
    name: str
    fields: dict  # canonical field name -> its definition (name, dtype, required, allowed, ...)
    key: str  # the field naming a record in issues (the DMS's own number)
    issue_key: str  # the issue frame's column holding it
    doc: str  # where the fields are listed
    coerce: Callable[[pd.DataFrame], pd.DataFrame]  # read rows in the kind's columns and order
    empty_issues: Callable[[], pd.DataFrame]
    shows_values: bool  # whether an issue may quote the value read (never for personal data)
    lenient: bool  # a value of an optional field that cannot be read is a warning (dropped), not an error

    @property
    def field_noun(self) -> str:
        """How messages name one of its fields ("field" for a vehicle, as always; "customer field")."""
        return "field" if self.name == "vehicle" else f"{self.name} field"

    def severity(self, field_name: str, rule: str) -> str:
        """error (the row is quarantined) or warning (the value is dropped, the row goes on) for a value that failed `rule`."""
        if self.fields[field_name].required:
            return "error"
        return "warning" if self.lenient or rule == "unknown_value" else "error"


VEHICLE = RecordKind(
    "vehicle", stock_schema.FIELD_BY_NAME, "stock_id", "stock_id", "docs/canonical-vehicle.md", stock_schema.coerce_to_schema, stock_schema.empty_issues, shows_values=True, lenient=False
)
CUSTOMER = RecordKind(
    "customer",
    customer_schema.FIELD_BY_NAME,
    "customer_number",
    "customer_number",
    "docs/canonical-customer.md",
    customer_schema.coerce_read,
    customer_schema.empty_read_issues,
    shows_values=False,
    lenient=True,
)
IMAGES = RecordKind(
    "images",
    image_schema.FIELD_BY_NAME,
    "stock_id",
    "stock_id",
    "docs/canonical-images.md",
    image_schema.coerce_to_schema,
    image_schema.empty_issues,
    shows_values=True,
    lenient=True,
)
RECORD_KINDS = {kind.name: kind for kind in (VEHICLE, CUSTOMER, IMAGES)}


def record_kind(name: str | None) -> RecordKind:
    """The kind named by a profile's `record` key (vehicle when absent or not a known kind)."""
    return RECORD_KINDS.get(name or "vehicle", VEHICLE)
