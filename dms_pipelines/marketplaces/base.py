"""The common face of a marketplace module, and the text, status and CSV safety rules they all share."""

import html
import re
from dataclasses import dataclass, field
from typing import Callable, Literal

import pandas as pd

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.formats.csv_writer import FORMULA_START, delimited_text
from dms_pipelines.stock.schema import LIST_SEPARATOR

KEY = "_stock_id"  # every rendered frame carries the stock number under this column; never serialised
TAGS = r"<[^>]*>"  # pattern strings (not compiled) keep pandas on its vectorised Arrow path
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
SPACES = "[ \t\xa0]+"


@dataclass
class Rendered:
    """One dealer's feed for one marketplace: listed items, vehicles held back with reasons, completeness per vehicle."""

    marketplace: str
    dealer_id: str
    items: pd.DataFrame
    held: pd.DataFrame  # stock_id, reasons
    completeness: pd.DataFrame  # stock_id, completeness, missing


@dataclass(frozen=True)
class MarketplaceSpec:
    """What a marketplace module declares: how it is delivered, how stock becomes its rows, which rules they must meet."""

    name: str
    mode: Literal["snapshot", "api"]
    render: Callable[[pd.DataFrame, Dealer, DealerMarketplace], pd.DataFrame]
    required: tuple[str, ...]
    recommended: tuple[str, ...] = ()
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_lengths: dict[str, int] = field(default_factory=dict)
    extra_rules: Callable[[pd.DataFrame], pd.Series] | None = None  # per item: '' or '; '-joined reasons
    min_images: int = 0
    image_count: Callable[[pd.DataFrame], pd.Series] | None = None


def clean_text(values: pd.Series, max_length: int | None = None) -> pd.Series:
    """HTML stripped and unescaped, control characters removed, cut at a word boundary to `max_length`."""
    text = values.astype("string").str.replace(TAGS, " ", regex=True)
    escaped = text.str.contains("&", regex=False).fillna(False).astype(bool)
    if escaped.any():
        text = text.mask(escaped, text[escaped].map(html.unescape).astype("string"))
    text = text.str.replace(CONTROL, "", regex=True).str.replace(SPACES, " ", regex=True).str.strip()
    if max_length:
        long = (text.str.len() > max_length).fillna(False).astype(bool)
        if long.any():
            text = text.mask(long, text[long].map(lambda v: cut_at_word(v, max_length)).astype("string"))
    return text


