"""Row rules for canonical stock: errors quarantine a row, warnings let it through; both are recorded with reasons."""

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from dms_pipelines.config import Market, Validation
from dms_pipelines.kernels.arrow_text import string_buffers
from dms_pipelines.kernels.parallel import Background, threads_for
from dms_pipelines.stock.plates import IRISH_STYLE, age_identifier_for, age_identifier_start, irish_plates, plate_rule_text, plate_style
from dms_pipelines.stock.schema import CANONICAL_SCHEMA, ISSUE_COLUMNS, LIST_SEPARATOR, empty_issues
from dms_pipelines.stock.terminology import normalise_description, normalise_features

VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
# Explicit ASCII classes instead of \s and \d keep pandas on the vectorised Arrow (RE2) path.
URL = r"^https?://[^ \t\r\n/$.?#][^ \t\r\n]*$"
URL_ITEM = r"https?://[^ \t\r\n/$.?#|][^ \t\r\n|]*"
ALL_URLS = rf"^{URL_ITEM}(?:\|{URL_ITEM})*$"  # every item of an image_urls cell: URL with the separator excluded
PHONE = r"(?:\+44 ?|0)(?:[0-9][ -]?){9,10}[0-9]?"
EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PERSONAL_DATA = rf"{EMAIL}|{PHONE}"
IRISH_PHONE = r"(?:\+353 ?|0)(?:[0-9][ -]?){8,9}[0-9]"  # +353 87 123 4567, 01 234 5678
PERSONAL_DATA_BY_COUNTRY = {"GB": PERSONAL_DATA, "IE": rf"{EMAIL}|{PHONE}|{IRISH_PHONE}"}
DEFAULT_MARKET = Market()


@dataclass
class ValidationResult:
    """Rows that passed (warnings attached to issues only), every issue found, and how many rows were quarantined."""

    accepted: pd.DataFrame
    issues: pd.DataFrame
    quarantined_rows: int


class _Issues:
    def __init__(self, frame: pd.DataFrame, file_name: str):
        self.frame = frame
        self.file_name = file_name
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: pd.Series, field: str, rule: str, severity: str, message: str, values: pd.Series | None = None) -> None:
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        # only the columns an issue shows are taken, never the whole frame
        rows = np.flatnonzero(mask.to_numpy())
        index = self.frame.index[rows]
        shown = values if values is not None else self.frame[field] if field in self.frame else pd.Series("", index=index)
        shown = shown.iloc[rows] if len(shown) == len(self.frame) else shown
        self.parts.append(
            pd.DataFrame(
                {
                    "source_row": self.frame["source_row"].iloc[rows].astype("Int64"),
                    "stock_id": self.frame["stock_id"].iloc[rows].astype("string"),
                    "field": field,
                    "rule": rule,
                    "value": shown.astype("string").str.slice(0, 200),
                    "severity": severity,
                    "message": message,
                },
                index=index,
            )
        )

    def result(self) -> pd.DataFrame:
        if not self.parts:
            return empty_issues()
        return pd.concat(self.parts, ignore_index=True)[ISSUE_COLUMNS]


def _schema_issues(frame: pd.DataFrame, issues: _Issues) -> None:
    """Types, required fields and allowed values, as the Pandera model declares them."""
    try:
        CANONICAL_SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        for (column, check), group in cases.groupby(["column", "check"], dropna=False):
            index = pd.Index(group["index"].dropna().astype(int))
            mask = frame.index.isin(index)
            if check == "not_nullable":
                issues.add(pd.Series(mask, index=frame.index), column, "required", "error", f"{column} is required and empty")
            elif str(check).startswith("allowed_values"):
                issues.add(pd.Series(mask, index=frame.index), column, "allowed_values", "error", f"{column} is not one of {check.split(':', 1)[1]}")
            elif index.size:
                issues.add(pd.Series(mask, index=frame.index), str(column), "schema", "error", f"{column} fails {check}")


def _age_band(first_registration: pd.Series, year: pd.Series, today: pd.Timestamp) -> pd.Series:
    registered_year = first_registration.dt.year.astype("Float64").fillna(year.astype("Float64"))
    age = (today.year - registered_year).clip(lower=0)
    return pd.cut(age.astype(float), bins=[-1, 1, 3, 5, 8, 12, 200], labels=["0-1", "2-3", "4-5", "6-8", "9-12", "13+"]).astype("string")


