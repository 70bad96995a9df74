"""Which photographs each vehicle gets: imaging-feed rows matched to stock (stock number, else VIN, else registration), the source chosen per vehicle, and the sets that belong to another vehicle flagged."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.kernels.arrow_text import arrow_strings, holds_any_byte
from dms_pipelines.stock.schema import LIST_SEPARATOR

SOURCES = ("imaging", "dms", "none")
PREFERENCES = ("imaging", "dms")
IMAGE_COLUMNS = ["stock_id", "position", "url", "source", "shared_with"]
PER_VEHICLE_COLUMNS = ["stock_id", "source", "image_count", "imaging_images", "dms_images", "flags"]
FLAG_COLUMNS = ["stock_id", "flag", "reason", "other_stock_id", "url"]
UNMATCHED_COLUMNS = ["stock_id", "vin", "registration", "image_url"]
OTHERS_NAMED = 3  # a URL on many vehicles (a placeholder image) names this many others, then a count
NO_VEHICLE = -1
VEHICLE_LIMIT = 1 << 20  # up to this many vehicles, a feed's rows are ordered by one integer key (beyond it, by lexsort)
POSITION_LIMIT = (1 << 12) - 1  # positions beyond it (and missing ones) sort last, by source row
ROW_LIMIT = (1 << 31) - 1


@dataclass
class ImageChoice:
    """The images chosen per vehicle, why, and what was flagged.

    images: one row per vehicle and image, sorted by stock_id then position (from 1; the first is the main image):
    stock_id, position, url, source ("imaging" | "dms"), shared_with (the other vehicles holding the same URL, else
    missing: such a URL is left out everywhere by images.rules). per_vehicle: one row per vehicle of the stock, sorted by
    stock_id: the source chosen ("imaging" | "dms" | "none"), image_count (the chosen images not shared with another
    vehicle), imaging_images and dms_images (the URLs each source lists for it; 0 for an imaging set carrying another
    vehicle's identifiers, which is not used), and the vehicle's flags (comma-joined, "" for none). flags:
    stock_id, flag, reason, other_stock_id, url. unmatched: the feed's rows that name no vehicle of the stock."""

    images: pd.DataFrame
    per_vehicle: pd.DataFrame
    flags: pd.DataFrame
    unmatched: pd.DataFrame


def list_items(values: pd.Series) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """For '|'-joined cells: each non-empty item's row (its place in `values`), the item (whitespace trimmed), and its
    place within its cell from 1; items in row order, then cell order."""
    parts = pc.split_pattern(arrow_strings(values), LIST_SEPARATOR)
    parents = pc.list_parent_indices(parts).to_numpy()
    items = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    kept = pc.fill_null(pc.not_equal(items, ""), False)
    parents, items = parents[kept.to_numpy(zero_copy_only=False)], items.filter(kept)
    return parents, items, places(parents)


def places(groups: np.ndarray) -> np.ndarray:
    """For a sorted array of group numbers, each element's place within its group, from 1."""
    if not len(groups):
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)])) + 1


def plate(values) -> pa.Array:
    """A registration or VIN as matching compares it: upper case, without whitespace; empty is missing."""
    text = pc.replace_substring(pc.utf8_upper(values), " ", "")
    if holds_any_byte(text, b"\t\n\x0b\x0c\r"):
        text = pc.replace_substring_regex(text, r"\s+", "")
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)


def _column(frame: pd.DataFrame | None, name: str, length: int) -> pd.Series:
    if frame is not None and name in frame.columns:
        return frame[name]
    return pd.Series(pd.NA, index=range(length), dtype="string")


def _trimmed(values: pd.Series) -> pa.Array:
    text = pc.utf8_trim_whitespace(arrow_strings(values))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)