def cut_at_word(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,.;:") + "…"


def defuse_formula(value):
    """A cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value  # the vectorised twin used for whole files is formats.csv_writer.delimited_text


def listable(stock: pd.DataFrame, account: DealerMarketplace, pending_supported: bool) -> pd.Series:
    """Available cars are listed; reserved ones where the marketplace can say 'pending' or the dealer keeps them listed."""
    status = stock["status"]
    reserved_ok = pending_supported or account.list_reserved
    return (status == "available") | ((status == "reserved") & reserved_ok)


def split_list(values: pd.Series) -> pd.Series:
    """Each '|'-joined cell as a Python list (an object Series, so pandas never turns the lists into arrays)."""
    cells = values.to_numpy(dtype=object, na_value=None)  # iterating an Arrow-backed Series directly is slow
    lists = [[p for p in v.split(LIST_SEPARATOR) if p] if isinstance(v, str) else [] for v in cells]
    return pd.Series(lists, index=values.index, dtype="object")


def image_count_from(column: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda items: items[column].map(lambda v: len(v) if isinstance(v, list) else 0)


def _join_reasons(flags: list[tuple[pd.Series, str]], index: pd.Index) -> pd.Series:
    """'; '-joined labels of the flags set on each row, built column-wise (no per-row Python)."""
    joined = pd.Series("", index=index, dtype="string")
    for mask, label in flags:
        mask = pd.Series(mask, index=index).fillna(False).astype(bool)
        joined = joined.mask(mask, joined + "; " + label)
    return joined.str.removeprefix("; ")


def check_items(spec: MarketplaceSpec, items: pd.DataFrame) -> pd.Series:
    """Per item, the reasons the marketplace would reject it ('' when none)."""
    flags: list[tuple[pd.Series, str]] = []
    for name in spec.required:
        column = items[name] if name in items else pd.Series(pd.NA, index=items.index)
        flags.append((_is_empty(column), f"{name} missing"))
    for name, allowed in spec.enums.items():
        if name in items:
            flags.append((items[name].notna() & ~items[name].isin(allowed), f"{name} not one of {'/'.join(allowed)}"))
    for name, limit in spec.max_lengths.items():
        if name in items:
            flags.append((items[name].astype("string").str.len() > limit, f"{name} longer than {limit}"))
    reasons = _join_reasons(flags, items.index)
    if spec.extra_rules is not None:
        extra = spec.extra_rules(items).fillna("").astype("string")
        reasons = (reasons + "; " + extra).str.strip("; ")
    return reasons.astype("object")


def _is_empty(column: pd.Series) -> pd.Series:
    if column.dtype == object:
        return column.map(lambda v: v is None or v is pd.NA or (isinstance(v, float) and v != v) or (hasattr(v, "__len__") and len(v) == 0)).astype(bool)
    text = column.astype("string")
    return (text.isna() | (text.str.strip() == "")).astype(bool)


def completeness(spec: MarketplaceSpec, items: pd.DataFrame) -> pd.DataFrame:
    """Share of required and recommended fields present (image count counts as one field), with what is missing."""
    present: dict[str, pd.Series] = {}
    for name in list(spec.required) + list(spec.recommended):
        column = items[name] if name in items else pd.Series(pd.NA, index=items.index)
        present[name] = ~_is_empty(column)
    if spec.image_count is not None and spec.min_images:
        present[f"at least {spec.min_images} images"] = pd.Series(spec.image_count(items) >= spec.min_images, index=items.index)
    frame = pd.DataFrame(present, index=items.index)
    score = frame.mean(axis=1).round(4) if len(frame.columns) else pd.Series(1.0, index=items.index)
    missing = _join_reasons([(~frame[c], c) for c in frame.columns], items.index)
    return pd.DataFrame({"stock_id": items[KEY].astype("string").values, "completeness": score.values, "missing": missing.replace("", pd.NA).values})


def render_for(spec: MarketplaceSpec, stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> Rendered:
    """Render, check and score; items the marketplace would reject are held back with reasons."""
    items = spec.render(stock, dealer, account).reset_index(drop=True)
    reasons = check_items(spec, items) if len(items) else pd.Series(dtype="object")
    bad = reasons != ""
    held = pd.DataFrame({"stock_id": items.loc[bad, KEY].astype("string").values, "reasons": reasons[bad].astype("string").values})
    good = items.loc[~bad].reset_index(drop=True)
    score = completeness(spec, good) if len(good) else pd.DataFrame({"stock_id": pd.Series(dtype="string"), "completeness": pd.Series(dtype="float"), "missing": pd.Series(dtype="string")})
    return Rendered(spec.name, dealer.id, good, held, score)


def to_delimited(items: pd.DataFrame, columns: list[str], delimiter: str = ",") -> bytes:
    """RFC 4180 CSV (or TSV) with formula-like cells defused; the key column is never written."""
    return delimited_text({name: items[name] for name in columns}, delimiter, defuse_formulas=True).encode("utf-8")


def listing_rows(rendered: Rendered) -> pd.DataFrame:
    """What this marketplace shows per vehicle (listed with completeness, or held back with reasons), for the warehouse."""
    listed = rendered.completeness.rename(columns={"missing": "missing"}).assign(listed=True, held_reasons=pd.NA)
    held = rendered.held.rename(columns={"reasons": "held_reasons"}).assign(listed=False, completeness=pd.NA, missing=pd.NA)
    frames = [f for f in (listed, held) if len(f)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["stock_id", "listed", "completeness", "missing", "held_reasons"])
    return rows.assign(dealer_id=rendered.dealer_id, marketplace=rendered.marketplace)