def validate_stock(
    rows: pd.DataFrame,
    file_name: str,
    rules: Validation,
    today: date,
    price_reference: pd.DataFrame | None = None,
    market: Market | None = None,
) -> ValidationResult:
    """Apply every row rule to canonical `rows` (one file's worth); `price_reference` is the group's current stock; `market`
    is the dealer's (its plates, which vehicles need a registration, the odometer's unit; default: the UK's)."""
    market = market or DEFAULT_MARKET
    frame = rows.copy(deep=False)  # copy-on-write: replacing a column here never changes the caller's rows, and nothing is duplicated
    # the image URLs are checked by Arrow's regular expressions on another thread while Python's `re` expands the
    # advert shorthand below (a big export only: Arrow releases the interpreter lock, `re` does not)
    with Background(threads_for(len(frame)) > 1, check_image_urls, frame["image_urls"]) as image_checks:
        today_ts = pd.Timestamp(today)
        frame["description"] = normalise_description(frame["description"])
        frame["features"] = normalise_features(frame["features"])
        issues = _Issues(frame, file_name)
        _schema_issues(frame, issues)

        stock_id = frame["stock_id"].str.strip()
        issues.add(stock_id.notna() & stock_id.duplicated(keep=False), "stock_id", "duplicate_stock_id", "error", "stock number appears on more than one row of this export")
        vin = frame["vin"]
        issues.add(vin.notna() & vin.duplicated(keep=False), "vin", "duplicate_vin", "error", "VIN appears on more than one row of this export")
        issues.add(vin.notna() & ~vin.str.fullmatch(VIN.pattern).fillna(False).astype(bool), "vin", "vin_format", "error", "VIN must be 17 characters of A-Z (no I, O, Q) and 0-9")

        registration = frame["registration"]
        style = plate_style(registration, market.plates)
        issues.add(registration.notna() & style.isna(), "registration", "plate_format", "error", f"not {plate_rule_text(market.plates)}")
        if market.registration_required:
            needed = frame["condition"].isin(list(market.registration_required)).fillna(False)
            issues.add(registration.isna() & needed, "registration", "required", "error", f"a {' or '.join(market.registration_required)} vehicle needs its registration")
        current = style == "current"
        first_reg = frame["first_registration_date"]
        if "IE" in market.plates:
            _irish_plate_ages(frame, issues, registration.where(style == IRISH_STYLE), first_reg, today_ts)
        plate_start = age_identifier_start(registration.where(current))
        too_new = current & first_reg.notna() & plate_start.notna() & (plate_start > first_reg + pd.Timedelta(days=31))
        issues.add(too_new, "registration", "plate_age", "error", "age identifier is newer than the first registration date", registration)
        expected = age_identifier_for(first_reg)
        mismatched = current & first_reg.notna() & ~too_new & (registration.str.slice(2, 4) != expected)
        issues.add(mismatched, "registration", "plate_age_mismatch", "warning", "age identifier does not match the first registration date (a cherished plate?)", registration)

        year = frame["year"]
        max_year = today.year + rules.max_future_years
        issues.add(year.notna() & ((year < rules.min_year) | (year > max_year)), "year", "year_range", "error", f"year outside {rules.min_year}-{max_year}")
        issues.add(first_reg.notna() & (first_reg > today_ts), "first_registration_date", "date_range", "error", "first registered in the future")
        issues.add(first_reg.notna() & (first_reg < pd.Timestamp(rules.min_year, 1, 1)), "first_registration_date", "date_range", "error", f"first registered before {rules.min_year}")
        issues.add(frame["date_in_stock"] > today_ts + pd.Timedelta(days=1), "date_in_stock", "date_range", "warning", "in stock from a future date")

        mileage = frame["mileage"]  # the odometer, in the market's unit (so is max_mileage)
        unit = "" if market.distance_unit == "miles" else f" {market.distance_unit}"
        issues.add(mileage < 0, "mileage", "mileage_negative", "error", "mileage is negative")
        if rules.max_mileage:  # a price in the mileage column (swapped headers), a slipped digit
            issues.add(mileage > rules.max_mileage, "mileage", "mileage_too_high", "error", f"mileage above {rules.max_mileage:,}{unit}")
        implausible = mileage.notna() & (mileage.astype("Float64") > (age_in_years(first_reg, year, today_ts) + 1) * market.mileage_per_year)
        issues.add(implausible, "mileage", "mileage_implausible", "warning", f"more than {market.mileage_per_year:,} {market.distance_unit} a year")

        price = frame["price"]
        issues.add(price.notna() & (price <= 0), "price", "price_not_positive", "error", "price must be above zero")
        too_high = (price > (rules.max_price or np.inf)).fillna(False)  # a placeholder such as 99,999,999, or a swapped column
        issues.add(too_high, "price", "price_too_high", "error", f"price above {rules.max_price or 0:,.0f}")
        placeholder = price.isin(rules.placeholder_prices).fillna(False)
        issues.add(placeholder, "price", "placeholder_price", "error", "placeholder price (" + ", ".join(f"{p:g}" for p in rules.placeholder_prices) + ")")
        _price_outliers(frame, issues, rules, today_ts, price_reference, exclude=placeholder | too_high)

        image_count, bad_url_rows = image_checks.result()
    issues.add(
        frame["status"].isin(["available", "reserved"]).fillna(False) & (image_count < rules.min_images),
        "image_urls",
        "too_few_images",
        "warning",
        f"fewer than {rules.min_images} images",
        image_count.astype("string"),
    )
    issues.add(pd.Series(frame.index.isin(frame.index[bad_url_rows].unique()), index=frame.index), "image_urls", "image_url", "warning", "an image URL is not a well-formed http(s) URL")

    personal_data = PERSONAL_DATA_BY_COUNTRY.get(market.country, PERSONAL_DATA)
    personal = frame["description"].str.contains(personal_data, regex=True).fillna(False)
    if personal.any():  # only these rows can change
        rows = np.flatnonzero(personal.to_numpy(dtype=bool))
        description = frame["description"].copy()
        description.iloc[rows] = description.iloc[rows].str.replace(personal_data, "[removed]", regex=True).to_numpy()
        frame["description"] = description
    # the recorded value is the masked text: quarantine rows must not become a copy of the personal data
    issues.add(personal, "description", "personal_data", "warning", "description contained a phone number or e-mail address; removed", frame["description"].str.slice(0, 80))

    found = issues.result()
    found["message"] = file_name + ": row " + found["source_row"].astype("string").fillna("?") + ": " + found["field"].fillna("") + ": " + found["message"]
    error_rows = set(found.loc[found["severity"] == "error", "source_row"].dropna().astype(int))
    rejected = frame["source_row"].isin(error_rows).fillna(False).astype(bool)
    return ValidationResult(kept_rows(frame, ~rejected.to_numpy()), found, int(rejected.sum()))


