"""Imaging-feed rows matched to stock and the images chosen per vehicle: every planted mistake flagged and nothing else, the fallback between sources, and properties of the choice."""

import time
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.devtools.sample.generator import sample_vehicles
from dms_pipelines.devtools.sample.imaging_feed import write_imaging_feed
from dms_pipelines.images.matching import FLAG_COLUMNS, IMAGE_COLUMNS, PER_VEHICLE_COLUMNS, choose_images
from dms_pipelines.images.rules import MARKETPLACE_IMAGE_REQUIREMENTS, judge_images
from dms_pipelines.images.sources import read_imaging_feed

BASE = "https://imaging.example"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    stock = sample_vehicles(80, "L", 1, np.random.default_rng(11), datetime(2024, 5, 1), "leeds", "Y")
    truth = write_imaging_feed(stock, "leeds", tmp_path_factory.mktemp("inbox"), BASE, seed=5, misfiled=3, shared=2)
    return stock, truth


@pytest.mark.parametrize("layout", ["citnow_images_csv", "autosonshow_images_csv"])
def test_each_planted_case_is_flagged_and_nothing_else(planted, layout):
    stock, truth = planted
    feed = read_imaging_feed(truth.paths[layout], layout, "leeds")
    choice = choose_images(stock, feed.frame, "imaging")
    flags = choice.flags
    assert list(flags.columns) == FLAG_COLUMNS and list(choice.images.columns) == IMAGE_COLUMNS and list(choice.per_vehicle.columns) == PER_VEHICLE_COLUMNS
    misfiled = flags[flags["flag"] == "photos_of_another_vehicle"]
    assert dict(zip(misfiled["stock_id"], misfiled["other_stock_id"])) == truth.photos_of_another_vehicle and len(misfiled) == 3
    plate_of = dict(zip(stock["stock_id"], stock["registration"]))
    for a, b, reason in misfiled[["stock_id", "other_stock_id", "reason"]].itertuples(index=False):
        assert reason == f"the imaging set for {a} carries the registration {plate_of[b]} of stock {b}: photos of {b}, not used for {a}; it uses the DMS's images instead"
    shared = flags[flags["flag"] == "shared_image_url"]
    expected = sorted((vehicle, url, other) for url, (donor, receiver) in truth.shared_image_url.items() for vehicle, other in ((donor, receiver), (receiver, donor)))
    assert sorted(shared[["stock_id", "url", "other_stock_id"]].itertuples(index=False, name=None)) == expected and len(expected) == 4
    assert set(flags["flag"]) == {"photos_of_another_vehicle", "shared_image_url"}

    per_vehicle = choice.per_vehicle.set_index("stock_id")
    assert per_vehicle.loc[list(truth.photos_of_another_vehicle), "source"].eq("dms").all()  # the misfiled sets: the DMS list instead
    assert per_vehicle.loc[truth.without_imaging, "source"].eq("dms").all()
    matched_alone = truth.matched_by_vin + truth.matched_by_registration
    assert len(matched_alone) == 4 and per_vehicle.loc[matched_alone, "source"].eq("imaging").all()
    others = per_vehicle.index.difference(list(truth.photos_of_another_vehicle) + truth.without_imaging)
    assert per_vehicle.loc[others, "source"].eq("imaging").all()
    owners = list(truth.photos_of_another_vehicle.values())
    assert per_vehicle.loc[owners, "source"].eq("imaging").all()  # the owner's own set is untouched
    assert choice.unmatched.empty

    images = choice.images
    expected_images = truth.images[truth.images["owner"].isin(others)]
    assert sorted(images.loc[images["source"] == "imaging", "url"]) == sorted(expected_images["image_url"])
    for vehicle in matched_alone:
        own = truth.images[truth.images["owner"] == vehicle].sort_values("position")["image_url"].tolist()
        assert images.loc[images["stock_id"] == vehicle, "url"].tolist() == own
    dms_list = dict(zip(stock["stock_id"], stock["image_urls"]))
    for vehicle in truth.without_imaging + list(truth.photos_of_another_vehicle):
        assert "|".join(images.loc[images["stock_id"] == vehicle, "url"]) == dms_list[vehicle]
    marked = images[images["shared_with"].notna()]
    assert sorted(marked[["stock_id", "url"]].itertuples(index=False, name=None)) == sorted((vehicle, url) for vehicle, url, _ in expected)
    counts = images[images["shared_with"].isna()].groupby("stock_id").size()
    assert per_vehicle["image_count"].to_dict() == counts.reindex(per_vehicle.index, fill_value=0).to_dict()
    assert per_vehicle.loc[[vehicle for vehicle, _, _ in expected], "flags"].eq("shared_image_url").all()


