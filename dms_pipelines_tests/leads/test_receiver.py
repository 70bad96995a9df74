"""The lead webhook receiver on a real loopback port: who is refused, what lands (byte for byte), and that nothing half-written ever does."""

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from dms_pipelines.config import load_settings
from dms_pipelines.devtools.demo import SAMPLE_CONFIG
from dms_pipelines.leads.receiver import SIGNATURE_HEADER, WEBSITE_KEY_HEADER, ReceiverServer, sign_autotrader
from dms_pipelines.leads.records import PAYLOAD_NAME
from dms_pipelines.paths import DataPaths

SECRET = "at-webhook-secret-not-real"
GOOGLE_KEY = "google-lead-key-not-real"
WEBSITE_KEY = "website-lead-key-not-real"
ENVIRON = {"DMS_AUTOTRADER_WEBHOOK_SECRET": SECRET, "DMS_GOOGLE_LEAD_KEY": GOOGLE_KEY, "DMS_WEBSITE_LEAD_KEY": WEBSITE_KEY}
BODY_CAP = 65_536
DISTINCTIVE = "Zebedee-Quockerwodger"  # appears in the bodies sent, so a leak into a log is easy to see


def make_root(tmp_path: Path, max_body_bytes: int | None = None) -> DataPaths:
    root = tmp_path / "data"
    (root / "config").mkdir(parents=True)
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    if max_body_bytes is not None:
        raw.setdefault("leads", {}).setdefault("receiver", {})["max_body_bytes"] = max_body_bytes
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return DataPaths(root)


@pytest.fixture
def lead_paths(tmp_path) -> DataPaths:
    return make_root(tmp_path, max_body_bytes=BODY_CAP)


@pytest.fixture
def receiver(lead_paths):
    settings = load_settings(lead_paths.root / "config" / "dms_pipelines.yaml")
    with ReceiverServer(settings, lead_paths, environ=ENVIRON) as server:
        yield server


@pytest.fixture
def receiver_log(caplog):
    caplog.set_level(logging.INFO, logger="dms_pipelines.leads.receiver")
    return caplog


def post(url: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, object]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(raw)
    finally:
        connection.close()


def notification(advertiser_id: str = "10001", deal_id: str = f"deal-{DISTINCTIVE}") -> bytes:
    data = {"dealId": deal_id, "advertiserId": advertiser_id, "event": "DEAL_CREATED", "component": None}
    return json.dumps({"id": "n-1", "type": "DEAL_UPDATE", "time": "2025-03-01T10:00:00Z", "data": data}).encode()


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict:
    return {SIGNATURE_HEADER: sign_autotrader(secret, body, timestamp)}


def landed(paths: DataPaths, folder: str = "leeds") -> list[Path]:
    target = paths.lead_landing / folder
    return sorted(p for p in target.iterdir() if p.is_file()) if target.is_dir() else []


def every_file(paths: DataPaths) -> list[Path]:
    return sorted(p for p in paths.lead_landing.rglob("*") if p.is_file()) if paths.lead_landing.exists() else []


def test_a_signed_notification_lands_byte_for_byte_before_its_2xx(receiver, lead_paths, receiver_log):
    body = notification()
    status, answer = post(receiver.url, "/webhooks/autotrader", body, signed(body))
    assert status == 200
    files = landed(lead_paths)
    assert [f.name for f in files] == [answer["landed"]]
    assert PAYLOAD_NAME.match(files[0].name).group("source") == "autotrader"
    assert files[0].read_bytes() == body
    assert every_file(lead_paths) == files
    assert DISTINCTIVE not in receiver_log.text and SECRET not in receiver_log.text
    assert "status=200" in receiver_log.text and answer["landed"] in receiver_log.text


def test_the_same_bytes_twice_land_twice(receiver, lead_paths):
    body = notification()
    answers = [post(receiver.url, "/webhooks/autotrader", body, signed(body)) for _ in range(2)]
    assert [status for status, _ in answers] == [200, 200]
    files = landed(lead_paths)
    assert len(files) == 2 and {f.name for f in files} == {a["landed"] for _, a in answers}
    assert all(f.read_bytes() == body for f in files)