def _owners(keys: pa.Array, vehicle_of_row: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The keys held by exactly one vehicle (a VIN or plate on two stock records matches neither) and, for each, that vehicle."""
    frame = pd.DataFrame({"key": pd.array(keys, dtype="string"), "vehicle": vehicle_of_row}).dropna()
    unique = frame.drop_duplicates("key", keep=False)
    return pa.array(unique["key"].to_numpy(dtype=object), type=pa.string()), unique["vehicle"].to_numpy(dtype=np.int64)


def _lookup(values: pa.Array, keys: pa.Array, owner: np.ndarray) -> np.ndarray:
    """The vehicle owning each value (NO_VEHICLE for none)."""
    found = pc.index_in(values.cast(pa.string()), value_set=keys).to_numpy(zero_copy_only=False)
    found = np.nan_to_num(found.astype(np.float64), nan=-1).astype(np.int64)
    return np.where(found >= 0, owner[np.maximum(found, 0)] if len(owner) else NO_VEHICLE, NO_VEHICLE)


def choose_images(stock: pd.DataFrame, feed: pd.DataFrame | None, prefer: str = "imaging") -> ImageChoice:
    """The images each vehicle of `stock` (stock_id, vin, registration, image_urls '|'-joined) gets, from the imaging feed
    (canonical image rows, stock.imaging_schema) or the DMS's list, as `prefer` says: "imaging" takes the vehicle's imaging set
    when it has one, else the DMS list; "dms" takes the DMS list when it is not empty, else the imaging set.

    A feed row belongs to the stock record its stock number names, else the one its VIN names, else its registration's
    (upper case, no spaces; a VIN or plate on two stock records names neither). A set with a row whose VIN or registration
    is another stock record's (photos_of_another_vehicle) is not used for its vehicle. A URL among the chosen images of two
    or more vehicles (shared_image_url) is marked shared_with on each of them. Within a set, images go by position, then
    source row, then file order; a URL repeated within one vehicle's set counts once."""
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}, not {prefer!r}")
    stock_ids = _trimmed(_column(stock, "stock_id", len(stock)))
    present = pc.is_valid(stock_ids).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(present)
    ids = stock_ids.filter(pa.array(present))
    order = pc.sort_indices(ids).to_numpy()
    vehicles, first = np.unique(ids.take(pa.array(order)).to_numpy(zero_copy_only=False).astype(object), return_index=True)
    stock_rows = rows[order[first]]  # the stock row of each vehicle (the first, should a stock number repeat)
    vehicle_ids = pa.array(vehicles.tolist(), type=pa.string())
    count = len(vehicles)
    vehicle_of_row = np.full(len(stock), NO_VEHICLE, dtype=np.int64)
    vehicle_of_row[stock_rows] = np.arange(count)

    length = 0 if feed is None else len(feed)
    feed_ids = _trimmed(_column(feed, "stock_id", length))
    feed_vins = plate(arrow_strings(_column(feed, "vin", length)))
    feed_plates = plate(arrow_strings(_column(feed, "registration", length)))
    vin_keys, vin_owner = _owners(plate(arrow_strings(_column(stock, "vin", len(stock)))), vehicle_of_row)
    plate_keys, plate_owner = _owners(plate(arrow_strings(_column(stock, "registration", len(stock)))), vehicle_of_row)
    by_id = _lookup(feed_ids, vehicle_ids, np.arange(count))
    by_vin = _lookup(feed_vins, vin_keys, vin_owner)
    by_plate = _lookup(feed_plates, plate_keys, plate_owner)
    matched = np.where(by_id >= 0, by_id, np.where(by_vin >= 0, by_vin, by_plate))
    vin_other = (by_vin >= 0) & (by_vin != matched) & (matched >= 0)
    plate_other = (by_plate >= 0) & (by_plate != matched) & (matched >= 0) & ~vin_other
    conflict = vin_other | plate_other
    owner_named = np.where(vin_other, by_vin, by_plate)
    misfiled = np.zeros(count, dtype=bool)
    misfiled[matched[conflict]] = True

    imaging_vehicle, imaging_place, imaging_urls = _feed_images(feed, matched, misfiled)
    parents, dms_urls, dms_place = list_items(_column(stock, "image_urls", len(stock)))
    dms_vehicle = vehicle_of_row[parents]
    imaging_count = np.bincount(imaging_vehicle, minlength=count)
    dms_count = np.bincount(dms_vehicle[dms_vehicle >= 0], minlength=count)
    if prefer == "imaging":
        source = np.where(imaging_count > 0, 0, np.where(dms_count > 0, 1, 2))
    else:
        source = np.where(dms_count > 0, 1, np.where(imaging_count > 0, 0, 2))

    take_imaging = source[imaging_vehicle] == 0
    take_dms = (dms_vehicle >= 0) & (source[np.maximum(dms_vehicle, 0)] == 1)
    chosen_vehicle = np.concatenate([imaging_vehicle[take_imaging], dms_vehicle[take_dms]])
    chosen_place = np.concatenate([imaging_place[take_imaging], dms_place[take_dms]])
    chosen_source = np.concatenate([np.zeros(int(take_imaging.sum()), dtype=np.int8), np.ones(int(take_dms.sum()), dtype=np.int8)])
    chosen_urls = pa.concat_arrays([imaging_urls.filter(pa.array(take_imaging)).cast(pa.string()), dms_urls.filter(pa.array(take_dms)).cast(pa.string())])
    order = np.argsort((chosen_vehicle << 32) + chosen_place, kind="stable")
    chosen_vehicle, chosen_source, chosen_urls = chosen_vehicle[order], chosen_source[order], chosen_urls.take(pa.array(order))
    codes = pc.dictionary_encode(chosen_urls).indices.to_numpy(zero_copy_only=False).astype(np.int64) if len(chosen_urls) else np.zeros(0, dtype=np.int64)
    first = ~pd.Series(chosen_vehicle * (int(codes.max()) + 1 if len(codes) else 1) + codes).duplicated().to_numpy()  # a URL once per vehicle
    chosen_vehicle, chosen_source, chosen_urls, codes = chosen_vehicle[first], chosen_source[first], chosen_urls.filter(pa.array(first)), codes[first]
    shared_with, shared_flags = _shared(chosen_vehicle, chosen_urls, codes, vehicles)

    images = pd.DataFrame(
        {
            "stock_id": pd.array(vehicle_ids.take(pa.array(chosen_vehicle)), dtype="string"),
            "position": pd.array(places(chosen_vehicle), dtype="Int64"),
            "url": pd.array(chosen_urls, dtype="string"),
            "source": pd.array(pa.DictionaryArray.from_arrays(pa.array(chosen_source), pa.array(SOURCES[:2])).cast(pa.string()), dtype="string"),
            "shared_with": shared_with,
        }
    )
    usable = np.bincount(chosen_vehicle[shared_with.isna().to_numpy()], minlength=count)
    source_names = np.asarray(SOURCES, dtype=object)[source]
    another = _another_vehicle_flags(matched[conflict], owner_named[conflict], vin_other[conflict], feed_plates.filter(pa.array(conflict)), vehicles, source_names)
    flags = pd.concat([frame for frame in (another, shared_flags) if len(frame)], ignore_index=True) if len(another) or len(shared_flags) else _empty_flags()
    flags = flags.astype("string").sort_values(["stock_id", "flag", "url", "other_stock_id", "reason"], kind="stable", na_position="first").reset_index(drop=True)[FLAG_COLUMNS]
    per_vehicle = pd.DataFrame(
        {
            "stock_id": pd.array(vehicle_ids, dtype="string"),
            "source": pd.array(source_names, dtype="string"),
            "image_count": usable.astype(np.int64),
            "imaging_images": imaging_count.astype(np.int64),
            "dms_images": dms_count.astype(np.int64),
            "flags": pd.array(_flag_lists(flags, vehicles), dtype="string"),
        }
    )
    unmatched_rows = np.flatnonzero(matched < 0)
    unmatched = pd.DataFrame({name: _column(feed, name, length).iloc[unmatched_rows].astype("string").to_numpy() for name in UNMATCHED_COLUMNS}) if length else pd.DataFrame(columns=UNMATCHED_COLUMNS)
    return ImageChoice(images, per_vehicle, flags, unmatched.astype("string").reset_index(drop=True))


