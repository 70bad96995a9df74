"""The common face of a marketplace module, and the text, status and CSV safety rules they all share."""

import html
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.config import Dealer, DealerMarketplace, slug, url_pieces
from dms_pipelines.kernels.arrow_text import arrow_strings, byte_table, edge_bytes, one_array, rows_with_any, string_buffers, valid_rows
from dms_pipelines.kernels.csv_bytes import FORMULA_START, delimited_bytes, in_place_order
from dms_pipelines.kernels.parallel import SLICE_ROWS, ordered_map, slice_bounds
from dms_pipelines.marketplaces.layout import RowFile
from dms_pipelines.stock.schema import LIST_SEPARATOR

KEY = "_stock_id"  # every rendered frame carries the stock number under this column; never serialised
TAGS = r"<[^>]*>"  # pattern strings (not compiled) keep pandas on its vectorised Arrow path
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
SPACES = "[ \t\xa0]+"
BLANK_START = byte_table(bytes(range(0x21)) + bytes(range(0x7F, 0x100)))  # first bytes of whitespace, ASCII or not


@dataclass
class Rendered:
    """One dealer's feed for one marketplace: listed items, vehicles held back with reasons, completeness per vehicle."""

    marketplace: str
    dealer_id: str
    items: pd.DataFrame
    held: pd.DataFrame  # stock_id, reasons
    completeness: pd.DataFrame  # stock_id, completeness, missing


@dataclass(frozen=True)
class FeedFile:
    """One file a snapshot marketplace receives from a dealer: its name and how its bytes are built.

    `rows`: one row per listed vehicle (so the file can be rebuilt from the changed vehicles alone); otherwise `build` makes
    the whole file's pieces from the rendered items and the dealer (`uses_items=False`: from the dealer alone).
    """

    name: str
    rows: RowFile | None = None
    build: Callable[[pd.DataFrame, Dealer, DealerMarketplace], Iterable] | None = None
    uses_items: bool = True


@dataclass(frozen=True)
class AccountFeed:
    """A file for a whole account of several dealers: the header, then each dealer's part (its FeedFile rows, headless)."""

    name: Callable[[str], str]  # file format -> the account file's name
    header: Callable[[str], bytes]
    columns: tuple[str, ...]  # the file's columns: nothing else may be in it
    delimiter: Callable[[str], str]
    part_key: Callable[[Dealer, DealerMarketplace], str]  # the prefix of the dealer's rows' keys in what the file shows (read_back)


@dataclass(frozen=True)
class ApiFace:
    """How an incremental marketplace's API is spoken: the item per vehicle, its payloads, and how to read its listings."""

    reference: str  # the rendered column that names the vehicle there (our stock number)
    state: str  # the rendered column holding the lifecycle state sent
    sold_state: str
    gone_states: tuple[str, ...]  # listings in these states are no longer there
    live_states: tuple[str, ...]  # listings in these states offer the car for sale
    account_id: Callable[[Dealer, DealerMarketplace], str]  # the dealer's account (advertiser) there
    item: Callable[[dict], dict]  # a rendered row as plain values: what the ledger keeps and hashes
    create_payload: Callable[[dict], dict]
    patch_payload: Callable[[dict | None, dict], dict]
    delete_payload: Callable[[], dict]
    listed_reference: Callable[[dict], str]  # a listing from the search: our stock number
    listed_state: Callable[[dict], str]
    listed_id: Callable[[dict], str]  # the marketplace's own id of a listing (also of a create's answer)
    listed_published: Callable[[dict], bool]  # the advert is shown to buyers
    base_url_env: str = ""  # the environment variable the demo points at its own simulator


