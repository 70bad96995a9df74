"""Each marketplace's documented image requirements and the group's own standard: which chosen images a marketplace gets (the first good one its main image), which are left out and why, and which vehicles are held back."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.images.matching import places
from dms_pipelines.kernels.arrow_text import arrow_strings

MB = 1024 * 1024
CHECK_COLUMNS = ["status", "format", "width", "height", "byte_size", "reason"]
KEPT_COLUMNS = ["stock_id", "position", "url", "source_position"]
LEFT_OUT_COLUMNS = ["stock_id", "position", "url", "reason"]
HELD_COLUMNS = ["stock_id", "good_images", "needed", "reason"]
MISSING_POSITION = 1 << 31


@dataclass(frozen=True)
class ImageRequirements:
    """What one marketplace takes (docs/images.md gives the source of every value). Formats are Pillow's names."""

    marketplace: str
    min_width: int
    min_height: int
    formats: tuple[str, ...]
    min_count: int  # the marketplace's own minimum to be listed at all
    max_count: int | None  # how many it takes (None: all); extra good ones are left out
    max_bytes: int | None
    max_pixels: int | None = None
    min_aspect: float | None = None  # width / height
    max_aspect: float | None = None
    documented: bool = True  # False: the marketplace documents nothing on images; a stated conservative default


DEFAULT_FORMATS = ("JPEG", "PNG")
DEFAULT_MAX_BYTES = 16 * MB
MARKETPLACE_IMAGE_REQUIREMENTS: dict[str, ImageRequirements] = {
    # Google vehicle ads image specification (formats, 16 MB, 100x100 minimum, 64 megapixels), image_link plus up to 10 additional_image_link.
    "google": ImageRequirements("google", 100, 100, ("JPEG", "PNG", "GIF", "BMP", "TIFF"), 1, 11, 16 * MB, max_pixels=64_000_000),
    # Meta automotive catalog: image[n].url required, at most 20; ads media requirements: 600 px wide (600x315 at 1.91:1), JPG or PNG, 30 MB.
    "meta": ImageRequirements("meta", 600, 315, ("JPEG", "PNG"), 1, 20, 30 * MB),
    # Auto Trader: at most 100 advert images (its terms); sizes and formats not documented in the stored material: the defaults.
    "autotrader": ImageRequirements("autotrader", 800, 600, DEFAULT_FORMATS, 1, 100, DEFAULT_MAX_BYTES, documented=False),
    # Carsnip: PictureRefs is a required field; nothing else documented: the defaults.
    "carsnip": ImageRequirements("carsnip", 800, 600, DEFAULT_FORMATS, 1, 20, DEFAULT_MAX_BYTES, documented=False),
    # The group's website: ours to define; every good image, WebP allowed.
    "website": ImageRequirements("website", 800, 600, ("JPEG", "PNG", "WEBP"), 1, None, DEFAULT_MAX_BYTES),
}


@dataclass
class ImageVerdict:
    """One marketplace's verdict over the chosen images.

    kept: the good images per vehicle in order, capped at max_count (stock_id, position from 1: the first is the main
    image, url, source_position: its place among the chosen); given for every vehicle, held or not. left_out: every other
    chosen image with its reason. held: the vehicles with fewer good images than max(min_count, the group's standard),
    with the reason. good_count: good images per vehicle (before the cap), every vehicle judged."""

    marketplace: str
    kept: pd.DataFrame
    left_out: pd.DataFrame
    held: pd.DataFrame
    good_count: pd.Series


def checks_frame(checks) -> pd.DataFrame:
    """The image checks as a frame indexed by URL with CHECK_COLUMNS: a frame indexed by URL (or with a url column), a
    mapping URL -> check, or checks (objects with attributes, or dicts) that carry their url. The last check of a URL wins."""
    if checks is None:
        frame = pd.DataFrame(columns=CHECK_COLUMNS, index=pd.Index([], dtype="string", name="url"))
    elif isinstance(checks, pd.DataFrame):
        frame = checks.set_index("url") if "url" in checks.columns else checks
    elif isinstance(checks, Mapping):
        frame = pd.DataFrame([_fields(check) for check in checks.values()], index=pd.Index(list(checks.keys()), name="url"), columns=CHECK_COLUMNS)
    elif isinstance(checks, Iterable):
        listed = [_fields(check, with_url=True) for check in checks]
        frame = pd.DataFrame(listed, columns=["url", *CHECK_COLUMNS]).set_index("url")
    else:
        raise TypeError(f"checks must be a DataFrame, a mapping or an iterable of checks, not {type(checks).__name__}")
    frame = frame.reindex(columns=CHECK_COLUMNS)
    return frame[~frame.index.duplicated(keep="last")]