@pytest.mark.parametrize(
    "case",
    ["forged", "wrong secret", "missing header", "malformed header", "stale", "future-dated", "body changed"],
)
def test_a_notification_that_is_not_authentic_is_refused_and_not_logged(receiver, lead_paths, receiver_log, case):
    body = notification()
    headers = {
        "forged": {SIGNATURE_HEADER: f"t={int(time.time())},v1={'0' * 64}"},
        "wrong secret": signed(body, secret="not-the-secret"),
        "missing header": {},
        "malformed header": {SIGNATURE_HEADER: "sha256=abc"},
        "stale": signed(body, timestamp=int(time.time()) - 360),
        "future-dated": signed(body, timestamp=int(time.time()) + 360),
        "body changed": signed(body.replace(b"DEAL_CREATED", b"DEAL_UPDATED")),
    }[case]
    status, answer = post(receiver.url, "/webhooks/autotrader", body, headers)
    assert status == 403 and DISTINCTIVE not in json.dumps(answer)
    assert every_file(lead_paths) == []
    assert "status=403" in receiver_log.text and "reason=" in receiver_log.text
    assert DISTINCTIVE not in receiver_log.text and SECRET not in receiver_log.text


def test_an_unset_secret_variable_refuses_every_notification(lead_paths, receiver_log):
    settings = load_settings(lead_paths.root / "config" / "dms_pipelines.yaml")
    body = notification()
    with ReceiverServer(settings, lead_paths, environ={"DMS_GOOGLE_LEAD_KEY": GOOGLE_KEY}) as server:
        status, _ = post(server.url, "/webhooks/autotrader", body, signed(body))
    assert status == 403
    assert every_file(lead_paths) == []
    assert "DMS_AUTOTRADER_WEBHOOK_SECRET is unset" in receiver_log.text
    assert DISTINCTIVE not in receiver_log.text


def test_a_notification_for_an_unknown_advertiser_is_kept_unrouted(receiver, lead_paths):
    body = notification(advertiser_id="99999")
    status, answer = post(receiver.url, "/webhooks/autotrader", body, signed(body))
    assert status == 202
    files = landed(lead_paths, "_unrouted")
    assert [f.name for f in files] == [answer["landed"]] and files[0].read_bytes() == body
    assert every_file(lead_paths) == files


def test_a_notification_routes_to_the_dealer_of_its_advertiser(receiver, lead_paths):
    body = notification(advertiser_id="10003")
    status, _ = post(receiver.url, "/webhooks/autotrader", body, signed(body))
    assert status == 200 and len(landed(lead_paths, "sheffield")) == 1 and landed(lead_paths) == []


def google_form(key: str = GOOGLE_KEY) -> bytes:
    columns = [{"column_id": "FULL_NAME", "string_value": f"Ada {DISTINCTIVE}"}, {"column_id": "EMAIL", "string_value": "ada@example.com"}]
    return json.dumps({"lead_id": "g-1", "user_column_data": columns, "form_id": 7, "campaign_id": 9, "google_key": key, "is_test": True}).encode()


def test_google_lead_forms(receiver, lead_paths, receiver_log):
    body = google_form()
    status, answer = post(receiver.url, "/webhooks/google/york", body)
    assert status == 200
    files = landed(lead_paths, "york")
    assert [f.name for f in files] == [answer["landed"]] and files[0].name.startswith("google-") and files[0].read_bytes() == body

    assert post(receiver.url, "/webhooks/google/york", google_form("wrong-key"))[0] == 403
    assert post(receiver.url, "/webhooks/google/nowhere", body)[0] == 404
    assert post(receiver.url, "/webhooks/google/york", b"{not json " + DISTINCTIVE.encode())[0] == 400
    assert every_file(lead_paths) == files
    assert DISTINCTIVE not in receiver_log.text and GOOGLE_KEY not in receiver_log.text


def test_website_enquiries(receiver, lead_paths, receiver_log):
    body = json.dumps({"enquiryId": "w-1", "name": DISTINCTIVE, "stockId": "S123"}).encode()
    status, answer = post(receiver.url, "/webhooks/website/leeds", body, {WEBSITE_KEY_HEADER: WEBSITE_KEY})
    assert status == 200
    files = landed(lead_paths)
    assert [f.name for f in files] == [answer["landed"]] and files[0].name.startswith("website-") and files[0].read_bytes() == body

    assert post(receiver.url, "/webhooks/website/leeds", body, {WEBSITE_KEY_HEADER: "wrong"})[0] == 403
    assert post(receiver.url, "/webhooks/website/leeds", body)[0] == 403
    assert post(receiver.url, "/webhooks/website/nowhere", body, {WEBSITE_KEY_HEADER: WEBSITE_KEY})[0] == 404
    assert every_file(lead_paths) == files
    assert DISTINCTIVE not in receiver_log.text and WEBSITE_KEY not in receiver_log.text