def _feed_images(feed: pd.DataFrame | None, matched: np.ndarray, misfiled: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """The usable imaging rows (matched, their vehicle's set not misfiled) as (vehicle, place, url), by vehicle, then
    position, then source row, then file order."""
    if feed is None or not len(feed):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), pa.array([], type=pa.string())
    urls = _trimmed(_column(feed, "image_url", len(feed)))
    keep = (matched >= 0) & ~np.r_[misfiled, False][matched] & pc.is_valid(urls).to_numpy(zero_copy_only=False)  # NO_VEHICLE reads the False
    at = np.flatnonzero(keep)
    # one sort key: vehicle (bits 43-62), position (bits 31-42, missing last), source row (bits 0-30, missing last)
    position = np.clip(_column(feed, "position", len(feed)).astype("Float64").to_numpy(dtype=np.float64, na_value=np.inf)[at], 0, POSITION_LIMIT).astype(np.int64)
    source_row = np.clip(_column(feed, "source_row", len(feed)).astype("Float64").to_numpy(dtype=np.float64, na_value=np.inf)[at], 0, ROW_LIMIT).astype(np.int64)
    if len(misfiled) < VEHICLE_LIMIT:
        at = at[np.argsort((matched[at] << 43) + (position << 31) + source_row, kind="stable")]
    else:
        at = at[np.lexsort((np.arange(len(at)), source_row, position, matched[at]))]
    return matched[at], np.arange(len(at), dtype=np.int64), urls.take(pa.array(at))


