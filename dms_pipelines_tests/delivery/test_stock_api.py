"""The stock API client against the real simulator over loopback HTTP: round trips, paging, faults, retries and secrets."""

import logging
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dms_pipelines.delivery.retry import RetryPolicy
from dms_pipelines.delivery.stock_api import ApiError, StockApiClient, parse_retry_after
from dms_pipelines.devtools.simulator import StockApiSimulator

TOKEN = "sim-secret-token-5f1c9e"
ADVERTISER = "ADV-100"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, deadline_seconds=10)


@pytest.fixture
def simulator():
    with StockApiSimulator(token=TOKEN) as sim:
        yield sim


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(simulator, waits) -> StockApiClient:
    return StockApiClient(simulator.base_url, TOKEN, timeout=2.0, policy=FAST, sleep=waits.append)


def vehicle(reference: str, price=9995, state: str = "FORECOURT", **vehicle_fields) -> dict:
    return {
        "vehicle": {"vehicleType": "Car", "registration": f"YD71{reference[-3:]}", "make": "Ford", "model": "Fiesta", **vehicle_fields},
        "adverts": {"retailAdverts": {"suppliedPrice": {"amountGBP": price}, "autotraderAdvert": {"status": "PUBLISHED"}}},
        "metadata": {"lifecycleState": state, "externalStockReference": reference},
        "media": {"images": [{"href": "https://img.example/1.jpg"}, {"href": "https://img.example/2.jpg"}]},
    }


def test_create_patch_search_round_trip(simulator, client):
    created = client.create(ADVERTISER, vehicle("A0001"), "key-create-A0001")
    stock_id = created["metadata"]["stockId"]
    assert created["metadata"]["versionNumber"] == 1 and created["metadata"]["externalStockReference"] == "A0001"

    patched = client.patch(
        ADVERTISER, stock_id, {"adverts": {"retailAdverts": {"suppliedPrice": {"amountGBP": 9495}}}, "media": {"images": [{"href": "https://img.example/3.jpg"}]}}, "key-price-A0001"
    )
    assert patched["metadata"]["versionNumber"] == 2
    assert patched["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"] == 9495
    assert patched["adverts"]["retailAdverts"]["autotraderAdvert"]["status"] == "PUBLISHED"  # untouched fields kept
    assert patched["media"]["images"] == [{"href": "https://img.example/3.jpg"}]  # lists replaced whole
    assert patched["vehicle"]["make"] == "Ford"

    sold = client.patch(ADVERTISER, stock_id, {"metadata": {"lifecycleState": "SOLD"}, "adverts": {"retailAdverts": {"autotraderAdvert": {"status": "NOT_PUBLISHED"}}}}, "key-sold-A0001")
    assert sold["metadata"]["versionNumber"] == 3 and sold["metadata"]["stockId"] == stock_id

    found = client.search(ADVERTISER, external_reference="A0001")
    assert [f["metadata"]["stockId"] for f in found] == [stock_id]
    assert found[0]["metadata"]["lifecycleState"] == "SOLD" and found[0]["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"] == 9495
    assert client.search(ADVERTISER, lifecycle_state="FORECOURT") == []
    assert len(client.search(ADVERTISER, lifecycle_state="SOLD")) == 1
    assert client.search("ANOTHER-ADVERTISER") == []
    assert client.calls == simulator.calls == 7 and simulator.writes == 3


