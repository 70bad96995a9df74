"""Deal Sync end to end on loopback: the simulator's deals and signed notifications, the receiver landing them, the client fetching deals."""

import json
import socket
import time

import pytest
import yaml

from dms_pipelines.config import load_settings
from dms_pipelines.devtools.demo import SAMPLE_CONFIG
from dms_pipelines.leads.deals_client import DealsApiError, fetch_deal, list_deals
from dms_pipelines.leads.receiver import ReceiverServer, sign_autotrader
from dms_pipelines.paths import DataPaths
from dms_pipelines_tests.support import TEST_TOKEN

SECRET = "deal-sync-secret-not-real"
ADVERTISER = "10001"  # the demo configuration's Leeds


def a_deal(**overrides) -> dict:
    consent = {"email": "Y", "phone": "N", "sms": "N", "post": "Y", "wording": "Tell me about offers", "time": "2025-03-01T09:58:00Z"}
    deal = {
        "consumer": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "phone": "07700 900123", "postcode": "LS3 1JL", "marketingPreferences": consent},
        "stock": {"stockId": "advert-1", "externalStockReference": "S123", "registration": "AB12CDE", "vin": "WVWZZZ1JZXW000001"},
        "messages": {"lastMessage": "Is it still available?"},
    }
    return {**deal, **overrides}


COMPONENTS = {
    "partExchange": {"vehicle": {"registration": "XY65ZZZ", "make": "Ford", "model": "Focus", "mileage": 61000}, "valuation": 4250},
    "financeApplication": {"status": "Submitted", "lender": "Example Finance"},
    "delivery": {"method": "Collection"},
}


def test_fetch_deal_returns_the_deal_with_each_component(stock_api):
    deal_id = stock_api.add_deal(ADVERTISER, a_deal(), COMPONENTS)
    fetched = fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, deal_id)
    assert fetched["dealId"] == deal_id and fetched["advertiserId"] == ADVERTISER and fetched["advertiserDealStatus"] == "In progress"
    assert fetched["consumer"]["marketingPreferences"]["email"] == "Y" and fetched["stock"]["externalStockReference"] == "S123"
    for field, component in COMPONENTS.items():
        assert fetched[field] == {"id": fetched["components"][field]["id"]}
        assert {k: v for k, v in fetched["components"][field].items() if k != "id"} == component
    assert [path for method, path, status in stock_api.request_log] == [
        f"/deals/{deal_id}",
        f"/part-exchanges/{fetched['partExchange']['id']}",
        f"/finance-applications/{fetched['financeApplication']['id']}",
        f"/deliveries/{fetched['delivery']['id']}",
    ]


def test_a_deal_without_components_has_none_and_updates_show(stock_api):
    deal_id = stock_api.add_deal(ADVERTISER, a_deal())
    assert fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, deal_id)["components"] == {"partExchange": None, "financeApplication": None, "delivery": None}
    stock_api.update_deal(deal_id, advertiserDealStatus="Complete", components={"delivery": {"method": "Delivery"}})
    fetched = fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, deal_id)
    assert fetched["advertiserDealStatus"] == "Complete" and fetched["components"]["delivery"]["method"] == "Delivery"
    assert fetched["consumer"]["firstName"] == "Ada"


def test_another_advertisers_deal_is_not_found(stock_api):
    deal_id = stock_api.add_deal("10003", a_deal(), COMPONENTS)
    with pytest.raises(DealsApiError) as raised:
        fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, deal_id)
    assert raised.value.status == 404 and not raised.value.transient


def test_list_deals_pages_through_every_deal(stock_api):
    ids = [stock_api.add_deal(ADVERTISER, a_deal()) for _ in range(250)]
    stock_api.add_deal("10003", a_deal())
    deals = list_deals(stock_api.base_url, TEST_TOKEN, ADVERTISER, page_size=100)
    assert [d["dealId"] for d in deals] == ids
    assert [path for _, path, _ in stock_api.request_log] == ["/deals"] * 3


def test_a_500_once_is_retried_and_succeeds(stock_api):
    deal_id = stock_api.add_deal(ADVERTISER, a_deal(), COMPONENTS)
    stock_api.fail_next(1, status=500)
    fetched = fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, deal_id)
    assert fetched["components"]["financeApplication"]["lender"] == "Example Finance"
    assert [(path, status) for _, path, status in stock_api.request_log][:2] == [(f"/deals/{deal_id}", 500), (f"/deals/{deal_id}", 200)]