@dataclass(frozen=True)
class MarketplaceSpec:
    """What a marketplace declares: how it is delivered, how stock becomes its rows, which rules they must meet, the files
    it receives or the API it is spoken to through, and the settings a dealer's account there may carry."""

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
    # a snapshot file read back (its name, its bytes) into what it shows per vehicle (see read_back.py); None: no vehicle rows in it
    read_back: Callable[[str, bytes], dict[str, str] | None] | None = None
    # per rendered item, whether it asks the marketplace to offer the car for sale (an API item may instead mark it SOLD); None: all
    offered: Callable[[pd.DataFrame], pd.Series] | None = None
    # snapshot marketplaces: the files a dealer's feed is (dealer, its account, the file format); the whole account's file
    files: Callable[[Dealer, DealerMarketplace, str], list[FeedFile]] | None = None
    account_file: AccountFeed | None = None  # set: one file for the whole account, `files` giving each dealer's part
    api: ApiFace | None = None  # api marketplaces
    formats: tuple[str, ...] = ("csv",)  # the file formats it takes, the first the default
    account_settings: tuple[str, ...] = ()  # the keys a dealer's account there may set (config: dealers[].marketplaces.<name>)
    preview_columns: tuple[str, ...] | None = None  # the columns a materialisation's preview shows (None: the first few)
    description: str = ""
    fingerprint: str = ""  # what besides the code decides its files' bytes (a feed profile's own text); kept files built under another are rebuilt
    currencies: tuple[str, ...] | None = None  # the currencies its prices may be in (a dealer's market.currency); None: any, named in the feed
    distance_units: tuple[str, ...] | None = None  # the odometer units it takes (a dealer's market.distance_unit); None: any, named in the feed

    @property
    def scope(self) -> Literal["dealer", "account"]:
        return "account" if self.account_file is not None else "dealer"

    @property
    def dealer_asset(self) -> str:
        """The per-dealer asset: `<name>_feed` for a dealer's own files, `<name>_listings` for API items or account-file rows."""
        return f"{self.name}_feed" if self.mode == "snapshot" and self.account_file is None else f"{self.name}_listings"

    @property
    def account_asset(self) -> str | None:
        return f"{self.name}_feed" if self.account_file is not None else None

    def file_format(self, configured: str | None) -> str:
        return configured or self.formats[0]


def vehicle_urls(dealer: Dealer, cars: pd.DataFrame) -> pd.Series:
    """Each car's page on the dealer's website, from the dealer's URL templates (`urls.new` for new cars, `urls.used` for
    used and demo ones): vectorised `Dealer.vehicle_url`, missing where a value it names is missing."""
    used = _filled_url(dealer, dealer.urls.template("used"), cars)
    new_template = dealer.urls.template("new")
    is_new = (cars["condition"] == "new").fillna(False).to_numpy(dtype=bool) if "condition" in cars else np.zeros(len(cars), dtype=bool)
    if new_template == dealer.urls.template("used") or not is_new.any():
        return used
    return used.mask(is_new, _filled_url(dealer, new_template, cars))


def _filled_url(dealer: Dealer, template: str, cars: pd.DataFrame) -> pd.Series:
    constants = {"website": dealer.website.rstrip("/"), "dealer_id": dealer.id}
    url = pd.Series("", index=cars.index, dtype="string")
    for text, name in url_pieces(template):
        url = url + text
        if name in constants:
            url = url + constants[name]
        elif name == "stock_id":
            url = url + cars["stock_id"].astype("string")
        elif name == "stock_id_lower":
            url = url + cars["stock_id"].astype("string").str.lower()
        elif name:  # make, model: slugged once per distinct value
            codes, distinct = pd.factorize(cars[name].astype("string"))
            slugs = pa.array([slug(value) for value in distinct], pa.large_string())
            url = url + text_series(pc.take(slugs, pa.array(codes, pa.int64(), mask=codes < 0)), cars.index)
    return url


def priced(values: pd.Series, template: str, dealer: Dealer) -> pd.Series:
    """Prices as `template` writes a number (e.g. "{:.2f}"), followed by a space and the dealer's currency (15999.00 EUR)."""
    return format_numbers(values, template + " " + dealer.market.currency)


def clean_text(values: pd.Series, max_length: int | None = None) -> pd.Series:
    """HTML stripped and unescaped, control characters removed, cut at a word boundary to `max_length`."""
    text = values.astype("string")
    codes, distinct = pd.factorize(text)
    if len(distinct) * 2 < len(text):  # makes, models, colours: each distinct value is cleaned once
        cleaned = _clean_each(pd.Series(distinct, dtype="string"), max_length)
        return pd.Series(cleaned.array.take(codes, allow_fill=True), index=values.index)
    return _clean_each(text, max_length)


def _clean_each(text: pd.Series, max_length: int | None) -> pd.Series:
    """The cleaning below for the values it could change; the others (most adverts) are left as they are, unscanned by
    the regular expressions."""
    changing = may_change_when_cleaned(arrow_strings(text))
    if changing.all():
        text = clean_every_value(text)
    elif changing.any():
        text = text.mask(changing, clean_every_value(text[changing]))
    if max_length:
        long = (text.str.len() > max_length).fillna(False).astype(bool)
        if long.any():
            text = text.mask(long, text[long].map(lambda v: cut_at_word(v, max_length)).astype("string"))
    return text