def age_in_years(first_registration: pd.Series, year: pd.Series, today_ts: pd.Timestamp) -> pd.Series:
    """Each vehicle's age for the mileage rule: from its first registration, else from its model year (today's year less
    it), never below 0; 0 when it has neither."""
    registered = (today_ts - first_registration).dt.days / 365.25
    by_model_year = today_ts.year - year.astype("Float64")
    return registered.astype("Float64").fillna(by_model_year).clip(lower=0).fillna(0)


def _irish_plate_ages(frame: pd.DataFrame, issues: _Issues, irish: pd.Series, first_reg: pd.Series, today_ts: pd.Timestamp) -> None:
    """An Irish plate's year: never after today (an error); against the first registration, where a later plate is an error
    and another year or half a warning; against the model year, only a warning when they are more than a year apart."""
    if not irish.notna().any():
        return
    plates = irish_plates(irish)
    start, plate_year = plates["start"], plates["year"]
    future = plates["valid"] & (start > today_ts)
    issues.add(future, "registration", "plate_age", "error", "the plate's year is in the future", irish)
    known = plates["valid"] & ~future & first_reg.notna()
    too_new = known & (start > first_reg + pd.Timedelta(days=31))
    issues.add(too_new, "registration", "plate_age", "error", "the plate's year is after the first registration date", irish)
    registered_half = pd.Series(np.where(first_reg.dt.month > 6, 2, 1), index=frame.index)
    other_period = (plate_year != first_reg.dt.year) | (plates["half"].notna() & (plates["half"] != registered_half))
    issues.add(known & ~too_new & other_period, "registration", "plate_age_mismatch", "warning", "the plate's year does not match the first registration date", irish)
    model_year = frame["year"].astype("Float64")
    far = plates["valid"] & ~future & first_reg.isna() & model_year.notna() & ((plate_year.astype("Float64") - model_year).abs() > 1)
    issues.add(far, "registration", "plate_age_mismatch", "warning", "the plate's year is more than a year from the model year", irish)


