"""Per-marketplace image rules: every requirement documented with its source, each reason an image is left out, the held vehicles, and properties of the verdict."""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.config import ImageSettings
from dms_pipelines.images.rules import MARKETPLACE_IMAGE_REQUIREMENTS, ImageRequirements, image_completeness, judge_images
from dms_pipelines.marketplaces.registry import builtin_specs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "images.md"
GOOGLE = MARKETPLACE_IMAGE_REQUIREMENTS["google"]
SMALL = ImageRequirements("tiny", 800, 600, ("JPEG", "PNG"), 2, 3, 1_000_000, max_pixels=20_000_000, min_aspect=1.0, max_aspect=2.0)


def chosen(rows: list[tuple]) -> pd.DataFrame:
    """(stock_id, position, url[, shared_with]) rows as choose_images gives them."""
    frame = pd.DataFrame([row + (None,) * (4 - len(row)) for row in rows], columns=["stock_id", "position", "url", "shared_with"])
    return frame.astype({"stock_id": "string", "position": "Int64", "url": "string", "shared_with": "string"})


def checks(rows: dict[str, tuple]) -> pd.DataFrame:
    """url -> (status, format, width, height, byte_size, reason)."""
    return pd.DataFrame.from_dict(rows, orient="index", columns=["status", "format", "width", "height", "byte_size", "reason"]).rename_axis("url")


GOOD = ("ok", "JPEG", 1024, 768, 200_000, None)


def test_every_marketplace_has_requirements_documented_with_their_sources():
    assert set(MARKETPLACE_IMAGE_REQUIREMENTS) == set(builtin_specs())
    text = DOCS.read_text(encoding="utf-8")
    for heading in ("## Sources", "## Matching", "## Rules"):
        assert heading in text
    rows = {match.group(1): match.group(0) for match in re.finditer(r"^\| `([a-z]+)` \|.*$", text, flags=re.M) if match.group(1) in MARKETPLACE_IMAGE_REQUIREMENTS}
    assert set(rows) == set(MARKETPLACE_IMAGE_REQUIREMENTS)
    for name, requirements in MARKETPLACE_IMAGE_REQUIREMENTS.items():
        assert requirements.marketplace == name
        row = rows[name]
        assert f"{requirements.min_width} x {requirements.min_height}" in row and all(image_format in row for image_format in requirements.formats)
        assert ("*(default)*" in row) == (not requirements.documented)
        if requirements.documented and name != "website":
            assert "https://" in row  # the source of each documented value
        if not requirements.documented:
            assert "not documented" in row or "nothing else on images is documented" in row
    assert (GOOGLE.max_count, GOOGLE.max_bytes, MARKETPLACE_IMAGE_REQUIREMENTS["meta"].max_count) == (11, 16 * 1024 * 1024, 20)


def test_each_reason_for_leaving_an_image_out_and_the_order_of_the_kept_ones():
    images = chosen(
        [
            ("A", 1, "https://i/shared.jpg", "B"),
            ("A", 2, "https://i/a1.jpg"),
            ("A", 3, "https://i/unchecked.jpg"),
            ("A", 4, "https://i/down.jpg"),
            ("A", 5, "https://i/anim.gif"),
            ("A", 6, "https://i/small.jpg"),
            ("A", 7, "https://i/huge.jpg"),
            ("A", 8, "https://i/heavy.jpg"),
            ("A", 9, "https://i/a1.jpg"),
            ("A", 10, "https://i/tall.jpg"),
            ("A", 11, "https://i/a2.jpg"),
            ("A", 12, "https://i/nosize.png"),
            ("A", 13, "https://i/a3.jpg"),
            ("A", 14, "https://i/a4.jpg"),
        ]
    )
    table = checks(
        {
            "https://i/shared.jpg": GOOD,
            "https://i/a1.jpg": GOOD,
            "https://i/down.jpg": ("unreachable", None, None, None, None, "connection refused"),
            "https://i/anim.gif": ("ok", "GIF", 1024, 768, 1000, None),
            "https://i/small.jpg": ("ok", "JPEG", 640, 360, 1000, None),
            "https://i/huge.jpg": ("ok", "JPEG", 6000, 4000, 1000, None),
            "https://i/heavy.jpg": ("ok", "PNG", 1024, 768, 2_500_000, None),
            "https://i/tall.jpg": ("ok", "JPEG", 900, 1200, 1000, None),
            "https://i/a2.jpg": GOOD,
            "https://i/nosize.png": ("ok", "PNG", None, 700, 1000, None),
            "https://i/a3.jpg": ("ok", "jpeg", 800, 600, 1_000_000, None),
            "https://i/a4.jpg": GOOD,
        }
    )
    verdict = judge_images(images, table, SMALL, group_min_good=0)
    assert verdict.kept[["stock_id", "position", "url", "source_position"]].values.tolist() == [["A", 1, "https://i/a1.jpg", 2], ["A", 2, "https://i/a2.jpg", 11], ["A", 3, "https://i/a3.jpg", 13]]
    assert dict(zip(verdict.left_out["url"] + "@" + verdict.left_out["position"].astype(str), verdict.left_out["reason"])) == {
        "https://i/shared.jpg@1": "shared with vehicle B",
        "https://i/unchecked.jpg@3": "not checked",
        "https://i/down.jpg@4": "unreachable: connection refused",
        "https://i/anim.gif@5": "format GIF not accepted",
        "https://i/small.jpg@6": "640x360 below 800x600",
        "https://i/huge.jpg@7": "6000x4000 above 20 megapixels",
        "https://i/heavy.jpg@8": "2.4 MB above 1 MB",
        "https://i/a1.jpg@9": "repeated within the vehicle's set",
        "https://i/tall.jpg@10": "aspect ratio 0.75 outside 1 to 2",
        "https://i/nosize.png@12": "size unknown",
        "https://i/a4.jpg@14": "beyond tiny's limit of 3 images",
    }
    assert verdict.good_count.to_dict() == {"A": 4} and verdict.held.empty
    lenient = judge_images(images, table, SMALL, group_min_good=0, unchecked_is_good=True)
    assert "https://i/unchecked.jpg" in set(lenient.kept["url"]) and lenient.good_count["A"] == 5