def test_prefer_dms_takes_the_dms_list_when_it_is_not_empty_else_the_imaging_set(planted):
    stock, truth = planted
    empty_dms = stock["stock_id"].iloc[[3, 4]].tolist()
    misfiled = next(iter(truth.photos_of_another_vehicle))
    edited = stock.assign(image_urls=stock["image_urls"].where(~stock["stock_id"].isin([*empty_dms, misfiled]), ""))
    feed = read_imaging_feed(truth.paths["citnow_images_csv"], "citnow_images_csv", "leeds")
    choice = choose_images(edited, feed.frame, "dms")
    source = choice.per_vehicle.set_index("stock_id")["source"]
    has_imaging = set(truth.images["owner"]) - set(truth.photos_of_another_vehicle)
    for vehicle in empty_dms:
        assert source[vehicle] == ("imaging" if vehicle in has_imaging else "none")
    assert source[misfiled] == "none"  # its imaging set is another vehicle's, its DMS list empty
    assert source.drop([*empty_dms, misfiled]).eq("dms").all()
    assert choice.flags["flag"].eq("photos_of_another_vehicle").all()  # DMS lists share no URL: no shared flag
    reason = choice.flags.set_index("stock_id").loc[misfiled, "reason"]
    assert reason.endswith("; it has no other images")


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({name: pd.array(values, dtype="Int64" if name in ("position", "source_row") else "string") for name, values in columns.items()})


STOCK = frame(
    stock_id=["A", "B", "C", "D", "E"],
    vin=["WBA00000000000001", "WBA00000000000002", "WBA00000000000009", "WBA00000000000009", None],
    registration=["AB12CDE", "CD34EFG", None, "GH56IJK", None],
    image_urls=["https://dms/a1.jpg|https://dms/a2.jpg", "https://dms/b1.jpg", "", "https://dms/d1.jpg| |https://dms/d1.jpg|https://dms/d2.jpg", None],
)


def test_keys_are_stock_number_then_vin_then_plate_normalised_and_an_ambiguous_vin_matches_nothing():
    feed = frame(
        stock_id=[None, None, "  ", None, None, "ZZZ"],
        vin=["wba0000000000000 2", None, None, "WBA00000000000009", None, None],
        registration=[None, "ab12 cde", "gh56ijk", None, "XX99XXX", None],
        image_url=["https://f/b.jpg", "https://f/a.jpg", "https://f/d.jpg", "https://f/cd.jpg", "https://f/x.jpg", "https://f/z.jpg"],
        position=[1, 1, 1, 1, 1, 1],
    )
    choice = choose_images(STOCK, feed, "imaging")
    got = choice.images.groupby("stock_id")["url"].apply(list).to_dict()
    assert got == {"A": ["https://f/a.jpg"], "B": ["https://f/b.jpg"], "D": ["https://f/d.jpg"]}
    assert sorted(choice.unmatched["image_url"]) == ["https://f/cd.jpg", "https://f/x.jpg", "https://f/z.jpg"]  # an ambiguous VIN, an unknown plate, an unknown stock number
    assert choice.flags.empty
    assert choice.per_vehicle.set_index("stock_id")["source"].to_dict() == {"A": "imaging", "B": "imaging", "C": "none", "D": "imaging", "E": "none"}