# Bytes the cleaning acts on anywhere in a value: a tag's "<", an entity's "&", the CONTROL characters, a tab. At a
# value's ends it also strips ASCII whitespace and some non-ASCII spaces (any non-ASCII character there counts).
_CLEANED_BYTES = np.array([ord("<"), ord("&"), *range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, ord("\t")], dtype=np.uint8)
_STRIPPED_ASCII = np.array([ord(c) for c in " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"], dtype=np.uint8)
_CLEANED_TABLE, _STRIPPED_TABLE = byte_table(_CLEANED_BYTES), byte_table(_STRIPPED_ASCII)


def may_change_when_cleaned(text: pa.Array) -> np.ndarray:
    """Per value, whether `clean_every_value` could change it (False only where it certainly would not; missing values: False)."""
    offsets, data = string_buffers(text)
    body = data[offsets[0] : offsets[-1]]
    hit = _CLEANED_TABLE[body]
    pairs = ((body[:-1] == 0x20) & (body[1:] == 0x20)) | ((body[:-1] == 0xC2) & (body[1:] == 0xA0))  # two spaces; a no-break space
    hit[:-1] |= pairs
    changing = rows_with_any(hit, offsets)
    for last in (False, True):
        edges, filled = edge_bytes(offsets, data, last)
        changing |= filled & ((edges >= 0x80) | _STRIPPED_TABLE[edges])
    return changing & valid_rows(text)


def clean_every_value(text: pd.Series) -> pd.Series:
    """HTML tags to spaces, entities unescaped, control characters removed, runs of spaces to one, ends stripped."""
    text = text.str.replace(TAGS, " ", regex=True)
    escaped = text.str.contains("&", regex=False).fillna(False).astype(bool)
    if escaped.any():
        text = text.mask(escaped, text[escaped].map(html.unescape).astype("string"))
    return text.str.replace(CONTROL, "", regex=True).str.replace(SPACES, " ", regex=True).str.strip()


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
    return value  # the vectorised twin used for whole files is formats.csv_writer.delimited_bytes


def listable(stock: pd.DataFrame, account: DealerMarketplace, pending_supported: bool) -> pd.Series:
    """Available cars are listed; reserved ones where the marketplace can say 'pending' or the dealer keeps them listed."""
    status = stock["status"]
    reserved_ok = pending_supported or account.list_reserved
    return (status == "available") | ((status == "reserved") & reserved_ok)


def list_parts(values: pd.Series) -> pa.LargeListArray:
    """Each '|'-joined cell as an Arrow list of its non-empty parts (a missing cell: an empty list), no Python lists."""
    parts = pc.split_pattern(arrow_strings(values), LIST_SEPARATOR)
    flat = pc.list_flatten(parts)
    kept = pc.not_equal(flat, "")
    if parts.null_count == 0 and pc.all(kept).as_py():
        return parts.cast(pa.large_list(pa.large_string()))
    counts = np.bincount(pc.list_parent_indices(parts).filter(kept).to_numpy(), minlength=len(parts))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), flat.filter(kept).cast(pa.large_string()))


def list_series(lists: pa.LargeListArray, index: pd.Index) -> pd.Series:
    """An Arrow list column: each value reads back as a Python list, the column stays vectorised."""
    return pd.Series(pd.arrays.ArrowExtensionArray(lists), index=index)


def list_item(lists: pa.LargeListArray, position: int, index: pd.Index) -> pd.Series:
    """The list's item at `position` per row (missing where the list is shorter)."""
    offsets = lists.offsets.to_numpy()
    short = np.diff(offsets) <= position
    picks = pa.array(offsets[:-1] - offsets[0] + position, pa.int64(), mask=short)
    return text_series(pc.take(lists.flatten(), picks), index)


def list_joined(lists: pa.LargeListArray, separator: str, index: pd.Index, start: int = 0, stop: int | None = None) -> pd.Series:
    """The items from `start` up to `stop` joined with `separator` per row ('' for none)."""
    if start or stop is not None:
        lists = pc.list_slice(lists, start, stop)
    return text_series(pc.binary_join(lists, pa.scalar(separator, pa.large_string())), index)


def text_series(values: pa.Array | pa.ChunkedArray, index: pd.Index) -> pd.Series:
    return pd.Series(values, index=index, dtype="string")