def test_search_follows_every_page(simulator, client):
    def create(n: int) -> None:
        client.create(ADVERTISER, vehicle(f"P{n:04d}"), f"key-P{n:04d}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(400)))
    client.create("OTHER", vehicle("X0001"), "key-other")
    before = client.calls
    assert len(client.search(ADVERTISER)) == 400 and client.calls - before == 2  # totalResults says there is no third page

    for n in range(400, 450):
        create(n)
    before = client.calls
    found = client.search(ADVERTISER)
    assert client.calls - before == 3
    references = [f["metadata"]["externalStockReference"] for f in found]
    assert len(references) == 450 == len(set(references)) and "X0001" not in references
    assert references[400:] == [f"P{n:04d}" for n in range(400, 450)]  # creation order
    assert [(method, status) for method, _, status in simulator.request_log[-3:]] == [("GET", 200)] * 3


def test_429_waits_at_least_retry_after(simulator, client, waits):
    simulator.rate_limit_next(1, retry_after=0.2)
    client.create(ADVERTISER, vehicle("A0002"), "key-A0002")
    assert client.calls == 2 and len(waits) == 1 and waits[0] >= 0.2
    assert len(simulator.live_items(ADVERTISER)) == 1


def test_retry_after_as_seconds_or_http_date():
    now = 1_700_000_000.0
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("nan") is None


def test_two_500s_then_success_takes_exactly_three_calls(simulator, client, waits):
    simulator.fail_next(2, status=500)
    created = client.create(ADVERTISER, vehicle("A0003"), "key-A0003")
    assert created["metadata"]["versionNumber"] == 1
    assert client.calls == simulator.calls == 3 and len(waits) == 2
    assert [status for _, _, status in simulator.request_log] == [500, 500, 201]


def test_a_dropped_connection_is_retried_once_and_creates_once(simulator, client):
    simulator.drop_next(1)
    client.create(ADVERTISER, vehicle("A0004"), "key-A0004")
    assert client.calls == 2 and [status for _, _, status in simulator.request_log] == [0, 201]
    assert len(simulator.live_items(ADVERTISER)) == 1


def test_a_slow_answer_times_out_as_transient_and_the_retry_creates_no_duplicate(simulator):
    client = StockApiClient(simulator.base_url, TOKEN, timeout=0.2, policy=FAST, sleep=lambda s: None)
    simulator.slow_next(1, 0.4)
    created = client.create(ADVERTISER, vehicle("A0005"), "key-A0005")
    give_up = time.monotonic() + 5
    while simulator.calls < 2 and time.monotonic() < give_up:  # the slow request is still applied, late, as on a real server
        time.sleep(0.02)
    assert client.calls == 2 and simulator.calls == 2 and simulator.writes == 1
    assert [i["metadata"]["stockId"] for i in simulator.live_items(ADVERTISER)] == [created["metadata"]["stockId"]]

    single = StockApiClient(simulator.base_url, TOKEN, timeout=0.2, policy=RetryPolicy(max_attempts=1), sleep=lambda s: None)
    simulator.slow_next(1, 0.4)
    with pytest.raises(ApiError) as caught:
        single.search(ADVERTISER)
    assert caught.value.transient and caught.value.status is None and "timed out" in str(caught.value).lower()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (vehicle("B0001", price=9995.5), "amountGBP must be whole pounds"),
        (vehicle("B0002", price="9995"), "amountGBP must be whole pounds"),
        (vehicle("B0003", price=0), "amountGBP must be whole pounds"),
        (vehicle("B0004", vehicleType="car"), "vehicle.vehicleType"),
        (vehicle("B0005", state="forecourt"), "metadata.lifecycleState"),
        (vehicle("B0006", make=""), "vehicle.make"),
        (vehicle(""), "externalStockReference"),
    ],
)
def test_invalid_payloads_are_refused_once_with_the_marketplace_message(simulator, client, waits, payload, expected):
    with pytest.raises(ApiError) as caught:
        client.create(ADVERTISER, payload, "key-invalid")
    error = caught.value
    assert error.status == 400 and not error.transient and expected in error.message
    assert client.calls == 1 and waits == [] and simulator.items() == []


def test_a_422_is_never_retried_and_carries_the_message(simulator, client, waits):
    simulator.reject("A0006", status=422, message="registration YD71KPR does not match this vehicle")
    with pytest.raises(ApiError) as caught:
        client.create(ADVERTISER, vehicle("A0006"), "key-A0006")
    assert caught.value.status == 422 and not caught.value.transient
    assert caught.value.message == "registration YD71KPR does not match this vehicle"
    assert "POST /stock" in str(caught.value) and "422" in str(caught.value)
    assert client.calls == 1 and waits == []


def test_patching_an_unknown_item_is_a_permanent_404(simulator, client):
    with pytest.raises(ApiError) as caught:
        client.patch(ADVERTISER, "../stock", {"metadata": {"lifecycleState": "SOLD"}}, "key-unknown")
    assert caught.value.status == 404 and not caught.value.transient and client.calls == 1