def _named(others: list[str]) -> str:
    if len(others) <= OTHERS_NAMED:
        return ", ".join(others)
    return f"{', '.join(others[:OTHERS_NAMED])} and {len(others) - OTHERS_NAMED} more"


def _shared(vehicle: np.ndarray, urls: pa.Array, codes: np.ndarray, vehicles: np.ndarray) -> tuple[pd.Series, pd.DataFrame]:
    """For each chosen image (each URL once per vehicle; `codes` number the URLs), the other vehicles whose chosen images
    hold the same URL (missing when none), and one shared_image_url flag per vehicle and URL."""
    holders = np.bincount(codes, minlength=1)[codes] if len(codes) else codes
    shared_at = np.flatnonzero(holders > 1)
    shared_with = np.full(len(vehicle), None, dtype=object)
    if not len(shared_at):
        return pd.Series(pd.array(shared_with, dtype="string")), _empty_flags()
    order = shared_at[np.lexsort((vehicle[shared_at], codes[shared_at]))]
    group_codes = codes[order]
    bounds = np.flatnonzero(np.r_[True, group_codes[1:] != group_codes[:-1], True])
    rows = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        members = order[start:end]
        names = [str(vehicles[v]) for v in vehicle[members]]
        url = urls[int(members[0])].as_py()
        for at, name in zip(members, names):
            others = [other for other in names if other != name]
            text = _named(others)
            shared_with[at] = text
            rows.append({"stock_id": name, "flag": "shared_image_url", "reason": f"image {url} is also on vehicle {text}: left out for every vehicle holding it", "other_stock_id": text, "url": url})
    return pd.Series(pd.array(shared_with, dtype="string")), pd.DataFrame(rows, columns=FLAG_COLUMNS)


def _another_vehicle_flags(named: np.ndarray, owner: np.ndarray, by_vin: np.ndarray, plates: pa.Array, vehicles: np.ndarray, source_names: np.ndarray) -> pd.DataFrame:
    """One photos_of_another_vehicle flag per vehicle and other vehicle; the VIN (personal data in the UK) is never quoted."""
    if not len(named):
        return _empty_flags()
    pairs = pd.DataFrame({"named": named, "owner": owner, "by_vin": by_vin, "plate": pd.array(plates, dtype="string")})
    pairs = pairs.sort_values(["named", "owner", "by_vin", "plate"], ascending=[True, True, False, True], kind="stable").drop_duplicates(["named", "owner"])
    rows = []
    fallback = {"dms": "it uses the DMS's images instead", "none": "it has no other images", "imaging": "it uses the imaging set instead"}
    for pair in pairs.itertuples(index=False):
        a, b = str(vehicles[pair.named]), str(vehicles[pair.owner])
        carried = "the VIN" if pair.by_vin else f"the registration {pair.plate}"
        reason = f"the imaging set for {a} carries {carried} of stock {b}: photos of {b}, not used for {a}; {fallback[source_names[pair.named]]}"
        rows.append({"stock_id": a, "flag": "photos_of_another_vehicle", "reason": reason, "other_stock_id": b, "url": None})
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)


def _flag_lists(flags: pd.DataFrame, vehicles: np.ndarray) -> np.ndarray:
    listed = flags.drop_duplicates(["stock_id", "flag"]).groupby("stock_id")["flag"].agg(lambda names: ",".join(sorted(names)))
    return listed.reindex(vehicles).fillna("").to_numpy(dtype=object)


def _empty_flags() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="string") for name in FLAG_COLUMNS})