def map_text(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """`values.map(mapping)` as a string column (unmapped and missing values missing), by a vectorised look-up."""
    positions = pc.index_in(arrow_strings(values), value_set=pa.array(list(mapping), pa.large_string()))
    return text_series(pc.take(pa.array(list(mapping.values()), pa.large_string()), positions), values.index)


def format_numbers(values: pd.Series, template: str) -> pd.Series:
    """`template.format(number)` per value (missing stays missing), formatted once per distinct value."""
    return text_series(number_texts(values, template.format), values.index)


def number_texts(values: pd.Series, formatter: Callable[[float], str]) -> pa.Array:
    """`formatter(number)` per value as Arrow text (missing values null), called once per distinct value."""
    missing = values.isna().to_numpy(dtype=bool)
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    distinct, positions = np.unique(numbers.view(np.int64), return_inverse=True)  # by bit pattern: -0.0 is not 0.0
    texts = pa.array([formatter(number) for number in distinct.view(np.float64).tolist()], pa.large_string())
    return pc.take(texts, pa.array(positions.reshape(-1), pa.int64(), mask=missing))


def list_lengths(column: pd.Series) -> pd.Series:
    """Items per row of a list column (an Arrow list column, or an object column of lists)."""
    if isinstance(column.dtype, pd.ArrowDtype):
        lengths = pc.list_value_length(one_array(pa.array(column.array))).to_numpy(zero_copy_only=False)
        return pd.Series(np.nan_to_num(lengths).astype(np.int64), index=column.index)
    return pd.Series(np.fromiter(map(len, column.to_numpy()), dtype=np.int64, count=len(column)), index=column.index)


def _join_reasons(flags: list[tuple[pd.Series, str]], index: pd.Index) -> pd.Series:
    """'; '-joined labels of the flags set on each row, joined once per distinct combination of flags (no per-row Python)."""
    if not flags or not len(index):
        return pd.Series("", index=index, dtype="string")
    matrix = np.column_stack([pd.Series(mask, index=index).fillna(False).astype(bool).to_numpy() for mask, _ in flags])
    packed = np.packbits(matrix, axis=1, bitorder="little")
    if packed.shape[1] <= 8:  # one integer per row: a plain sort finds the distinct combinations
        numbers = np.pad(packed, ((0, 0), (0, 8 - packed.shape[1]))).view("<u8").reshape(-1)
        distinct, positions = np.unique(numbers, return_inverse=True)
        combinations = distinct.astype("<u8").view(np.uint8).reshape(-1, 8)
    else:
        combinations, positions = np.unique(packed, axis=0, return_inverse=True)
    labels = [label for _, label in flags]
    rows = np.unpackbits(combinations, axis=1, count=len(labels), bitorder="little").astype(bool)
    texts = ["; ".join(label for label, on in zip(labels, row) if on) for row in rows]
    return text_series(pc.take(pa.array(texts, pa.large_string()), pa.array(positions.reshape(-1), pa.int64())), index)


def check_items(spec: MarketplaceSpec, items: pd.DataFrame) -> pd.Series:
    """Per item, the reasons the marketplace would reject it ('' when none)."""
    flags: list[tuple[pd.Series, str]] = []
    for name in spec.required:
        column = items[name] if name in items else pd.Series(pd.NA, index=items.index)
        flags.append((is_empty(column), f"{name} missing"))
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


def is_empty(column: pd.Series) -> pd.Series:
    """Per value, whether it is missing or blank (a list without items, text of nothing but whitespace)."""
    if isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_large_list(column.dtype.pyarrow_dtype):
        return list_lengths(column) == 0
    if column.dtype == object:
        try:  # lists (or strings) everywhere: their lengths in one C-level pass
            return list_lengths(column) == 0
        except TypeError:  # a missing value somewhere
            return column.map(lambda v: v is None or v is pd.NA or (isinstance(v, float) and v != v) or (hasattr(v, "__len__") and len(v) == 0)).astype(bool)
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column.isna().astype(bool)  # a number or a date is never blank text
    return pd.Series(blank_rows(arrow_strings(column)), index=column.index)


def blank_rows(text: pa.Array) -> np.ndarray:
    """Per string of a contiguous array, whether it is missing, empty or all whitespace (as `str.strip() == ""`).

    Only strings that start with a space, a control byte or a non-ASCII byte can be blank: those few are trimmed.
    """
    heads, filled = edge_bytes(*string_buffers(text))
    maybe = ~filled | BLANK_START[heads]
    blank = ~valid_rows(text)
    if maybe.any():
        positions = np.flatnonzero(maybe)
        trimmed = pc.utf8_trim_whitespace(text.take(pa.array(positions)))
        blank[positions] |= pc.fill_null(pc.equal(pc.binary_length(trimmed), 0), True).to_numpy(zero_copy_only=False)
    return blank


def completeness(spec: MarketplaceSpec, items: pd.DataFrame) -> pd.DataFrame:
    """Share of required and recommended fields present (image count counts as one field), with what is missing."""
    present: dict[str, pd.Series] = {}
    for name in list(spec.required) + list(spec.recommended):
        column = items[name] if name in items else pd.Series(pd.NA, index=items.index)
        present[name] = ~is_empty(column)
    if spec.image_count is not None and spec.min_images:
        present[f"at least {spec.min_images} images"] = pd.Series(spec.image_count(items) >= spec.min_images, index=items.index)
    frame = pd.DataFrame(present, index=items.index)
    score = frame.mean(axis=1).round(4) if len(frame.columns) else pd.Series(1.0, index=items.index)
    missing = _join_reasons([(~frame[c], c) for c in frame.columns], items.index)
    return pd.DataFrame({"stock_id": items[KEY].astype("string").values, "completeness": score.values, "missing": missing.replace("", pd.NA).values})


def render_for(spec: MarketplaceSpec, stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace, slice_rows: int = SLICE_ROWS) -> Rendered:
    """Render, check and score; items the marketplace would reject are held back with reasons.

    A big stock is rendered in slices on parallel threads (every rule is per vehicle) and the slices put back in order.
    """
    slices = (stock.iloc[start:stop] for start, stop in slice_bounds(len(stock), slice_rows))  # taken on this thread, as pandas wants
    parts = list(ordered_map(lambda part: _render_slice(spec, part, dealer, account), slices))
    if len(parts) <= 1:
        return parts[0] if parts else _render_slice(spec, stock, dealer, account)
    return Rendered(spec.name, dealer.id, *(_concat([getattr(part, name) for part in parts]) for name in ("items", "held", "completeness")))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled, ignore_index=True) if filled else frames[0]