def test_a_body_over_the_cap_is_refused_unwritten(receiver, lead_paths):
    big = notification()[:-1] + b', "padding": "' + b"x" * BODY_CAP + b'"}'
    assert post(receiver.url, "/webhooks/autotrader", big, signed(big))[0] == 413
    assert post(receiver.url, "/webhooks/website/leeds", big, {WEBSITE_KEY_HEADER: WEBSITE_KEY})[0] == 413

    # No Content-Length (chunked): the count of bytes streamed in is what stops it.
    parts = urllib.parse.urlsplit(receiver.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    chunks = [big[i : i + 8192] for i in range(0, len(big), 8192)]
    connection.request("POST", "/webhooks/autotrader", body=iter(chunks), headers={**signed(big), "Content-Type": "application/json"}, encode_chunked=True)
    assert connection.getresponse().status == 413
    connection.close()

    # Declared over the cap: refused from the headers alone, before any of the body is sent.
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        raw.sendall(b"POST /webhooks/autotrader HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
        assert raw.recv(1024).startswith(b"HTTP/1.1 413")
    assert every_file(lead_paths) == []


def test_a_write_failure_is_a_503_with_nothing_landed(receiver, lead_paths):
    lead_paths.lead_landing.mkdir(parents=True)
    (lead_paths.lead_landing / "leeds").write_text("not a folder")  # the dealer's landing folder cannot be created
    body = notification()
    status, answer = post(receiver.url, "/webhooks/autotrader", body, signed(body))
    assert status == 503 and "landed" not in answer
    assert every_file(lead_paths) == [lead_paths.lead_landing / "leeds"]
    assert (lead_paths.lead_landing / "leeds").read_text() == "not a folder"


def test_health_and_unknown_routes_answer_json(receiver):
    parts = urllib.parse.urlsplit(receiver.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read()) == "ok"
    connection.request("GET", "/webhooks/autotrader")
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Content-Type") == "application/json" and json.loads(response.read())
    connection.close()
    assert post(receiver.url, "/nowhere", b"{}")[0] == 404


def start_receiver_process(paths: DataPaths, url_file: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, **ENVIRON, "DMS_PIPELINES_DATA": str(paths.root), "DMS_PIPELINES_CONFIG": str(paths.root / "config" / "dms_pipelines.yaml")}
    process = subprocess.Popen([sys.executable, "-m", "dms_pipelines.leads.receiver", "--port", "0", "--url-file", str(url_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not url_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"the receiver exited: {process.stderr.read().decode()}")
        assert time.monotonic() < deadline, "the receiver did not write its URL file"
        time.sleep(0.05)
    return process, url_file.read_text().strip()


def test_a_receiver_killed_mid_body_leaves_nothing_and_a_fresh_one_lands_the_next(tmp_path):
    paths = make_root(tmp_path)  # the default cap (1 MiB): a 100000-byte body is accepted
    process, url = start_receiver_process(paths, tmp_path / "receiver.url")
    try:
        body = notification()[:-1] + b', "padding": "' + b"x" * (100_000 - len(notification()) - 15) + b'"}'
        assert len(body) == 100_000
        head = f"POST /webhooks/autotrader HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{SIGNATURE_HEADER}: {sign_autotrader(SECRET, body)}\r\n\r\n"
        parts = urllib.parse.urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
            raw.sendall(head.encode() + body[: len(body) // 2])
            time.sleep(0.3)  # the receiver is now reading the body
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            answer = b""
            try:
                while chunk := raw.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert answer == b""  # no status line at all, so certainly no 2xx
        assert not [p for p in every_file(paths) if PAYLOAD_NAME.match(p.name)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stderr.close()

    process, url = start_receiver_process(paths, tmp_path / "receiver2.url")
    try:
        body = notification()
        status, answer = post(url, "/webhooks/autotrader", body, signed(body))
        assert status == 200
        assert [p.read_bytes() for p in landed(paths)] == [body]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stderr.close()
    assert not (tmp_path / "receiver2.url").exists()  # a clean stop removes its URL file
