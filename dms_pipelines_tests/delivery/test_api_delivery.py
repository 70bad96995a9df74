"""Incremental API delivery against the stock API simulator: only changes sent, failures healed, no duplicates, reconciliation."""

import random

import pandas as pd
import pytest

from dms_pipelines.delivery import api_delivery, ledger
from dms_pipelines.delivery.diff import apply, diff
from dms_pipelines.delivery.retry import RetryPolicy, backoff_delay, call_with_retries
from dms_pipelines.delivery.stock_api import ApiError, StockApiClient
from dms_pipelines.devtools.simulator import StockApiSimulator
from dms_pipelines.marketplaces import autotrader
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.operations.db import dead_letters, engine_for
from dms_pipelines_tests.support import STATS, fixed_dealer, fixed_stock

TOKEN = "sim-token-123456"
ADVERTISER = "ADV-1"
SPEC = autotrader.SPEC


@pytest.fixture
def simulator():
    with StockApiSimulator(token=TOKEN) as sim:
        yield sim


@pytest.fixture
def engine(tmp_path):
    return engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")


def client_for(simulator, waits=None) -> StockApiClient:
    return StockApiClient(
        simulator.base_url, TOKEN, timeout=1.0, policy=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, deadline_seconds=10), sleep=(waits.append if waits is not None else lambda s: None)
    )


def items(stock: pd.DataFrame | None = None) -> pd.DataFrame:
    dealer = fixed_dealer()
    return render_for(autotrader.SPEC, fixed_stock() if stock is None else stock, dealer, dealer.marketplaces["autotrader"]).items


def by_reference(simulator) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for item in simulator.live_items(ADVERTISER):
        found.setdefault(item["metadata"]["externalStockReference"], []).append(item)
    return found


def consistent(simulator, wanted: pd.DataFrame) -> bool:
    live = by_reference(simulator)
    STATS["duplicate deliveries"] += sum(len(v) - 1 for v in live.values())
    expected = {r["external_reference"]: r["lifecycle_state"] for r in wanted.to_dict(orient="records")}
    return all(len(v) == 1 for v in live.values()) and {k: v[0]["metadata"]["lifecycleState"] for k, v in live.items()} == expected


def test_first_run_creates_every_vehicle_then_nothing_when_unchanged(simulator, engine):
    client = client_for(simulator)
    wanted = items()
    report = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    assert report.created == len(wanted) and report.calls == len(wanted)
    assert consistent(simulator, wanted)
    calls = simulator.calls
    again = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    assert again.calls == 0 and simulator.calls == calls and again.unchanged == len(wanted)


def test_item_hashes_change_with_any_field_and_only_then():
    wanted = items()
    hashes = api_delivery.item_hashes(SPEC, wanted)
    assert set(hashes) == set(wanted["external_reference"]) and len(set(hashes.values())) == len(wanted)
    assert api_delivery.item_hashes(SPEC, wanted.copy()) == hashes
    for column in ("amount_gbp", "lifecycle_state", "images", "description"):
        changed = wanted.copy()
        changed.at[0, column] = changed.at[1, column] if changed.at[1, column] != changed.at[0, column] else None
        assert api_delivery.item_hashes(SPEC, changed)[wanted.at[0, "external_reference"]] != hashes[wanted.at[0, "external_reference"]], column
    images = wanted.copy()
    lists = images["images"].tolist()
    lists[0] = list(lists[0])[:-1]
    images["images"] = pd.Series(lists, index=images.index, dtype=images["images"].dtype)
    assert api_delivery.item_hashes(SPEC, images)[wanted.at[0, "external_reference"]] != hashes[wanted.at[0, "external_reference"]]


def test_item_hashes_are_the_same_for_arrow_lists_and_python_lists():
    """Rendered items now carry Arrow list columns; the lists as Python objects (as rendered before) hash the same, so nothing is resent."""
    wanted = items()
    as_objects = wanted.assign(**{name: pd.Series([list(v) for v in wanted[name].tolist()], index=wanted.index, dtype=object) for name in ("images", "features")})
    assert isinstance(wanted["images"].dtype, pd.ArrowDtype) and as_objects["images"].dtype == object
    assert api_delivery.item_hashes(SPEC, as_objects) == api_delivery.item_hashes(SPEC, wanted)