def test_vehicles_below_the_marketplace_minimum_or_the_group_standard_are_held_with_the_reason():
    images = chosen(
        [("A", 1, "https://i/a.jpg"), ("B", 1, "https://i/b1.jpg"), ("B", 2, "https://i/b2.jpg"), ("C", 1, "https://i/c-down.jpg"), *[("D", n, f"https://i/d{n}.jpg") for n in range(1, 7)]]
    )
    table = checks(
        {
            "https://i/a.jpg": GOOD,
            "https://i/b1.jpg": GOOD,
            "https://i/b2.jpg": GOOD,
            "https://i/c-down.jpg": ("http_error", None, None, None, None, "HTTP 404"),
            **{f"https://i/d{n}.jpg": GOOD for n in range(1, 7)},
        }
    )
    group = ImageSettings().min_good_images
    verdict = judge_images(images, table, GOOGLE, group, vehicles=["A", "B", "C", "D", "E"])
    assert verdict.held[["stock_id", "good_images", "needed", "reason"]].values.tolist() == [
        ["A", 1, 6, "1 good image, the group's standard is 6"],
        ["B", 2, 6, "2 good images, the group's standard is 6"],
        ["C", 0, 6, "0 good images, google needs at least 1"],
        ["E", 0, 6, "0 good images, google needs at least 1"],
    ]
    assert verdict.good_count.to_dict() == {"A": 1, "B": 2, "C": 0, "D": 6, "E": 0}
    assert verdict.left_out["reason"].tolist() == ["http_error: HTTP 404"]
    two = judge_images(images, table, SMALL, 0)
    assert two.held[["stock_id", "reason"]].values.tolist() == [["A", "1 good image, tiny needs at least 2"], ["C", "0 good images, tiny needs at least 2"]]


@dataclass(frozen=True)
class Check:
    url: str
    status: str
    format: str | None
    width: int | None
    height: int | None
    byte_size: int | None
    reason: str | None
    etag: str | None = None


def test_checks_may_be_objects_dicts_or_a_frame_with_a_url_column():
    images = chosen([("A", 1, "https://i/1.jpg"), ("A", 2, "https://i/2.jpg"), ("A", 3, "https://i/3.jpg")])
    table = checks({"https://i/1.jpg": GOOD, "https://i/2.jpg": ("ok", "JPEG", 320, 240, 1, None), "https://i/3.jpg": ("broken", "JPEG", None, None, 10, "truncated")})
    expected = judge_images(images, table, GOOGLE, 0)
    objects = [Check(url, *values) for url, values in zip(table.index, table.itertuples(index=False, name=None))]
    for given_checks in (objects, [vars(check) for check in objects], {check.url: check for check in objects}, table.reset_index()):
        verdict = judge_images(images, given_checks, GOOGLE, 0)
        pd.testing.assert_frame_equal(verdict.kept, expected.kept)
        pd.testing.assert_frame_equal(verdict.left_out, expected.left_out)
    assert expected.left_out["reason"].tolist() == ["broken: truncated"] and len(expected.kept) == 2  # 320x240 is above google's 100x100
    assert judge_images(images, None, GOOGLE, 0).left_out["reason"].eq("not checked").all()


def test_completeness_counts_good_images_up_to_the_wanted_number():
    assert image_completeness(3, 6) == 0.5 and image_completeness(9, 6) == 1.0 and image_completeness(0, 0) == 1.0 and image_completeness(-1, 4) == 0.0
    series = image_completeness(pd.Series([0, 2, 8], index=["a", "b", "c"]), 4)
    assert series.to_dict() == {"a": 0.0, "b": 0.5, "c": 1.0}


