"""Write a dealer's imaging-service feed (CitNOW-style one row per image, AutosOnShow-style one row per vehicle) from a stock frame, with planted mistakes and the truth about them."""

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from dms_pipelines.kernels.atomic import write_bytes_atomically

LAYOUTS = ("citnow_images_csv", "autosonshow_images_csv")
TAGS = ("Exterior front", "Exterior offside", "Exterior rear", "Exterior nearside", "Interior front", "Dashboard", "Interior rear", "Boot", "Wheel", "Engine bay")
CITNOW_HEADER = ["Registration", "VIN", "StockNo", "ImageURL", "Sequence", "MediaType", "ImageTag", "CapturedDate", "Branch", "Photographer"]
AUTOSONSHOW_HEADER = ["VehicleRef", "RegNo", "Chassis", "PhotoUrls", "LastModified", "PhotoCount", "Status"]
DEFAULT_AT = datetime(2024, 5, 1, 6, 0, tzinfo=timezone.utc)


@dataclass
class SampleImagingFeed:
    """The files written and the planted truth (for prefer="imaging"; with prefer="dms" every vehicle with a DMS list uses it).

    images: the photographs as the feed carries them (canonical columns; stock_id, vin, registration as written, missing
    where a row leaves them out) plus owner, the stock record each row is truly of."""

    paths: dict[str, Path]
    images: pd.DataFrame
    photos_of_another_vehicle: dict[str, str] = field(default_factory=dict)  # stock id A -> stock id B whose registration A's set carries
    shared_image_url: dict[str, tuple[str, str]] = field(default_factory=dict)  # URL -> (the vehicle it was taken of, the other vehicle carrying it)
    without_imaging: list[str] = field(default_factory=list)  # no imaging set: the DMS's list is the fallback
    matched_by_vin: list[str] = field(default_factory=list)  # rows without a stock number, matched by VIN
    matched_by_registration: list[str] = field(default_factory=list)  # rows without stock number and VIN, matched by a spaced, lower-case plate
    videos: int = 0  # CitNOW video rows, skipped by the profile


