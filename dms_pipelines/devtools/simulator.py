"""A local Auto Trader Connect-style stock and deals API with state, validation and failure knobs, and signed Deal Sync notifications, for tests and the demo."""

import argparse
import copy
import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dms_pipelines.leads.receiver import SIGNATURE_HEADER, sign_autotrader

LIFECYCLE_STATES = frozenset({"DUE_IN", "FORECOURT", "SALE_IN_PROGRESS", "SOLD", "DELETED", "WASTEBIN"})
GONE_STATES = frozenset({"DELETED", "WASTEBIN"})
UNPRICED_STATES = frozenset({"SOLD"}) | GONE_STATES  # a car that is off sale may have no price any more
VEHICLE_TYPES = frozenset({"Car", "Van"})
ADVERT_STATUSES = frozenset({"PUBLISHED", "NOT_PUBLISHED"})
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20
MAX_BODY_BYTES = 5 * 1024 * 1024
DEAL_STATUSES = frozenset({"In progress", "Complete", "Cancelled"})
DEAL_EVENTS = frozenset({"DEAL_CREATED", "DEAL_UPDATED", "COMPONENT_CHANGED", "DEAL_CANCELLED", "DEAL_COMPLETED"})
# A deal's component field -> the collection its records are served from (GET /<collection>/<id>)
DEAL_COMPONENTS = {"partExchange": "part-exchanges", "financeApplication": "finance-applications", "delivery": "deliveries"}


def _merge(target: dict, patch: dict) -> dict:
    """Deep-merge `patch` into `target`: objects merge key by key, anything else (lists included) replaces whole."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def validate_item(item: dict) -> str | None:
    """The marketplace's message for an invalid stock item, or None when it is acceptable."""
    vehicle = _object(item.get("vehicle"))
    metadata = _object(item.get("metadata"))
    advert = _object(_object(item.get("adverts")).get("retailAdverts"))
    if vehicle.get("vehicleType") not in VEHICLE_TYPES:
        return f"vehicle.vehicleType must be one of {sorted(VEHICLE_TYPES)} (case matters), got {vehicle.get('vehicleType')!r}"
    for field in ("registration", "make", "model"):
        value = vehicle.get(field)
        if not isinstance(value, str) or not value.strip():
            return f"vehicle.{field} is required and must be a non-empty string, got {value!r}"
    state = metadata.get("lifecycleState")
    if state not in LIFECYCLE_STATES:
        return f"metadata.lifecycleState must be one of {sorted(LIFECYCLE_STATES)} (case matters), got {state!r}"
    reference = metadata.get("externalStockReference")
    if not isinstance(reference, str) or not reference.strip():
        return "metadata.externalStockReference is required and must be a non-empty string"
    amount = _object(advert.get("suppliedPrice")).get("amountGBP")
    if amount is None:
        if state not in UNPRICED_STATES:
            return "adverts.retailAdverts.suppliedPrice.amountGBP is required: amountGBP must be whole pounds above zero"
    elif not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return f"adverts.retailAdverts.suppliedPrice.amountGBP must be whole pounds above zero, got {amount!r}"
    status = _object(advert.get("autotraderAdvert")).get("status")
    if status is not None and status not in ADVERT_STATUSES:
        return f"adverts.retailAdverts.autotraderAdvert.status must be one of {sorted(ADVERT_STATUSES)} (case matters), got {status!r}"
    return None


def _without_server_fields(body: dict) -> dict:
    """The client may not set who owns an item, its id or its version: those are the server's."""
    body = {key: value for key, value in body.items() if key != "advertiserId"}
    if isinstance(body.get("metadata"), dict):
        body["metadata"] = {k: v for k, v in body["metadata"].items() if k not in ("stockId", "versionNumber")}
    return body


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (timeout, dropped connection) is part of the simulation, not an error to print."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)):
            super().handle_error(request, client_address)