STATUSES = ("ok", "ok", "ok", "unreachable", "http_error", "broken", "too_large")
REQUIREMENTS = st.builds(
    ImageRequirements,
    marketplace=st.just("m"),
    min_width=st.sampled_from([100, 600, 800]),
    min_height=st.sampled_from([100, 315, 600]),
    formats=st.sampled_from([("JPEG",), ("JPEG", "PNG"), ("JPEG", "PNG", "GIF", "WEBP")]),
    min_count=st.integers(0, 4),
    max_count=st.one_of(st.none(), st.integers(1, 6)),
    max_bytes=st.one_of(st.none(), st.sampled_from([50_000, 1_000_000])),
)


@st.composite
def judged_case(draw):
    vehicles = [f"V{n}" for n in range(draw(st.integers(0, 5)))]
    urls = [f"https://i/{n}.jpg" for n in range(draw(st.integers(1, 15)))]
    rows = []
    for vehicle in vehicles:
        picked = draw(st.lists(st.sampled_from(urls), max_size=8))
        shared = draw(st.lists(st.booleans(), min_size=len(picked), max_size=len(picked)))
        rows += [(vehicle, position, url, "X" if is_shared else None) for position, (url, is_shared) in enumerate(zip(picked, shared), start=1)]
    checked = draw(st.lists(st.sampled_from(urls), unique=True))
    table = {
        url: (
            draw(st.sampled_from(STATUSES)),
            draw(st.sampled_from(["JPEG", "PNG", "GIF", None])),
            draw(st.sampled_from([300, 800, 1600, None])),
            draw(st.sampled_from([200, 600, 1200])),
            draw(st.integers(1, 2_000_000)),
            "why",
        )
        for url in checked
    }
    return chosen(rows) if rows else chosen([]), checks(table) if table else None


@settings(max_examples=200, deadline=None)
@given(case=judged_case(), requirements=REQUIREMENTS, group_min=st.integers(0, 6), unchecked_is_good=st.booleans())
def test_the_verdict_partitions_the_chosen_images_in_order_within_the_limits(case, requirements, group_min, unchecked_is_good):
    images, table = case
    verdict = judge_images(images, table, requirements, group_min, unchecked_is_good=unchecked_is_good)
    kept, left_out = verdict.kept, verdict.left_out
    key = ["stock_id", "url"]
    everything = pd.concat([kept.assign(position=kept["source_position"])[["stock_id", "position", "url"]], left_out[["stock_id", "position", "url"]]])
    assert sorted(everything.astype(str).itertuples(index=False, name=None)) == sorted(images[["stock_id", "position", "url"]].astype(str).itertuples(index=False, name=None))
    assert left_out["reason"].notna().all() and (left_out["reason"].str.len() > 0).all()
    assert not kept.duplicated(key).any() and kept["url"].isin(images.loc[images["shared_with"].isna(), "url"]).all()
    for vehicle, group in kept.groupby("stock_id"):
        assert group["source_position"].is_monotonic_increasing and group["position"].tolist() == list(range(1, len(group) + 1))
        if requirements.max_count is not None:
            assert len(group) <= requirements.max_count
    needed = max(requirements.min_count, group_min)
    counts = verdict.good_count
    assert set(counts.index) == set(images["stock_id"])
    assert set(verdict.held["stock_id"]) == set(counts[counts < needed].index)
    kept_counts = kept.groupby("stock_id").size().reindex(counts.index, fill_value=0)
    assert (kept_counts == (counts if requirements.max_count is None else np.minimum(counts, requirements.max_count))).all()
    if table is not None and len(table) and not unchecked_is_good:
        assert kept["url"].isin(table.index[table["status"] == "ok"]).all()
    if table is None and not unchecked_is_good:
        assert kept.empty and (left_out["reason"].isin(["not checked", "shared with vehicle X", "repeated within the vehicle's set"])).all()


def test_a_fully_good_set_keeps_everything_up_to_the_cap_and_the_first_good_image_leads():
    images = chosen([("A", n, f"https://i/{n}.jpg") for n in range(1, 16)])
    table = checks({f"https://i/{n}.jpg": GOOD if n != 1 else ("ok", "JPEG", 50, 50, 1, None) for n in range(1, 16)})
    verdict = judge_images(images, table, GOOGLE, 6)
    assert verdict.kept["url"].iloc[0] == "https://i/2.jpg" and len(verdict.kept) == 11
    assert verdict.left_out["reason"].tolist() == ["50x50 below 100x100", *["beyond google's limit of 11 images"] * 3]
    with pytest.raises(TypeError):
        judge_images(images, 42, GOOGLE, 6)