def test_a_lasting_outage_is_transient(stock_api):
    deal_id = stock_api.add_deal(ADVERTISER, a_deal())
    stock_api.fail_next(10, status=503)
    with pytest.raises(DealsApiError) as raised:
        fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, deal_id)
    assert raised.value.transient and raised.value.status == 503
    assert stock_api.calls == 4  # the first try and three retries


def test_no_server_is_transient():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DealsApiError) as raised:
        fetch_deal(f"http://127.0.0.1:{port}", TEST_TOKEN, ADVERTISER, "d-1")
    assert raised.value.transient and raised.value.status is None


def test_an_unknown_deal_is_permanent(stock_api):
    with pytest.raises(DealsApiError) as raised:
        fetch_deal(stock_api.base_url, TEST_TOKEN, ADVERTISER, "no-such-deal")
    assert raised.value.status == 404 and not raised.value.transient
    assert stock_api.calls == 1


def test_a_wrong_token_is_permanent_and_never_shown(stock_api):
    deal_id = stock_api.add_deal(ADVERTISER, a_deal())
    wrong = "wrong-token-Qx7Zp91"
    for call in (lambda: fetch_deal(stock_api.base_url, wrong, ADVERTISER, deal_id), lambda: list_deals(stock_api.base_url, wrong, ADVERTISER)):
        with pytest.raises(DealsApiError) as raised:
            call()
        assert raised.value.status == 401 and not raised.value.transient
        assert wrong not in str(raised.value) and wrong not in repr(raised.value) and wrong not in raised.value.message
    assert stock_api.calls == 2


@pytest.fixture
def receiver(tmp_path):
    root = tmp_path / "data"
    (root / "config").mkdir(parents=True)
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(yaml.safe_load(SAMPLE_CONFIG.read_text()), sort_keys=False))
    paths = DataPaths(root)
    with ReceiverServer(load_settings(root / "config" / "dms_pipelines.yaml"), paths, environ={"DMS_AUTOTRADER_WEBHOOK_SECRET": SECRET}) as server:
        yield server, paths


def test_the_simulators_notifications_land_at_the_receiver(stock_api, receiver):
    server, paths = receiver
    deal_id = stock_api.add_deal(ADVERTISER, a_deal(), COMPONENTS)
    assert stock_api.notify(server.url, SECRET, deal_id, "DEAL_CREATED") == 200
    assert stock_api.notify(server.url, SECRET, deal_id, "COMPONENT_CHANGED", component="partExchange") == 200
    body = stock_api.notification(deal_id, "DEAL_UPDATED")
    assert stock_api.notify(server.url, SECRET, deal_id, "DEAL_UPDATED", body=body) == 200
    assert stock_api.notify(server.url, SECRET, deal_id, "DEAL_UPDATED", body=body) == 200  # a resend of the same bytes

    landed = sorted((paths.lead_landing / "leeds").iterdir())
    notifications = [json.loads(p.read_bytes()) for p in landed]
    assert [n["data"]["event"] for n in notifications] == ["DEAL_CREATED", "COMPONENT_CHANGED", "DEAL_UPDATED", "DEAL_UPDATED"]
    assert all(n["type"] == "DEAL_UPDATE" and n["data"]["dealId"] == deal_id and n["data"]["advertiserId"] == ADVERTISER for n in notifications)
    assert notifications[1]["data"]["component"] == "partExchange" and notifications[0]["data"]["component"] is None
    assert landed[2].read_bytes() == landed[3].read_bytes() == body

    # What the pipeline does next: the deal named by the notification, with its components.
    fetched = fetch_deal(stock_api.base_url, TEST_TOKEN, notifications[0]["data"]["advertiserId"], notifications[0]["data"]["dealId"])
    assert fetched["components"]["partExchange"]["valuation"] == 4250


def test_forged_or_stale_notifications_are_refused(stock_api, receiver):
    server, paths = receiver
    deal_id = stock_api.add_deal(ADVERTISER, a_deal())
    assert stock_api.notify(server.url, "not-the-secret", deal_id, "DEAL_CREATED") == 403
    body = stock_api.notification(deal_id, "DEAL_CREATED")
    stale = sign_autotrader(SECRET, body, int(time.time()) - 3600)
    assert stock_api.notify(server.url, SECRET, deal_id, "DEAL_CREATED", signature=stale, body=body) == 403
    assert not paths.lead_landing.exists() or not any(paths.lead_landing.rglob("*.json"))