def kept_rows(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The rows where `keep` is true, in stock-number order (stable), renumbered from 0.

    Taken once, in the order the stock is kept in (stock/merge.py), so that merging a full export copies nothing more.
    Column by column; a column already in order is filtered chunk by chunk (a row take would first concatenate every
    chunk of the image URLs into one copy).
    """
    positions = np.flatnonzero(keep)
    ids = pyarrow.array(frame["stock_id"].array)
    order = pc.sort_indices(ids.take(pyarrow.array(positions)) if len(positions) < len(frame) else ids).to_numpy()
    in_order = np.array_equal(order, np.arange(len(order)))
    if in_order and len(positions) == len(frame):
        return frame.reset_index(drop=True)
    if not frame.columns.is_unique:
        return frame.iloc[positions[order]].reset_index(drop=True)
    if in_order:
        columns = {name: frame[name].array[keep] for name in frame.columns}
    else:
        rows = positions[order]
        columns = {name: frame[name].array.take(rows) for name in frame.columns}
    kept = pd.DataFrame(columns, index=pd.RangeIndex(len(positions)))
    kept.columns = frame.columns
    return kept


def check_image_urls(image_urls: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """How many images each row lists, and the positions of rows with an image URL that is not a well-formed one."""
    images = image_urls.fillna("")
    if not (isinstance(images.dtype, pd.StringDtype) and images.dtype.storage == "pyarrow"):
        image_count = images.str.count(re.escape(LIST_SEPARATOR)).add(1).where(images != "", 0)
        exploded = images.reset_index(drop=True)
        exploded = exploded[exploded != ""].str.split(LIST_SEPARATOR).explode()
        return image_count, np.unique(exploded[~exploded.str.match(URL)].index.to_numpy())
    cells = pyarrow.array(images.array)
    cells = cells if isinstance(cells, pyarrow.ChunkedArray) else pyarrow.chunked_array([cells])
    present = pc.not_equal(cells, "").to_numpy()
    counts = np.concatenate([_separator_counts(chunk) for chunk in cells.chunks]) if cells.num_chunks else np.zeros(0, dtype=np.int64)
    image_count = pd.Series(np.where(present, counts + 1, 0), index=images.index, dtype="Int64")
    # A whole cell is checked at once (every item a URL) instead of exploding it. pandas matched the exploded URLs
    # with Python's re, whose $ also matches before a final newline: RE2 decides every cell without a newline alike,
    # and a cell with one never matches ALL_URLS, so Python's re looks again at the items of the cells RE2 refused.
    well_formed = pc.match_substring_regex(cells, ALL_URLS).to_numpy()
    refused = np.flatnonzero(present & ~well_formed)
    if refused.size:
        pattern = re.compile(URL)
        for row, cell in zip(refused, cells.take(pyarrow.array(refused)).to_pylist()):
            if "\n" in cell:
                well_formed[row] = all(pattern.match(url) for url in cell.split(LIST_SEPARATOR))
    return image_count, np.flatnonzero(present & ~well_formed)


def _separator_counts(cells: pyarrow.Array) -> np.ndarray:
    """How many LIST_SEPARATOR characters each string holds, counted on the UTF-8 bytes (the separator is ASCII)."""
    offsets, data = string_buffers(cells)
    found = np.flatnonzero(data[offsets[0] : offsets[-1]] == ord(LIST_SEPARATOR)) + offsets[0]
    return np.diff(np.searchsorted(found, offsets))


def _price_outliers(frame, issues: _Issues, rules: Validation, today_ts, reference, exclude) -> None:
    """Prices far below the group's median for the same make, model and age band (a slipped digit)."""
    if rules.price_outlier_share <= 0:
        return

    def keyed(data: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "make": data["make"].str.lower(),
                "model": data["model"].str.lower(),
                "band": _age_band(data["first_registration_date"], data["year"], today_ts),
                "price": data["price"].astype("Float64"),
            },
            index=data.index,
        )

    own = keyed(frame)
    pool = own[~exclude] if reference is None or reference.empty else pd.concat([keyed(reference), own[~exclude]], ignore_index=True)
    pool = pool.dropna()
    pool = pool[pool["price"] > 0]
    if pool.empty:
        return
    stats = pool.groupby(["make", "model", "band"])["price"].agg(["median", "count"]).reset_index()
    stats = stats[stats["count"] >= rules.price_outlier_min_peers]
    merged = own.reset_index().merge(stats, on=["make", "model", "band"], how="left").set_index("index")
    low = merged["price"].notna() & merged["median"].notna() & (merged["price"] < merged["median"] * rules.price_outlier_share)
    low = low.reindex(frame.index, fill_value=False) & ~exclude
    issues.add(low, "price", "price_outlier", "warning", f"price below {rules.price_outlier_share:.0%} of the group median for the same make, model and age")