def _render_slice(spec: MarketplaceSpec, stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> Rendered:
    items = spec.render(stock, dealer, account).reset_index(drop=True)
    reasons = check_items(spec, items) if len(items) else pd.Series(dtype="object")
    bad = reasons != ""
    held = pd.DataFrame({"stock_id": items.loc[bad, KEY].astype("string").values, "reasons": reasons[bad].astype("string").values})
    good = items.loc[~bad].reset_index(drop=True)
    score = completeness(spec, good) if len(good) else pd.DataFrame({"stock_id": pd.Series(dtype="string"), "completeness": pd.Series(dtype="float"), "missing": pd.Series(dtype="string")})
    return Rendered(spec.name, dealer.id, good, held, score)


def to_delimited(items: pd.DataFrame, columns: list[str], delimiter: str = ",") -> bytes:
    """RFC 4180 CSV (or TSV) with formula-like cells defused; the key column is never written."""
    return delimited_bytes({name: items[name] for name in columns}, delimiter, defuse_formulas=True)


def sort_order(items: pd.DataFrame, keys: list[str]) -> np.ndarray | None:
    """Row positions in the order of `items.sort_values(keys, kind="stable")` (None when the rows already are in it),
    found by Arrow's stable sort of the key columns alone (missing values last, as pandas puts them)."""
    table = pa.table({f"k{n}": one_array(pa.array(items[key].array)) for n, key in enumerate(keys)})
    order = pc.sort_indices(table, sort_keys=[(f"k{n}", "ascending", "at_end") for n in range(len(keys))])
    return in_place_order(order.to_numpy())


def listing_rows(rendered: Rendered, offered: pd.Series | None = None) -> pd.DataFrame:
    """What the feed asks this marketplace to show per vehicle (in the feed with completeness, or held back with reasons;
    `offered`: per item, whether it is offered for sale rather than marked sold), for the warehouse."""
    listed = rendered.completeness.assign(listed=True, held_reasons=pd.NA)
    if offered is not None:
        by_id = pd.Series(offered.to_numpy(dtype=bool), index=rendered.items[KEY].astype(str).to_numpy())
        listed = listed.assign(offered=listed["stock_id"].astype(str).map(by_id).fillna(True).astype(bool).to_numpy())
    else:
        listed = listed.assign(offered=True)
    held = rendered.held.rename(columns={"reasons": "held_reasons"}).assign(listed=False, offered=False, completeness=pd.NA, missing=pd.NA)
    frames = [f for f in (listed, held) if len(f)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["stock_id", "listed", "offered", "completeness", "missing", "held_reasons"])
    return rows.assign(dealer_id=rendered.dealer_id, marketplace=rendered.marketplace)