def _fields(check, with_url: bool = False) -> dict:
    names = (["url"] if with_url else []) + CHECK_COLUMNS
    if isinstance(check, Mapping):
        return {name: check.get(name) for name in names}
    return {name: getattr(check, name, None) for name in names}


def _count_text(count: int) -> str:
    return f"{count} good image{'' if count == 1 else 's'}"


def _megabytes(value: float) -> str:
    return f"{value / MB:.1f}".removesuffix(".0")


def judge_images(
    choice_images: pd.DataFrame,
    checks,
    requirements: ImageRequirements,
    group_min_good: int,
    unchecked_is_good: bool = False,
    vehicles: Iterable[str] | None = None,
) -> ImageVerdict:
    """Which of the chosen images (stock_id, position, url, optionally shared_with; images.matching) the marketplace gets.

    An image is good when it is not shared with another vehicle, not repeated within its vehicle's set, was checked
    (`checks`: status, format, width, height, byte_size, reason per URL; an unchecked URL is good only when
    `unchecked_is_good`) with status ok, in an accepted format, at least min_width x min_height, within max_pixels,
    max_bytes and the aspect bounds; the first reason that applies is the one given. The good ones are kept in order up
    to max_count. A vehicle (of the chosen images, and of `vehicles` when given: those without any image) with fewer good
    images than max(min_count, group_min_good) is held back."""
    chosen = choice_images.reset_index(drop=True)
    codes, names = pd.factorize(chosen["stock_id"].astype("string"), sort=False)
    has_position = "position" in chosen
    position = chosen["position"].astype("Float64").fillna(MISSING_POSITION).to_numpy(dtype=np.float64).astype(np.int64) if has_position else np.arange(len(chosen))
    order = np.argsort((codes.astype(np.int64) << 32) + np.clip(position, 0, MISSING_POSITION), kind="stable")
    chosen, codes, position = chosen.iloc[order].reset_index(drop=True), codes[order], position[order]
    urls = arrow_strings(chosen["url"])
    count = len(chosen)
    reason = np.full(count, None, dtype=object)
    open_ = np.ones(count, dtype=bool)  # no reason given yet

    def give(mask: np.ndarray, text) -> None:
        """A reason for the rows in `mask` that have none yet: one string, or a function of those rows' places."""
        todo = np.flatnonzero(mask & open_)
        if len(todo):
            reason[todo] = text if isinstance(text, str) else text(todo)
            open_[todo] = False

    if "shared_with" in chosen:
        shared = chosen["shared_with"].astype("string")
        give(shared.notna().to_numpy(), lambda rows: [f"shared with vehicle {other}" for other in shared.iloc[rows]])
    url_codes = pc.dictionary_encode(urls).indices.to_numpy(zero_copy_only=False).astype(np.int64) if count else np.zeros(0, dtype=np.int64)
    repeated = pd.Series(codes.astype(np.int64) * (int(url_codes.max()) + 1 if count else 1) + url_codes).duplicated().to_numpy()
    give(repeated, "repeated within the vehicle's set")

    table = checks_frame(checks)
    at = pc.index_in(urls.cast(pa.string()), value_set=arrow_strings(pd.Series(table.index, dtype="string")).cast(pa.string())).to_numpy(zero_copy_only=False)
    at = np.nan_to_num(at.astype(np.float64), nan=-1).astype(np.int64)
    checked = at >= 0
    if not unchecked_is_good:
        give(~checked, "not checked")
    row = np.maximum(at, 0)

    def numbers(name: str) -> np.ndarray:
        values = pd.to_numeric(table[name], errors="coerce").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        return values[row] if len(values) else np.full(count, np.nan)

    def texts(name: str) -> np.ndarray:
        return table[name].astype("string").to_numpy(dtype=object, na_value=None)

    status, detail = texts("status"), texts("reason")
    ok = (table["status"].astype("string") == "ok").fillna(False).to_numpy(dtype=bool)[row] if len(table) else np.zeros(count, dtype=bool)
    give(checked & ~ok, lambda rows: [f"{status[r] or 'unknown'}: {detail[r]}" if detail[r] else f"{status[r] or 'unknown'}" for r in at[rows]])
    image_format = texts("format")
    accepted = table["format"].astype("string").str.upper().isin(requirements.formats).fillna(False).to_numpy(dtype=bool)[row] if len(table) else np.zeros(count, dtype=bool)
    give(checked & ~accepted, lambda rows: [f"format {image_format[r] or 'unknown'} not accepted" for r in at[rows]])
    width, height = numbers("width"), numbers("height")
    give(checked & (np.isnan(width) | np.isnan(height)), "size unknown")

    def size(rows: np.ndarray) -> list[str]:
        return [f"{int(w)}x{int(h)}" for w, h in zip(width[rows], height[rows])]

    with np.errstate(invalid="ignore"):
        small = (width < requirements.min_width) | (height < requirements.min_height)
        give(checked & small, lambda rows: [f"{text} below {requirements.min_width}x{requirements.min_height}" for text in size(rows)])
        if requirements.max_pixels is not None:
            give(checked & (width * height > requirements.max_pixels), lambda rows: [f"{text} above {requirements.max_pixels / 1e6:g} megapixels" for text in size(rows)])
        if requirements.max_bytes is not None:
            byte_size = numbers("byte_size")
            give(checked & (byte_size > requirements.max_bytes), lambda rows: [f"{_megabytes(value)} MB above {_megabytes(requirements.max_bytes)} MB" for value in byte_size[rows]])
        if requirements.min_aspect is not None or requirements.max_aspect is not None:
            aspect = width / height
            low, high = requirements.min_aspect or 0.0, requirements.max_aspect or np.inf
            give(checked & ((aspect < low) | (aspect > high)), lambda rows: [f"aspect ratio {value:.2f} outside {low:g} to {high:g}" for value in aspect[rows]])

    good = open_.copy()
    rank = np.zeros(count, dtype=np.int64)
    rank[good] = places(codes[good])
    if requirements.max_count is not None:
        give(good & (rank > requirements.max_count), f"beyond {requirements.marketplace}'s limit of {requirements.max_count} images")

    ids = arrow_strings(chosen["stock_id"])
    source_position = pd.array(chosen["position"].astype("Int64") if has_position else position, dtype="Int64")
    kept = pd.DataFrame(
        {
            "stock_id": pd.array(ids.filter(pa.array(open_)), dtype="string"),
            "position": pd.array(rank[open_], dtype="Int64"),
            "url": pd.array(urls.filter(pa.array(open_)), dtype="string"),
            "source_position": source_position[open_],
        }
    )
    out = ~open_
    left_out = pd.DataFrame(
        {
            "stock_id": pd.array(ids.filter(pa.array(out)), dtype="string"),
            "position": source_position[out],
            "url": pd.array(urls.filter(pa.array(out)), dtype="string"),
            "reason": pd.array(reason[out], dtype="string"),
        }
    )

    everyone = pd.Index(names.astype("string"))
    if vehicles is not None:
        everyone = everyone.append(pd.Index(list(vehicles), dtype="string").difference(everyone))
    good_count = pd.Series(np.bincount(codes[good], minlength=len(names)), index=pd.Index(names.astype("string"), name="stock_id")).reindex(everyone, fill_value=0).astype(np.int64)
    good_count.index.name = "stock_id"
    return ImageVerdict(requirements.marketplace, kept, left_out, _held(good_count, requirements, group_min_good), good_count.rename("good_images"))


def _held(good_count: pd.Series, requirements: ImageRequirements, group_min_good: int) -> pd.DataFrame:
    needed = max(requirements.min_count, group_min_good)
    short = good_count[good_count < needed]
    reasons = [
        f"{_count_text(int(value))}, {requirements.marketplace} needs at least {requirements.min_count}"
        if value < requirements.min_count
        else f"{_count_text(int(value))}, the group's standard is {group_min_good}"
        for value in short.to_numpy()
    ]
    held = pd.DataFrame({"stock_id": short.index.astype("string"), "good_images": short.to_numpy(dtype=np.int64), "needed": needed, "reason": reasons}, columns=HELD_COLUMNS)
    return held.astype({"stock_id": "string", "reason": "string"}).reset_index(drop=True)


def image_completeness(good_count, wanted: int):
    """The image part of a listing's completeness: good images counted up to `wanted`, as a share (1.0 when none are
    wanted); a number for a number, a Series for a Series."""
    if wanted <= 0:
        return 1.0 if np.isscalar(good_count) else pd.Series(1.0, index=getattr(good_count, "index", None))
    share = np.minimum(np.maximum(good_count, 0), wanted) / wanted
    return float(share) if np.isscalar(good_count) else share.astype(float)