def test_a_set_carrying_another_vehicles_vin_is_not_used_and_the_vin_is_never_quoted():
    feed = frame(
        stock_id=["A", "A", "B"], vin=[None, "WBA00000000000002", None], registration=[None, None, None], image_url=["https://f/a1.jpg", "https://f/a2.jpg", "https://f/b1.jpg"], position=[1, 2, 1]
    )
    choice = choose_images(STOCK, feed, "imaging")
    [flag] = choice.flags.itertuples(index=False)
    assert (flag.stock_id, flag.flag, flag.other_stock_id) == ("A", "photos_of_another_vehicle", "B") and pd.isna(flag.url)
    assert flag.reason == "the imaging set for A carries the VIN of stock B: photos of B, not used for A; it uses the DMS's images instead"
    assert choice.images.loc[choice.images["stock_id"] == "A", "url"].tolist() == ["https://dms/a1.jpg", "https://dms/a2.jpg"]
    assert choice.images.loc[choice.images["stock_id"] == "B", "url"].tolist() == ["https://f/b1.jpg"]


def test_the_dms_list_is_read_in_order_without_blanks_or_repeats_and_a_shared_url_is_marked_on_every_holder():
    feed = frame(stock_id=["B", "B"], vin=[None, None], registration=[None, None], image_url=["https://dms/a2.jpg", "https://f/b2.jpg"], position=[2, 1])
    choice = choose_images(STOCK, feed, "imaging")
    images = choice.images
    assert images[["stock_id", "position", "url", "source"]].values.tolist() == [
        ["A", 1, "https://dms/a1.jpg", "dms"],
        ["A", 2, "https://dms/a2.jpg", "dms"],
        ["B", 1, "https://f/b2.jpg", "imaging"],
        ["B", 2, "https://dms/a2.jpg", "imaging"],
        ["D", 1, "https://dms/d1.jpg", "dms"],
        ["D", 2, "https://dms/d2.jpg", "dms"],
    ]
    assert images["shared_with"].fillna("").tolist() == ["", "B", "", "A", "", ""]
    shared = choice.flags
    assert shared[["stock_id", "flag", "other_stock_id", "url"]].values.tolist() == [["A", "shared_image_url", "B", "https://dms/a2.jpg"], ["B", "shared_image_url", "A", "https://dms/a2.jpg"]]
    assert shared["reason"].iloc[0] == "image https://dms/a2.jpg is also on vehicle B: left out for every vehicle holding it"
    assert choice.per_vehicle.set_index("stock_id")["image_count"].to_dict() == {"A": 1, "B": 1, "C": 0, "D": 2, "E": 0}
    with pytest.raises(ValueError, match="prefer must be one of imaging, dms"):
        choose_images(STOCK, feed, "newest")


def test_a_placeholder_url_on_many_vehicles_names_a_few_of_them():
    stock = frame(stock_id=[f"S{n}" for n in range(6)], vin=[None] * 6, registration=[None] * 6, image_urls=["https://dms/coming-soon.jpg"] * 6)
    choice = choose_images(stock, None, "imaging")
    assert choice.images["shared_with"].iloc[0] == "S1, S2, S3 and 2 more"
    assert (choice.per_vehicle["image_count"] == 0).all() and len(choice.flags) == 6


VEHICLES = st.integers(min_value=0, max_value=12)


