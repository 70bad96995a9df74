"""A local Auto Trader Connect-style stock API with state, validation and failure knobs, for tests and the demo."""

import argparse
import copy
import json
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIFECYCLE_STATES = {"DUE_IN", "FORECOURT", "SALE_IN_PROGRESS", "SOLD", "DELETED", "WASTEBIN"}
VEHICLE_TYPES = {"Car", "Van"}
ADVERT_STATUSES = {"PUBLISHED", "NOT_PUBLISHED"}


def _merge(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def validate_item(item: dict) -> str | None:
    """The marketplace's message for an invalid stock item, or None."""
    vehicle = item.get("vehicle") or {}
    metadata = item.get("metadata") or {}
    advert = ((item.get("adverts") or {}).get("retailAdverts") or {})
    if vehicle.get("vehicleType") not in VEHICLE_TYPES:
        return f"vehicle.vehicleType must be one of {sorted(VEHICLE_TYPES)} (case matters), got {vehicle.get('vehicleType')!r}"
    for field in ("registration", "make", "model"):
        if not isinstance(vehicle.get(field), str) or not vehicle.get(field):
            return f"vehicle.{field} is required"
    amount = (advert.get("suppliedPrice") or {}).get("amountGBP")
    if metadata.get("lifecycleState") not in ("SOLD", "DELETED", "WASTEBIN") and (not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0):
        return f"adverts.retailAdverts.suppliedPrice.amountGBP must be whole pounds above zero, got {amount!r}"
    if metadata.get("lifecycleState") not in LIFECYCLE_STATES:
        return f"metadata.lifecycleState must be one of {sorted(LIFECYCLE_STATES)}, got {metadata.get('lifecycleState')!r}"
    if not metadata.get("externalStockReference"):
        return "metadata.externalStockReference is required"
    status = (advert.get("autotraderAdvert") or {}).get("status")
    if status is not None and status not in ADVERT_STATUSES:
        return f"adverts.retailAdverts.autotraderAdvert.status must be one of {sorted(ADVERT_STATUSES)}"
    return None


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (timeout, dropped connection) is part of the simulation, not an error to print."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class StockApiSimulator:
    """In-memory stock per advertiser behind a real HTTP server on loopback."""

    def __init__(self, token: str = "test-token", host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self._lock = threading.Lock()
        self._items: dict[str, dict] = {}  # stockId -> item (with advertiserId)
        self._order: list[str] = []
        self._idempotent: dict[tuple[str, str], tuple[int, dict]] = {}
        self._failures: list[tuple[str, object]] = []
        self._rejects: dict[str, tuple[int, str]] = {}
        self.request_log: list[tuple[str, str, int]] = []
        self.writes = 0
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def calls(self) -> int:
        return len(self.request_log)

    def start(self) -> "StockApiSimulator":
        self._thread = threading.Thread(target=self._server.serve_forever, name="stock-api-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # failure knobs
    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures += [("status", status)] * count

    def rate_limit_next(self, count: int, retry_after: float = 1) -> None:
        with self._lock:
            self._failures += [("rate", retry_after)] * count

    def slow_next(self, count: int, seconds: float) -> None:
        with self._lock:
            self._failures += [("slow", seconds)] * count

    def drop_next(self, count: int) -> None:
        with self._lock:
            self._failures += [("drop", None)] * count

    def reject(self, external_reference: str, status: int = 400, message: str = "rejected by the marketplace") -> None:
        with self._lock:
            self._rejects[external_reference] = (status, message)

    def reset_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._rejects.clear()

    def delete_by_hand(self, stock_id: str) -> None:
        with self._lock:
            self._items[stock_id]["metadata"]["lifecycleState"] = "DELETED"

    # inspection
    def items(self, advertiser_id: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(self._items[s]) for s in self._order if advertiser_id is None or self._items[s]["advertiserId"] == advertiser_id]

    def live_items(self, advertiser_id: str | None = None) -> list[dict]:
        return [i for i in self.items(advertiser_id) if i["metadata"]["lifecycleState"] not in ("DELETED", "WASTEBIN")]

    def _next_failure(self):
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _handler_class(self):
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                simulator.request_log.append((self.command, self.path.split("?")[0], status))

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                failure = simulator._next_failure()
                if failure is not None:
                    kind, value = failure
                    if kind == "drop":
                        simulator.request_log.append((self.command, self.path.split("?")[0], 0))
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if kind == "slow":
                        time.sleep(value)
                    elif kind == "rate":
                        return self._reply(429, {"message": "rate limit exceeded"}, {"Retry-After": str(value)})
                    elif kind == "status":
                        return self._reply(value, {"message": f"simulated {value}"})
                if self.headers.get("Authorization") != f"Bearer {simulator.token}":
                    return self._reply(401, {"message": "invalid or missing access token"})
                url = urllib.parse.urlparse(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                advertiser = query.get("advertiserId")
                if not advertiser:
                    return self._reply(400, {"message": "advertiserId is required"})
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    return self._reply(400, {"message": "body is not JSON"})
                key = self.headers.get("Idempotency-Key")
                if key and (advertiser, key) in simulator._idempotent:
                    status, answer = simulator._idempotent[(advertiser, key)]
                    return self._reply(status, answer)
                if self.command == "GET" and url.path == "/stock":
                    return self._search(advertiser, query)
                if self.command == "POST" and url.path == "/stock":
                    return self._create(advertiser, body, key)
                if self.command == "PATCH" and url.path.startswith("/stock/"):
                    return self._patch(advertiser, urllib.parse.unquote(url.path.removeprefix("/stock/")), body, key)
                return self._reply(404, {"message": f"no route {self.command} {url.path}"})

            def _search(self, advertiser: str, query: dict) -> None:
                size = int(query.get("pageSize", 20))
                if size > 200:
                    return self._reply(400, {"message": "pageSize must be at most 200"})
                page = int(query.get("page", 1))
                found = [
                    i for i in simulator.items(advertiser)
                    if all(query.get(q) in (None, v) for q, v in (("externalStockReference", i["metadata"]["externalStockReference"]), ("lifecycleState", i["metadata"]["lifecycleState"]), ("registration", i["vehicle"].get("registration"))))
                ]
                return self._reply(200, {"results": found[(page - 1) * size : page * size], "totalResults": len(found)})

            def _create(self, advertiser: str, body: dict, key: str | None) -> None:
                reference = (body.get("metadata") or {}).get("externalStockReference")
                if reference in simulator._rejects:
                    status, message = simulator._rejects[reference]
                    return self._reply(status, {"message": message})
                problem = validate_item(body)
                if problem:
                    return self._reply(400, {"message": problem})
                stock_id = uuid.uuid4().hex
                item = copy.deepcopy(body)
                item["advertiserId"] = advertiser
                item["metadata"].update({"stockId": stock_id, "versionNumber": 1})
                with simulator._lock:
                    simulator._items[stock_id] = item
                    simulator._order.append(stock_id)
                    simulator.writes += 1
                    answer = copy.deepcopy(item)
                    if key:
                        simulator._idempotent[(advertiser, key)] = (201, answer)
                return self._reply(201, answer)

            def _patch(self, advertiser: str, stock_id: str, body: dict, key: str | None) -> None:
                with simulator._lock:
                    current = simulator._items.get(stock_id)
                if current is None or current["advertiserId"] != advertiser:
                    return self._reply(404, {"message": f"stock {stock_id} not found"})
                reference = current["metadata"]["externalStockReference"]
                if reference in simulator._rejects:
                    status, message = simulator._rejects[reference]
                    return self._reply(status, {"message": message})
                merged = _merge(copy.deepcopy(current), body)
                problem = validate_item(merged)
                if problem:
                    return self._reply(400, {"message": problem})
                with simulator._lock:
                    merged["metadata"]["versionNumber"] = current["metadata"]["versionNumber"] + 1
                    simulator._items[stock_id] = merged
                    simulator.writes += 1
                    answer = copy.deepcopy(merged)
                    if key:
                        simulator._idempotent[(advertiser, key)] = (200, answer)
                return self._reply(200, answer)

            do_GET = do_POST = do_PATCH = _handle

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the stock API simulator in the foreground.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="demo-token")
    args = parser.parse_args()
    simulator = StockApiSimulator(token=args.token, port=args.port).start()
    print(f"stock API simulator on {simulator.base_url} (token from --token); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