def imaging_feed_name(layout: str, dealer_id: str, at: datetime) -> str:
    """The file name the layout's profile takes (files.full)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown imaging layout {layout!r}; one of {', '.join(LAYOUTS)}")
    prefix = "citnow" if layout == "citnow_images_csv" else "autosonshow"
    return f"{prefix}_{dealer_id}_{at:%Y%m%d_%H%M%S}.csv"


def _unique(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.upper().str.replace(" ", "", regex=False)
    return text.notna() & ~text.duplicated(keep=False)


def _spaced(plate: str) -> str:
    """A current-style plate as people write it (AB12 CDE); others as they are."""
    return f"{plate[:4]} {plate[4:]}" if isinstance(plate, str) and len(plate) == 7 else plate


def write_imaging_feed(
    stock: pd.DataFrame,
    dealer_id: str,
    folder: Path,
    base_url: str,
    seed: int = 7,
    at: datetime = DEFAULT_AT,
    layouts: tuple[str, ...] = LAYOUTS,
    misfiled: int = 2,
    shared: int = 1,
    without_share: float = 0.1,
) -> SampleImagingFeed:
    """The imaging feed of `stock` (stock_id, vin, registration) in each of `layouts` (the same photographs in each), under
    `folder`, images at f"{base_url}/citnow/{dealer_id}/{stock_id}/{n:02d}.jpg". Planted: `misfiled` vehicles whose set
    carries another vehicle's registration, `shared` URLs repeated on a second vehicle, about `without_share` of the
    vehicles without a set, a few rows naming their vehicle by VIN or by plate alone, and (CitNOW) a video per tenth vehicle."""
    rng = np.random.default_rng(seed)
    base_url = base_url.rstrip("/")
    frame = stock.reset_index(drop=True)
    ids = frame["stock_id"].astype("string")
    eligible = np.flatnonzero(ids.notna().to_numpy() & ~ids.duplicated(keep=False).to_numpy())
    unique_plate = _unique(frame["registration"]).to_numpy() if "registration" in frame else np.zeros(len(frame), dtype=bool)
    unique_vin = _unique(frame["vin"]).to_numpy() if "vin" in frame else np.zeros(len(frame), dtype=bool)
    order = rng.permutation(eligible)
    without_count = min(len(order), max(1, int(round(len(order) * without_share)))) if len(order) > 4 else 0
    without, rest = order[:without_count], order[without_count:]

    plated = [row for row in rest if unique_plate[row]]
    wrong = plated[:misfiled]
    owners = [row for row in plated[misfiled:] if row not in wrong][:misfiled]
    wrong = wrong[: len(owners)]
    taken = set(wrong) | set(owners)
    free = [row for row in rest if row not in taken]
    pairs = [(free[2 * index], free[2 * index + 1]) for index in range(min(shared, len(free) // 2))]
    taken |= {row for pair in pairs for row in pair}
    free = [row for row in free if row not in taken]
    by_vin = [row for row in free if unique_vin[row]][:2]
    by_plate = [row for row in free if unique_plate[row] and row not in by_vin][:2]

    counts = rng.integers(6, 16, len(frame))
    rows = []
    for row in sorted(rest):
        stock_id = str(ids.iloc[row])
        vin = frame["vin"].iloc[row] if "vin" in frame else None
        plate = frame["registration"].iloc[row] if "registration" in frame else None
        named_id, named_vin, named_plate = stock_id, vin, plate
        if row in wrong:
            named_plate = frame["registration"].iloc[owners[wrong.index(row)]]
        if row in by_vin:
            named_id = None
        if row in by_plate:
            named_id, named_vin, named_plate = None, None, plate.lower() if isinstance(plate, str) else plate
        captured = at - timedelta(hours=int(rng.integers(1, 24 * 30)))
        for number in range(1, int(counts[row]) + 1):
            rows.append(
                {
                    "stock_id": named_id,
                    "vin": named_vin if isinstance(named_vin, str) else None,
                    "registration": named_plate if isinstance(named_plate, str) else None,
                    "image_url": f"{base_url}/citnow/{dealer_id}/{stock_id}/{number:02d}.jpg",
                    "position": number,
                    "tag": TAGS[(number - 1) % len(TAGS)],
                    "captured_at": captured,
                    "owner": stock_id,
                }
            )
    images = pd.DataFrame(rows, columns=["stock_id", "vin", "registration", "image_url", "position", "tag", "captured_at", "owner"])
    shared_urls = {}
    for donor, receiver in pairs:
        donor_id, receiver_id = str(ids.iloc[donor]), str(ids.iloc[receiver])
        url = f"{base_url}/citnow/{dealer_id}/{donor_id}/03.jpg"
        template = images[images["owner"] == receiver_id].iloc[-1].to_dict()
        images = pd.concat([images, pd.DataFrame([{**template, "image_url": url, "position": template["position"] + 1}])], ignore_index=True)
        shared_urls[url] = (donor_id, receiver_id)
    images = images.sort_values(["owner", "position"], kind="stable").reset_index(drop=True)

    folder.mkdir(parents=True, exist_ok=True)
    paths, videos = {}, 0
    for layout in layouts:
        path = folder / imaging_feed_name(layout, dealer_id, at)
        if layout == "citnow_images_csv":
            content, videos = _citnow(images, dealer_id, base_url)
        else:
            content = _autosonshow(images, at)
        write_bytes_atomically(path, content)
        paths[layout] = path
    truth = SampleImagingFeed(paths, images.astype({"stock_id": "string", "vin": "string", "registration": "string", "image_url": "string", "tag": "string", "owner": "string"}))
    truth.photos_of_another_vehicle = {str(ids.iloc[a]): str(ids.iloc[b]) for a, b in zip(wrong, owners)}
    truth.shared_image_url = shared_urls
    truth.without_imaging = sorted(str(ids.iloc[row]) for row in without)
    truth.matched_by_vin = sorted(str(ids.iloc[row]) for row in by_vin)
    truth.matched_by_registration = sorted(str(ids.iloc[row]) for row in by_plate)
    truth.videos = videos
    return truth


def _text(value) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _csv(header: list[str], records: list[list]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue().encode("utf-8")


def _citnow(images: pd.DataFrame, dealer_id: str, base_url: str) -> tuple[bytes, int]:
    records, videos = [], 0
    for owner, group in images.groupby("owner", sort=True):
        for image in group.itertuples(index=False):
            records.append(
                [
                    _text(_spaced(image.registration)),
                    _text(image.vin),
                    _text(image.stock_id),
                    image.image_url,
                    image.position,
                    "Photo",
                    image.tag,
                    f"{image.captured_at:%d/%m/%Y %H:%M}",
                    dealer_id.title(),
                    "J. Smith",
                ]
            )
        if sum(map(ord, str(owner))) % 10 == 0:  # a walkaround video for some vehicles: the profile skips it
            first = group.iloc[0]
            records.append(
                [
                    _text(_spaced(first.registration)),
                    _text(first.vin),
                    _text(first.stock_id),
                    f"{base_url}/citnow/{dealer_id}/{owner}/walkaround.mp4",
                    "",
                    "Video",
                    "",
                    f"{first.captured_at:%d/%m/%Y %H:%M}",
                    dealer_id.title(),
                    "",
                ]
            )
            videos += 1
    return _csv(CITNOW_HEADER, records), videos


def _autosonshow(images: pd.DataFrame, at: datetime) -> bytes:
    records = []
    for _, group in images.groupby("owner", sort=True):
        first = group.iloc[0]
        urls = ";".join(group.sort_values("position", kind="stable")["image_url"])
        records.append([_text(first.stock_id), _text(first.registration), _text(first.vin), urls, f"{group['captured_at'].max():%Y-%m-%dT%H:%M:%SZ}", len(group), "Live"])
    return _csv(AUTOSONSHOW_HEADER, records)