def earlier_scheme_hash(item: dict) -> str:
    """How versions before item_hashes hashed an item: sha256 of its JSON, keys sorted."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str, separators=(",", ":")).encode("utf-8")).hexdigest()


def test_acknowledgements_under_the_old_hash_are_not_resent(simulator, engine):
    client = client_for(simulator)
    wanted = items()
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    rows = ledger.ledger_rows(engine, "autotrader", "leeds")
    for key, row in rows.items():  # as an earlier version left them: sha256 of the item as the hash
        old_hash = earlier_scheme_hash(api_delivery.desired_items(SPEC, wanted)[key])
        ledger.mark_acknowledged(engine, "autotrader", "leeds", key, old_hash, row["external_id"], row["state"], row["content"])
    calls = simulator.calls
    again = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    assert again.calls == 0 and simulator.calls == calls and again.unchanged == len(wanted)
    assert all(r["content_hash"].startswith(api_delivery.HASH_SCHEME) for r in ledger.ledger_rows(engine, "autotrader", "leeds").values())
    changed = wanted.copy()
    changed.loc[0, "amount_gbp"] = int(changed.loc[0, "amount_gbp"]) - 100
    assert api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, changed).updated == 1


def test_calls_equal_the_changed_vehicles(simulator, engine):
    client = client_for(simulator)
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    stock = fixed_stock()
    stock.loc[stock["stock_id"] == "A0001", "price"] = 11995.0
    stock.loc[stock["stock_id"] == "A0004", "status"] = "sold"
    stock = stock[stock["stock_id"] != "A0005"]
    report = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(stock))
    assert (report.updated, report.deleted, report.created) == (2, 1, 0) and report.calls == 3
    live = by_reference(simulator)
    assert live["A0001"][0]["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"] == 11995
    assert live["A0004"][0]["metadata"]["lifecycleState"] == "SOLD"
    assert live["A0004"][0]["adverts"]["retailAdverts"]["autotraderAdvert"]["status"] == "NOT_PUBLISHED"
    assert "A0005" not in live


def test_a_failing_marketplace_heals_on_the_next_run(simulator, engine):
    client = client_for(simulator)
    simulator.fail_next(40, status=503)
    STATS["faults injected"] += 1
    first = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    assert first.failed > 0 and first.dead_lettered == 0
    simulator.reset_failures()
    second = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    assert second.failed == 0 and consistent(simulator, items())


def test_rate_limits_honour_retry_after(simulator, engine):
    waits = []
    client = client_for(simulator, waits)
    simulator.rate_limit_next(1, retry_after=0.3)
    STATS["faults injected"] += 1
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    assert waits and waits[0] >= 0.3 and consistent(simulator, items())


def test_a_permanent_error_dead_letters_that_vehicle_only(simulator, engine):
    client = client_for(simulator)
    simulator.reject("A0002", status=422, message="registration YD71KPR does not match this vehicle")
    STATS["faults injected"] += 1
    report = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    assert report.dead_lettered == 1 and report.created == len(items()) - 1
    rejected = [r for r in simulator.request_log if r[2] == 422]
    assert len(rejected) == 1  # never retried
    with engine.connect() as connection:
        letters = connection.execute(dead_letters.select()).mappings().all()
    assert [(letter["item_key"], letter["http_status"]) for letter in letters] == [("A0002", 422)] and "does not match" in letters[0]["message"]
    calls = simulator.calls
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    assert simulator.calls == calls  # the same refused content is not sent again until it changes


def test_a_crash_between_sending_and_recording_creates_no_duplicate(simulator, engine):
    client = client_for(simulator)
    wanted = items()
    item = api_delivery.desired_items(SPEC, wanted)["A0001"]
    digest = api_delivery.item_hashes(SPEC, wanted)["A0001"]
    ledger.mark_pending(engine, "autotrader", "leeds", "A0001", digest)
    client.create(ADVERTISER, autotrader.create_payload(item), "different-key-from-a-crashed-process")  # sent, then the process died
    STATS["faults injected"] += 1
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    live = by_reference(simulator)
    assert len(live["A0001"]) == 1 and consistent(simulator, wanted)


def test_rerunning_with_the_same_idempotency_key_never_duplicates(simulator, engine, tmp_path):
    wanted = items()
    api_delivery.deliver(engine, client_for(simulator), SPEC, "leeds", ADVERTISER, wanted)
    other_engine = engine_for(f"sqlite:///{tmp_path / 'lost-ledger.sqlite'}")  # a run whose ledger writes were all lost
    api_delivery.deliver(other_engine, client_for(simulator), SPEC, "leeds", ADVERTISER, wanted)
    assert consistent(simulator, wanted)


def test_nightly_reconciliation_brings_back_a_listing_deleted_by_hand(simulator, engine):
    client = client_for(simulator)
    wanted = items()
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    victim = by_reference(simulator)["A0001"][0]["metadata"]["stockId"]
    simulator.delete_by_hand(victim)
    STATS["faults injected"] += 1
    assert api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted).calls == 0  # the ledger alone cannot know
    assert api_delivery.reconcile(engine, client, SPEC, "leeds", ADVERTISER, wanted) == 1
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    assert consistent(simulator, wanted)


def test_client_errors_and_secrets(simulator):
    client = StockApiClient(simulator.base_url, "wrong-" + TOKEN, timeout=1, policy=RetryPolicy(base_delay=0.01))
    with pytest.raises(ApiError) as caught:
        client.search(ADVERTISER)
    assert caught.value.status == 401 and not caught.value.transient and client.calls == 1
    assert TOKEN not in str(caught.value) and TOKEN not in repr(client)
    good = client_for(simulator)
    simulator.slow_next(1, 2.0)
    assert good.search(ADVERTISER) == [] and good.calls == 2  # the slow answer timed out and was retried
    simulator.drop_next(1)
    assert good.search(ADVERTISER) == [] and good.calls == 4
    simulator.fail_next(10, status=500)
    with pytest.raises(ApiError) as exhausted:
        good.search(ADVERTISER)
    assert exhausted.value.transient and exhausted.value.status == 500


def test_backoff_and_deadline():
    rng = random.Random(7)
    policy = RetryPolicy(base_delay=1, max_delay=8)
    delays = [backoff_delay(attempt, policy, rng) for attempt in range(1, 10)]
    assert all(0 <= d <= min(8, 2 ** (a - 1)) for a, d in zip(range(1, 10), delays))
    clock = iter(range(0, 1000, 50)).__next__
    attempts = []

    def always_failing():
        attempts.append(1)
        raise ApiError("x", status=503, transient=True)

    with pytest.raises(ApiError):
        call_with_retries(always_failing, RetryPolicy(max_attempts=10, base_delay=1, deadline_seconds=100), is_transient=lambda e: e.transient, sleep=lambda s: None, clock=clock)
    assert len(attempts) < 10  # the deadline stopped it first


def test_diff_then_apply_reaches_the_target():
    acknowledged = {"a": "1", "b": "2", "c": "3", "d": ""}
    desired = {"a": "1", "b": "9", "e": "5", "d": "4"}
    changes = diff(desired, acknowledged)
    assert (changes.creates, changes.updates, changes.deletes) == (["e"], ["b", "d"], ["c"])
    assert apply(acknowledged, desired, changes) == desired


def live_price(simulator, reference: str) -> int:
    return by_reference(simulator)[reference][0]["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"]


def test_a_price_that_goes_up_and_back_reaches_the_marketplace_each_time(simulator, engine):
    client = client_for(simulator)
    stock = fixed_stock()
    original = float(stock.loc[stock["stock_id"] == "A0001", "price"].iloc[0])
    for price in (original, original + 500, original, original + 500, original):
        stock.loc[stock["stock_id"] == "A0001", "price"] = price
        report = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(stock))
        assert report.failed == report.dead_lettered == 0
        assert live_price(simulator, "A0001") == int(price + 0.5)  # the API applied it, not answered from its idempotency cache


def test_a_sale_cancelled_and_made_again_is_sold_on_the_marketplace(simulator, engine):
    client = client_for(simulator)
    stock = fixed_stock()
    for status in ("available", "sold", "available", "sold"):
        stock.loc[stock["stock_id"] == "A0003", "status"] = status
        api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(stock))
        live = by_reference(simulator)["A0003"]
        assert len(live) == 1 and live[0]["metadata"]["lifecycleState"] == ("SOLD" if status == "sold" else "FORECOURT"), status


def test_a_vehicle_removed_added_and_removed_again_is_withdrawn_each_time(simulator, engine):
    client = client_for(simulator)
    stock = fixed_stock()
    for present in (True, False, True, False):
        current = stock if present else stock[stock["stock_id"] != "A0005"]
        api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(current))
        assert ("A0005" in by_reference(simulator)) is present, present


def test_a_retry_of_the_same_unacknowledged_change_reuses_its_idempotency_key(simulator, engine):
    client = client_for(simulator)
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items())
    stock = fixed_stock()
    stock.loc[stock["stock_id"] == "A0001", "price"] = 4321.0
    simulator.drop_next(10)  # every attempt of this run is lost: the change stays unacknowledged
    STATS["faults injected"] += 1
    first = api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(stock))
    assert first.failed == 1
    seq = ledger.ledger_rows(engine, "autotrader", "leeds", {"A0001"})["A0001"]["change_seq"]
    simulator.reset_failures()
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(stock))
    row = ledger.ledger_rows(engine, "autotrader", "leeds", {"A0001"})["A0001"]
    assert row["change_seq"] == seq and row["status"] == "acknowledged" and live_price(simulator, "A0001") == 4321


def test_reconciliation_adopts_a_listing_the_ledger_does_not_know_and_withdraws_a_stray_one(simulator, engine):
    client = client_for(simulator)
    wanted = items()
    known = wanted[wanted["external_reference"] != "A0002"]
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, known)
    item = api_delivery.desired_items(SPEC, wanted)["A0002"]
    client.create(ADVERTISER, autotrader.create_payload(item), "made-by-another-system")  # live, never in our ledger
    stray = dict(item, external_reference="Z9999")
    client.create(ADVERTISER, autotrader.create_payload(stray), "a-stray-listing")  # a car we do not have
    STATS["faults injected"] += 1
    assert api_delivery.reconcile(engine, client, SPEC, "leeds", ADVERTISER, wanted) == 2
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, wanted)
    assert consistent(simulator, wanted)  # adopted, not duplicated; the stray one withdrawn


def test_the_drift_oracle_reads_what_the_stock_api_shows(simulator, engine):
    from dms_pipelines.delivery.drift import api_drift

    client = client_for(simulator)
    stock = fixed_stock()
    api_delivery.deliver(engine, client, SPEC, "leeds", ADVERTISER, items(stock))
    statuses = lambda ids: dict(zip(stock["stock_id"], stock["status"]))  # noqa: E731
    assert api_drift("leeds", SPEC, items(stock), client.search(ADVERTISER), statuses).clean
    listed = client.search(ADVERTISER)
    for item in listed:  # the marketplace adds its own fields, also inside list items: not drift
        item["media"]["images"] = [dict(image, imageId="x1") for image in item["media"]["images"]]
    assert api_drift("leeds", SPEC, items(stock), listed, statuses).clean
    sold = stock.assign(status=stock["status"].where(stock["stock_id"] != "A0001", "sold"))
    repriced = sold.assign(price=sold["price"].where(sold["stock_id"] != "A0002", 1234.0))
    drift = api_drift("leeds", SPEC, items(repriced), listed, statuses)
    assert (drift.sold_live, drift.stale, drift.missing, drift.extra) == (["A0001"], ["A0002"], [], [])
    twice = listed[0]["metadata"]["externalStockReference"]
    drift = api_drift("leeds", SPEC, items(stock[~stock["stock_id"].isin(["A0003", "A0004"])]), listed + listed[:1], statuses)
    assert sorted(drift.extra) == sorted({twice, "A0004"})  # listed twice; offered although the feed no longer has it
    assert drift.sold_live == []  # A0003 is there as SOLD: left as sold is not drift