def test_a_wrong_token_is_a_401_and_no_token_is_ever_shown(simulator, caplog):
    wrong = "wrong-" + TOKEN
    client = StockApiClient(simulator.base_url, wrong, timeout=2.0, policy=FAST, sleep=lambda s: None)
    with pytest.raises(ApiError) as caught:
        client.search(ADVERTISER)
    error = caught.value
    assert error.status == 401 and not error.transient and client.calls == 1 and "access token" in error.message
    right = StockApiClient(simulator.base_url, TOKEN, timeout=2.0, policy=FAST, sleep=lambda s: None)
    simulator.fail_next(2, status=503)
    with caplog.at_level(logging.DEBUG):
        right.search(ADVERTISER)
    shown = [str(error), repr(error), repr(client), repr(right), str(vars(error)), caplog.text]
    assert caplog.records and not any(TOKEN in text for text in shown)


def test_a_token_that_cannot_be_a_header_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as caught:
        StockApiClient("http://127.0.0.1:1", "abc\r\nX-Injected: yes")
    assert "abc" not in str(caught.value)


def test_the_same_idempotency_key_never_creates_twice(simulator, client):
    first = client.create(ADVERTISER, vehicle("A0007"), "key-A0007")
    again = client.create(ADVERTISER, vehicle("A0007"), "key-A0007")
    assert again["metadata"]["stockId"] == first["metadata"]["stockId"]
    assert len(simulator.live_items(ADVERTISER)) == 1 and simulator.writes == 1
    # The marketplace itself does not refuse a second listing of one vehicle: only the key protects against it.
    client.create(ADVERTISER, vehicle("A0007"), "another-key")
    assert len(simulator.live_items(ADVERTISER)) == 2


def test_concurrent_requests_with_one_key_create_one_item(simulator, client):
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: client.create(ADVERTISER, vehicle("A0008"), "key-A0008"), range(8)))
    assert len({a["metadata"]["stockId"] for a in answers}) == 1 and simulator.writes == 1


def test_exhausted_retries_raise_the_transient_error(simulator, client, waits):
    simulator.fail_next(10, status=503)
    with pytest.raises(ApiError) as caught:
        client.search(ADVERTISER)
    assert caught.value.transient and caught.value.status == 503
    assert client.calls == FAST.max_attempts and len(waits) == FAST.max_attempts - 1


def test_a_retry_after_beyond_the_deadline_fails_at_once(simulator, waits):
    client = StockApiClient(simulator.base_url, TOKEN, timeout=2.0, policy=RetryPolicy(max_attempts=5, base_delay=0.01, deadline_seconds=5), sleep=waits.append)
    simulator.rate_limit_next(1, retry_after=30)
    with pytest.raises(ApiError) as caught:
        client.create(ADVERTISER, vehicle("A0009"), "key-A0009")
    assert caught.value.status == 429 and caught.value.retry_after == 30 and client.calls == 1 and waits == []


def test_a_refused_connection_is_transient():
    with StockApiSimulator(token=TOKEN) as gone:
        url = gone.base_url
    client = StockApiClient(url, TOKEN, timeout=1.0, policy=RetryPolicy(max_attempts=2, base_delay=0.01), sleep=lambda s: None)
    with pytest.raises(ApiError) as caught:
        client.search(ADVERTISER)
    assert caught.value.transient and caught.value.status is None and client.calls == 2


def test_a_redirect_is_refused_not_followed():
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.example/stock")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        client = StockApiClient(f"http://127.0.0.1:{server.server_address[1]}", TOKEN, timeout=2.0, policy=FAST, sleep=lambda s: None)
        with pytest.raises(ApiError) as caught:
            client.create(ADVERTISER, vehicle("A0010"), "key-A0010")
        assert caught.value.status == 302 and not caught.value.transient and client.calls == 1
    finally:
        server.shutdown()
        server.server_close()


def test_writes_need_an_idempotency_key_and_filters_cannot_be_empty(client):
    with pytest.raises(ValueError):
        client.create(ADVERTISER, vehicle("A0011"), "")
    with pytest.raises(ValueError):
        client.search(ADVERTISER, external_reference="")
    assert client.calls == 0


def test_api_errors_survive_pickling():
    error = ApiError("simulated", status=503, transient=True, retry_after=2.0, request="GET /stock")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.status, copy.transient, copy.retry_after, str(copy)) == ("simulated", 503, True, 2.0, str(error))