@st.composite
def stock_and_feed(draw):
    count = draw(VEHICLES)
    ids = [f"S{n:02d}" for n in range(count)]
    plates = [draw(st.sampled_from([f"PL{n:02d}ABC", None, "DUP01AA"])) for n in range(count)]
    urls = st.sampled_from([f"https://u/{n}.jpg" for n in range(20)])
    dms = ["|".join(draw(st.lists(urls, max_size=4))) for _ in ids]
    rows = []
    for number in range(draw(st.integers(min_value=0, max_value=30))):
        stock_id = draw(st.sampled_from([*ids, None, "NOPE"])) if ids else None
        plate = draw(st.sampled_from([*[p for p in plates if p], None, "ZZ99ZZZ"])) if any(plates) else None
        rows.append({"stock_id": stock_id, "vin": None, "registration": plate, "image_url": draw(urls), "position": draw(st.integers(1, 5)), "source_row": number + 1})
    stock = frame(stock_id=ids, vin=[None] * count, registration=plates, image_urls=dms)
    feed = pd.DataFrame(rows, columns=["stock_id", "vin", "registration", "image_url", "position", "source_row"]).astype(
        {"stock_id": "string", "vin": "string", "registration": "string", "image_url": "string", "position": "Int64", "source_row": "Int64"}
    )
    return stock, feed


@settings(max_examples=150, deadline=None)
@given(data=stock_and_feed(), prefer=st.sampled_from(["imaging", "dms"]), seed=st.integers(0, 2**16))
def test_the_choice_does_not_depend_on_row_order_and_each_vehicle_takes_one_source(data, prefer, seed):
    stock, feed = data
    choice = choose_images(stock, feed, prefer)
    shuffled = choose_images(stock.sample(frac=1, random_state=seed), feed.sample(frac=1, random_state=seed + 1), prefer)
    pd.testing.assert_frame_equal(choice.images, shuffled.images)
    pd.testing.assert_frame_equal(choice.per_vehicle, shuffled.per_vehicle)
    pd.testing.assert_frame_equal(choice.flags, shuffled.flags)
    images, per_vehicle = choice.images, choice.per_vehicle.set_index("stock_id")
    assert images.groupby("stock_id")["source"].nunique().le(1).all()
    sources = images.groupby("stock_id")["source"].first()
    assert (per_vehicle.loc[sources.index, "source"] == sources).all()
    assert per_vehicle.drop(sources.index)["source"].eq("none").all()
    assert images.groupby("stock_id")["position"].apply(lambda p: p.tolist() == list(range(1, len(p) + 1))).all()
    assert not images.duplicated(["stock_id", "url"]).any()
    holders = images.groupby("url")["stock_id"].transform("nunique")
    assert (images["shared_with"].notna() == (holders > 1)).all()
    misfiled = set(choice.flags.loc[choice.flags["flag"] == "photos_of_another_vehicle", "stock_id"])
    assert set(images.loc[images["source"] == "imaging", "stock_id"]).isdisjoint(misfiled)


def test_matching_and_judging_stay_fast_at_scale():
    count, per = 30_000, 15
    ids = np.array([f"S{n:06d}" for n in range(count)], dtype=object)
    stock = frame(
        stock_id=ids, vin=[f"WBA{n:014d}" for n in range(count)], registration=[f"AB{n:06d}" for n in range(count)], image_urls=["|".join(f"https://d/{s}/{j}.jpg" for j in range(per)) for s in ids]
    )
    owner = np.repeat(np.arange(count), per)
    position = np.tile(np.arange(1, per + 1), count)
    feed = frame(stock_id=ids[owner], image_url=[f"https://i/{ids[o]}/{p}.jpg" for o, p in zip(owner, position)], position=position).sample(frac=1, random_state=1)
    started = time.perf_counter()
    choice = choose_images(stock, feed, "imaging")
    matched = time.perf_counter() - started
    checks = pd.DataFrame({"status": "ok", "format": "JPEG", "width": 1024, "height": 768, "byte_size": 200_000, "reason": None}, index=pd.Index(choice.images["url"].unique(), name="url"))
    started = time.perf_counter()
    verdict = judge_images(choice.images, checks, MARKETPLACE_IMAGE_REQUIREMENTS["google"], 6)
    judged = time.perf_counter() - started
    assert len(choice.images) == count * per and (choice.per_vehicle["source"] == "imaging").all()
    assert len(verdict.kept) == count * 11 and verdict.held.empty
    assert matched < 5 and judged < 5, f"matching {matched:.2f}s, judging {judged:.2f}s for {count * per} images"
