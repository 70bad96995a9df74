"""The lead webhook receiver (Starlette on uvicorn): authenticates each sender, lands the raw payload durably, then answers 2xx."""

import argparse
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dms_pipelines.config import ConfigError, Settings, load_settings
from dms_pipelines.leads.records import land_payload
from dms_pipelines.paths import DataPaths, config_path, data_root

SIGNATURE_HEADER = "X-Autotrader-Signature"
WEBSITE_KEY_HEADER = "X-Lead-Key"
SIGNATURE_TOLERANCE_SECONDS = 300
UNROUTED_FOLDER = "_unrouted"  # Auto Trader notifications for an advertiser no dealer has: kept, never lost

log = logging.getLogger("dms_pipelines.leads.receiver")


def sign_autotrader(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Autotrader-Signature value for `body`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def signature_problem(secret: str, header: str | None, body: bytes, now: float | None = None) -> str | None:
    """Why the signature header does not authenticate `body` (missing, malformed, stale, mismatch), or None when it does."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    stamps, signatures = [], []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        return f"malformed {SIGNATURE_HEADER} header"
    stamp = int(stamps[0])
    if abs((time.time() if now is None else now) - stamp) > SIGNATURE_TOLERANCE_SECONDS:
        return "signature timestamp outside the tolerance"
    expected = sign_autotrader(secret, body, stamp).partition(",v1=")[2].encode()
    # Every candidate is compared (no early exit), so timing says nothing about which one was close.
    matched = [hmac.compare_digest(expected, candidate.strip().encode("ascii", "replace")) for candidate in signatures]
    return None if any(matched) else "signature mismatch"


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (without reading on) as soon as its Content-Length or the bytes received pass `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def _keys_match(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class _Receiver:
    """The routes' shared state: the settings, where payloads land, the environment holding the senders' secrets."""

    def __init__(self, settings: Settings, paths: DataPaths, environ: Mapping[str, str] | None):
        self.receiver = settings.leads.receiver
        self.paths = paths
        self.environ = os.environ if environ is None else environ
        self.dealer_ids = frozenset(dealer.id for dealer in settings.dealers)
        self.dealer_by_advertiser: dict[str, str] = {}
        for dealer in settings.dealers:
            account = dealer.marketplaces.get("autotrader")
            advertiser = account.setting("advertiser_id") if account is not None else None
            if advertiser:
                self.dealer_by_advertiser.setdefault(advertiser, dealer.id)

    def secret(self, variable: str | None) -> str | None:
        return self.environ.get(variable) if variable else None

    @staticmethod
    def answer(request: Request, route: str, status: int, body: dict, dealer: str | None = None, landed: str | None = None, reason: str | None = None) -> JSONResponse:
        """The JSON response, and the request's one log line (never the body, never a secret)."""
        level = logging.INFO if status < 400 else logging.WARNING
        line = f"{route} dealer={dealer or '-'} status={status} landed={landed or '-'}"
        if reason:
            line += f" client={_client(request)} reason={reason}"
        log.log(level, line)
        return JSONResponse(body, status_code=status)

    async def body(self, request: Request, route: str, dealer: str | None) -> bytes | JSONResponse:
        try:
            return await _read_body(request, self.receiver.max_body_bytes)
        except _BodyTooLarge:
            return self.answer(request, route, 413, {"error": f"the body is over {self.receiver.max_body_bytes} bytes"}, dealer, reason="body too large")
        except ClientDisconnect:
            return self.answer(request, route, 400, {"error": "the client disconnected before sending the whole body"}, dealer, reason="client disconnected mid-body")

    async def land(self, request: Request, route: str, folder_name: str, source: str, raw: bytes, status: int = 200) -> JSONResponse:
        """Land the payload (fsynced, off the event loop), and only then answer 2xx; a write failure is a 503 the sender retries."""
        try:
            path = await run_in_threadpool(land_payload, self.paths.lead_landing / folder_name, source, raw)
        except OSError as error:
            return self.answer(request, route, 503, {"error": "the lead could not be stored; send it again later"}, folder_name, reason=f"write failed: {type(error).__name__} errno={error.errno}")
        return self.answer(request, route, status, {"landed": path.name}, folder_name, landed=path.name)

    def refuse(self, request: Request, route: str, reason: str, dealer: str | None = None) -> JSONResponse:
        return self.answer(request, route, 403, {"error": "forbidden"}, dealer, reason=reason)

    async def autotrader(self, request: Request) -> Response:
        route = "POST /webhooks/autotrader"
        raw = await self.body(request, route, None)
        if isinstance(raw, Response):
            return raw
        variable = self.receiver.autotrader_secret_env
        secret = self.secret(variable)
        if not secret:
            return self.refuse(request, route, f"the secret variable {variable or '(autotrader_secret_env not configured)'} is unset")
        problem = signature_problem(secret, request.headers.get(SIGNATURE_HEADER), raw)
        if problem:
            return self.refuse(request, route, problem)
        try:
            notification = json.loads(raw)
        except ValueError:
            notification = None
        data = notification.get("data") if isinstance(notification, dict) else None
        advertiser = data.get("advertiserId") if isinstance(data, dict) else None
        dealer = self.dealer_by_advertiser.get(str(advertiser)) if isinstance(advertiser, (str, int)) and not isinstance(advertiser, bool) else None
        if dealer is None:
            # Signed by Auto Trader, but for no dealer we know (or unreadable): kept for a person to look at.
            return await self.land(request, route, UNROUTED_FOLDER, "autotrader", raw, status=202)
        return await self.land(request, route, dealer, "autotrader", raw)

    async def google(self, request: Request) -> Response:
        dealer = request.path_params["dealer_id"]
        route = "POST /webhooks/google/{dealer_id}"
        raw = await self.body(request, route, None)
        if isinstance(raw, Response):
            return raw
        try:
            form = json.loads(raw)
        except ValueError:
            form = None
        if not isinstance(form, dict):
            # The key is inside the body: a body that is not a JSON object cannot be authenticated, only refused.
            return self.answer(request, route, 400, {"error": "the body must be a JSON object"}, reason="not a JSON object")
        variable = self.receiver.google_key_env
        expected = self.secret(variable)
        if not expected:
            return self.refuse(request, route, f"the key variable {variable or '(google_key_env not configured)'} is unset")
        if not _keys_match(expected, form.get("google_key")):
            return self.refuse(request, route, "wrong or missing google_key")
        if dealer not in self.dealer_ids:
            return self.answer(request, route, 404, {"error": "unknown dealer"}, reason="unknown dealer")
        return await self.land(request, route, dealer, "google", raw)

    async def website(self, request: Request) -> Response:
        dealer = request.path_params["dealer_id"]
        route = "POST /webhooks/website/{dealer_id}"
        variable = self.receiver.website_key_env
        expected = self.secret(variable)
        if not expected:
            return self.refuse(request, route, f"the key variable {variable or '(website_key_env not configured)'} is unset")
        if not _keys_match(expected, request.headers.get(WEBSITE_KEY_HEADER)):
            return self.refuse(request, route, f"wrong or missing {WEBSITE_KEY_HEADER} header")
        if dealer not in self.dealer_ids:
            return self.answer(request, route, 404, {"error": "unknown dealer"}, reason="unknown dealer")
        raw = await self.body(request, route, dealer)
        if isinstance(raw, Response):
            return raw
        return await self.land(request, route, dealer, "website", raw)

    async def health(self, request: Request) -> Response:
        return JSONResponse("ok")


async def _http_error(request: Request, error: HTTPException) -> Response:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


async def _server_error(request: Request, error: Exception) -> Response:
    log.error("%s %s status=500 error=%s", request.method, request.url.path, type(error).__name__)
    return JSONResponse({"error": "internal error"}, status_code=500)


def create_app(settings: Settings, paths: DataPaths, environ: Mapping[str, str] | None = None) -> Starlette:
    """The receiver's ASGI app; the senders' secrets are read from `environ` (default os.environ) at each request."""
    receiver = _Receiver(settings, paths, environ)
    routes = [
        Route("/webhooks/autotrader", receiver.autotrader, methods=["POST"]),
        Route("/webhooks/google/{dealer_id}", receiver.google, methods=["POST"]),
        Route("/webhooks/website/{dealer_id}", receiver.website, methods=["POST"]),
        Route("/health", receiver.health, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})


class ReceiverServer:
    """The receiver on uvicorn in a background thread, on host:port (port 0: a free port); `url` once started."""

    def __init__(self, settings: Settings, paths: DataPaths, host: str = "127.0.0.1", port: int = 0, environ: Mapping[str, str] | None = None):
        self.app = create_app(settings, paths, environ)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._bound: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"ReceiverServer({self._bound and self.url})"

    @property
    def url(self) -> str:
        if self._bound is None:
            raise RuntimeError("the receiver is not started")
        host, port = self._bound
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self, timeout: float = 10.0) -> "ReceiverServer":
        if self._thread is not None:
            return self
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="lead-receiver", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                raise OSError(f"the lead receiver could not listen on {self.host}:{self.port} (already in use?)")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        self._bound = server.servers[0].sockets[0].getsockname()[:2]
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None
            self._server = None

    def __enter__(self) -> "ReceiverServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the lead webhook receiver (Auto Trader Deal Sync, Google lead forms, the website form) in the foreground.")
    parser.add_argument("--host", default=None, help="default: leads.receiver.host of the configuration")
    parser.add_argument("--port", type=int, default=None, help="default: leads.receiver.port of the configuration; 0: a free port chosen by the OS (see --url-file)")
    parser.add_argument("--url-file", default=None, help="write the URL it listens on to this file once it is listening (removed on exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config_path())
    except ConfigError as error:
        print(f"lead receiver: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    host = settings.leads.receiver.host if args.host is None else args.host
    port = settings.leads.receiver.port if args.port is None else args.port
    try:
        server = ReceiverServer(settings, DataPaths(data_root()), host=host, port=port).start()
    except OSError as error:
        print(f"lead receiver: {error}; use --port 0 for a free port", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` (or a container stop) shuts down as cleanly as Ctrl-C
    url_file = Path(args.url_file) if args.url_file else None
    try:
        if url_file is not None:  # written whole, then renamed into place: a reader never sees half a URL
            partial = url_file.with_name(f".{url_file.name}.{os.getpid()}.part")
            partial.write_text(server.url + "\n")
            os.replace(partial, url_file)
        print(f"lead receiver on {server.url}; Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if url_file is not None:
            url_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