class StockApiSimulator:
    """In-memory stock per advertiser behind a real HTTP server on loopback; the port is bound on construction."""

    def __init__(self, token: str = "test-token", host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self._lock = threading.Lock()
        self._items: dict[str, dict] = {}  # stockId -> item, creation order kept by dict order
        self._idempotent: dict[tuple[str, str], tuple[int, dict]] = {}  # (advertiserId, key) -> first answer
        self._failures: list[tuple[str, float | int | None, tuple[str, ...] | None]] = []
        self._rejects: dict[str, tuple[int, str]] = {}
        self._deals: dict[str, dict] = {}  # dealId -> deal, creation order kept
        self._components: dict[tuple[str, str], dict] = {}  # (collection, id) -> component
        self.request_log: list[tuple[str, str, int]] = []
        self.writes = 0
        self._server = _QuietServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"StockApiSimulator({self.base_url})"

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def calls(self) -> int:
        return len(self.request_log)

    def start(self) -> "StockApiSimulator":
        if self._thread is None:
            # A short poll interval keeps stop() (and so every test's teardown) fast.
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="stock-api-simulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "StockApiSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # failure knobs: each queued failure is used by the next request, in the order queued

    def fail_next(self, count: int, status: int = 500, methods: tuple[str, ...] | None = None) -> None:
        """The next `count` requests (of `methods` only, when given: ("POST", "PATCH") fails writes while searches answer)."""
        with self._lock:
            self._failures += [("status", status, methods)] * count

    def rate_limit_next(self, count: int, retry_after: float = 1) -> None:
        with self._lock:
            self._failures += [("rate", retry_after, None)] * count

    def slow_next(self, count: int, seconds: float) -> None:
        """The next requests are answered (and applied) only after `seconds`, as a slow server would."""
        with self._lock:
            self._failures += [("slow", seconds, None)] * count

    def drop_next(self, count: int) -> None:
        """The next requests are read, then the connection is closed without an answer (and nothing is applied)."""
        with self._lock:
            self._failures += [("drop", None, None)] * count

    def reject(self, external_reference: str, status: int = 400, message: str = "rejected by the marketplace") -> None:
        """Refuse every create or patch of this vehicle, permanently, with this status and message."""
        with self._lock:
            self._rejects[external_reference] = (status, message)

    def reset_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._rejects.clear()

    def delete_by_hand(self, stock_id: str) -> None:
        """Mark an item DELETED as if someone removed it in the marketplace's own UI."""
        with self._lock:
            if stock_id not in self._items:
                raise KeyError(f"no stock item {stock_id}")
            metadata = self._items[stock_id]["metadata"]
            metadata["lifecycleState"] = "DELETED"
            metadata["versionNumber"] += 1

    # inspection

    def items(self, advertiser_id: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(i) for i in self._items.values() if advertiser_id is None or i["advertiserId"] == advertiser_id]

    def live_items(self, advertiser_id: str | None = None) -> list[dict]:
        return [i for i in self.items(advertiser_id) if i["metadata"]["lifecycleState"] not in GONE_STATES]

    # deals (Deal Sync): the deals and their components, and the signed notifications a receiver gets about them

    def _store_components(self, deal: dict, components: dict) -> None:
        """Keep each component given (an id assigned when it has none) and point the deal at it (called under the lock)."""
        for field, component in components.items():
            if field not in DEAL_COMPONENTS:
                raise ValueError(f"unknown deal component {field!r}; one of {sorted(DEAL_COMPONENTS)}")
            if component is None:
                deal[field] = None
                continue
            component = copy.deepcopy(component)
            component.setdefault("id", uuid.uuid4().hex)
            self._components[(DEAL_COMPONENTS[field], str(component["id"]))] = component
            deal[field] = {"id": component["id"]}

    def add_deal(self, advertiser_id: str, deal: dict, components: dict | None = None) -> str:
        """Keep a deal for the advertiser (its dealId, times, status and component links filled in when missing); its dealId.
        `components` maps partExchange / financeApplication / delivery to the component's record (ids assigned)."""
        deal = copy.deepcopy(deal)
        deal.setdefault("dealId", uuid.uuid4().hex)
        deal["advertiserId"] = str(advertiser_id)
        now = _now_iso()
        deal.setdefault("created", now)
        deal.setdefault("lastUpdated", deal["created"])
        deal.setdefault("advertiserDealStatus", "In progress")
        if deal["advertiserDealStatus"] not in DEAL_STATUSES:
            raise ValueError(f"advertiserDealStatus must be one of {sorted(DEAL_STATUSES)}, got {deal['advertiserDealStatus']!r}")
        for field in DEAL_COMPONENTS:
            deal.setdefault(field, None)
        with self._lock:
            self._store_components(deal, components or {})
            self._deals[str(deal["dealId"])] = deal
        return str(deal["dealId"])

    def update_deal(self, deal_id: str, components: dict | None = None, **changes) -> dict:
        """Change a deal as the buyer or the dealer would (objects merged key by key; `components` replaces or adds
        components); lastUpdated moves on. The deal as it now is."""
        status = changes.get("advertiserDealStatus")
        if status is not None and status not in DEAL_STATUSES:
            raise ValueError(f"advertiserDealStatus must be one of {sorted(DEAL_STATUSES)}, got {status!r}")
        with self._lock:
            deal = self._deals.get(str(deal_id))
            if deal is None:
                raise KeyError(f"no deal {deal_id}")
            _merge(deal, {key: value for key, value in changes.items() if key not in ("dealId", "advertiserId")})
            self._store_components(deal, components or {})
            deal["lastUpdated"] = _now_iso()
            return copy.deepcopy(deal)

    def deals(self, advertiser_id: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(d) for d in self._deals.values() if advertiser_id is None or d["advertiserId"] == str(advertiser_id)]

    def component(self, field: str, component_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._components[(DEAL_COMPONENTS[field], str(component_id))])

    def notification(self, deal_id: str, event: str, component: str | None = None) -> bytes:
        """The body of a Deal Sync notification about the deal (a new notification id each call): keep it to send the same bytes again."""
        if event not in DEAL_EVENTS:
            raise ValueError(f"event must be one of {sorted(DEAL_EVENTS)}, got {event!r}")
        if component is not None and component not in DEAL_COMPONENTS:
            raise ValueError(f"component must be one of {sorted(DEAL_COMPONENTS)} or None, got {component!r}")
        with self._lock:
            deal = self._deals.get(str(deal_id))
            if deal is None:
                raise KeyError(f"no deal {deal_id}")
            advertiser = deal["advertiserId"]
        data = {"dealId": str(deal_id), "advertiserId": advertiser, "event": event, "component": component}
        return json.dumps({"id": uuid.uuid4().hex, "type": "DEAL_UPDATE", "time": _now_iso(), "data": data}).encode()

    def notify(self, receiver_url: str, secret: str, deal_id: str, event: str, component: str | None = None, signature: str | None = None, body: bytes | None = None, timeout: float = 10.0) -> int:
        """POST a signed notification to `{receiver_url}/webhooks/autotrader`; the HTTP status (0: no answer). `signature`
        replaces the header's value (a forged one); `body` sends those exact bytes instead of a new notification."""
        raw = self.notification(deal_id, event, component) if body is None else body
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_autotrader(secret, raw) if signature is None else signature}
        request = urllib.request.Request(f"{receiver_url.rstrip('/')}/webhooks/autotrader", data=raw, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            error.close()
            return error.code
        except (urllib.error.URLError, OSError):
            return 0

    # request handling

    def _next_failure(self, method: str):
        """The first queued failure that applies to a request of `method`, taken off the queue."""
        with self._lock:
            for position, (kind, value, methods) in enumerate(self._failures):
                if methods is None or method in methods:
                    del self._failures[position]
                    return kind, value
            return None

    def _log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.request_log.append((method, path, status))

    def _search(self, advertiser: str, query: dict) -> tuple[int, dict]:
        try:
            size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("page", 1))
        except ValueError:
            return 400, {"message": "page and pageSize must be whole numbers"}
        if not 1 <= size <= MAX_PAGE_SIZE:
            return 400, {"message": f"pageSize must be between 1 and {MAX_PAGE_SIZE}"}
        if page < 1:
            return 400, {"message": "page must be 1 or more"}
        filters = {
            "externalStockReference": lambda i: i["metadata"].get("externalStockReference"),
            "lifecycleState": lambda i: i["metadata"].get("lifecycleState"),
            "registration": lambda i: i["vehicle"].get("registration"),
            "stockId": lambda i: i["metadata"].get("stockId"),
            "vin": lambda i: i["vehicle"].get("vin"),
        }
        wanted = {name: query[name] for name in filters if query.get(name)}
        with self._lock:
            found = [i for i in self._items.values() if i["advertiserId"] == advertiser and all(filters[n](i) == v for n, v in wanted.items())]
            results = copy.deepcopy(found[(page - 1) * size : page * size])
        return 200, {"results": results, "totalResults": len(found)}

    def _page(self, query: dict) -> tuple[int, int] | tuple[int, dict]:
        try:
            size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("page", 1))
        except ValueError:
            return 400, {"message": "page and pageSize must be whole numbers"}
        if not 1 <= size <= MAX_PAGE_SIZE:
            return 400, {"message": f"pageSize must be between 1 and {MAX_PAGE_SIZE}"}
        if page < 1:
            return 400, {"message": "page must be 1 or more"}
        return page, size

    def _deal_route(self, path: str, advertiser: str, query: dict) -> tuple[int, dict] | None:
        """The answer to a GET of the deals API, or None when `path` is not one of its routes."""
        if path == "/deals":
            paging = self._page(query)
            if isinstance(paging[1], dict):
                return paging
            page, size = paging
            with self._lock:
                found = [d for d in self._deals.values() if d["advertiserId"] == advertiser]
                results = copy.deepcopy(found[(page - 1) * size : page * size])
            return 200, {"results": results, "totalResults": len(found)}
        collection, _, record_id = path.strip("/").partition("/")
        record_id = urllib.parse.unquote(record_id)
        if not record_id or "/" in record_id:
            return None
        with self._lock:
            if collection == "deals":
                deal = self._deals.get(record_id)
                if deal is None or deal["advertiserId"] != advertiser:
                    return 404, {"message": f"deal {record_id} not found for advertiser {advertiser}"}
                return 200, copy.deepcopy(deal)
            if collection in DEAL_COMPONENTS.values():
                owners = [d for d in self._deals.values() if d["advertiserId"] == advertiser and any(_object(d.get(f)).get("id") == record_id for f, c in DEAL_COMPONENTS.items() if c == collection)]
                component = self._components.get((collection, record_id))
                if component is None or not owners:
                    return 404, {"message": f"{collection} {record_id} not found for advertiser {advertiser}"}
                return 200, copy.deepcopy(component)
        return None

    def _rejection(self, reference) -> tuple[int, dict] | None:
        if reference in self._rejects:
            status, message = self._rejects[reference]
            return status, {"message": message}
        return None

    def _remembered(self, advertiser: str, key: str | None) -> tuple[int, dict] | None:
        """The answer already given to this Idempotency-Key, if any (called under the lock)."""
        if key and (advertiser, key) in self._idempotent:
            status, answer = self._idempotent[(advertiser, key)]
            return status, copy.deepcopy(answer)
        return None

    def _store(self, advertiser: str, stock_id: str, item: dict, key: str | None, status: int) -> tuple[int, dict]:
        """Keep the item, remember the answer under its Idempotency-Key, and answer (called under the lock)."""
        self._items[stock_id] = item
        self.writes += 1
        answer = copy.deepcopy(item)
        if key:
            self._idempotent[(advertiser, key)] = (status, answer)
        return status, copy.deepcopy(answer)

    def _create(self, advertiser: str, body: dict, key: str | None) -> tuple[int, dict]:
        # One lock over look-up and write: two concurrent requests with one Idempotency-Key create one item.
        with self._lock:
            remembered = self._remembered(advertiser, key)
            if remembered:
                return remembered
            rejected = self._rejection(_object(body.get("metadata")).get("externalStockReference"))
            if rejected:
                return rejected
            problem = validate_item(body)
            if problem:
                return 400, {"message": problem}
            stock_id = uuid.uuid4().hex
            item = copy.deepcopy(_without_server_fields(body))
            item["advertiserId"] = advertiser
            item["metadata"].update({"stockId": stock_id, "versionNumber": 1})
            return self._store(advertiser, stock_id, item, key, 201)

    def _patch(self, advertiser: str, stock_id: str, body: dict, key: str | None) -> tuple[int, dict]:
        with self._lock:
            remembered = self._remembered(advertiser, key)
            if remembered:
                return remembered
            current = self._items.get(stock_id)
            if current is None or current["advertiserId"] != advertiser:
                return 404, {"message": f"stock item {stock_id} not found for advertiser {advertiser}"}
            rejected = self._rejection(current["metadata"].get("externalStockReference"))
            if rejected:
                return rejected
            merged = _merge(copy.deepcopy(current), _without_server_fields(body))
            problem = validate_item(merged)
            if problem:
                return 400, {"message": problem}
            merged["metadata"]["versionNumber"] = current["metadata"]["versionNumber"] + 1
            return self._store(advertiser, stock_id, merged, key, 200)

    def _route(self, method: str, path: str, query: dict, headers, raw: bytes) -> tuple[int, dict]:
        authorization = headers.get("Authorization") or ""
        if not hmac.compare_digest(authorization.encode(), f"Bearer {self.token}".encode()):
            return 401, {"message": "invalid or missing access token"}
        advertiser = query.get("advertiserId")
        if not advertiser:
            return 400, {"message": "advertiserId is required"}
        if method == "GET" and path == "/stock":
            return self._search(advertiser, query)
        if method == "GET":
            answer = self._deal_route(path, advertiser, query)
            if answer is not None:
                return answer
        stock_id = urllib.parse.unquote(path.removeprefix("/stock/")) if path.startswith("/stock/") else None
        if not (method == "POST" and path == "/stock") and not (method == "PATCH" and stock_id and "/" not in stock_id):
            return 404, {"message": f"no route {method} {path}"}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {"message": "the body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"message": "the body must be a JSON object"}
        key = headers.get("Idempotency-Key") or None
        if method == "POST":
            return self._create(advertiser, body, key)
        return self._patch(advertiser, stock_id, body, key)

    def _handler_class(self):
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "StockApiSimulator"

            def log_message(self, *args) -> None:
                pass

            def _reply(self, path: str, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                simulator._log(self.command, path, status)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                path = url.path
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    self.close_connection = True
                    return self._reply(path, 413 if length > 0 else 400, {"message": "bad or too large Content-Length"})
                raw = self.rfile.read(length) if length else b""
                failure = simulator._next_failure(self.command)
                if failure is not None:
                    kind, value = failure
                    if kind == "drop":
                        simulator._log(self.command, path, 0)
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if kind == "rate":
                        return self._reply(path, 429, {"message": "rate limit exceeded"}, {"Retry-After": f"{value:g}"})
                    if kind == "status":
                        return self._reply(path, value, {"message": f"simulated failure {value}"})
                    time.sleep(value)  # slow: then answered (and applied) as usual
                query = {name: values[0] for name, values in urllib.parse.parse_qs(url.query).items()}
                try:
                    status, body = simulator._route(self.command, path, query, self.headers, raw)
                except Exception as error:  # a simulator bug must show as a 500, not as a dropped connection
                    status, body = 500, {"message": f"simulator error: {type(error).__name__}: {error}"}
                self._reply(path, status, body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        return Handler


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Auto Trader Connect-style stock API simulator in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: a free port chosen by the OS (see --url-file)")
    parser.add_argument("--token", default="demo-token", help="the Bearer token clients must send")
    parser.add_argument("--url-file", default=None, help="write the URL it listens on to this file once it is listening (removed on exit)")
    args = parser.parse_args(argv)
    try:
        simulator = StockApiSimulator(token=args.token, host=args.host, port=args.port).start()
    except OSError as error:
        print(f"stock API simulator: cannot listen on {args.host}:{args.port}: {error.strerror} (already in use by another process?); use --port 0 for a free port", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` (or a container stop) shuts down as cleanly as Ctrl-C
    url_file = Path(args.url_file) if args.url_file else None
    try:
        if url_file is not None:  # written whole, then renamed into place: a reader never sees half a URL
            partial = url_file.with_name(f".{url_file.name}.{os.getpid()}.part")
            partial.write_text(simulator.base_url + "\n")
            os.replace(partial, url_file)
        print(f"stock API simulator on {simulator.base_url} (Bearer token as given by --token); Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
        if url_file is not None:
            url_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
