"""A local HTTP/1.1 image server for the demo, the tests and the image bench: ranges, validators (304), redirects, delays and failure knobs."""

import asyncio
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable

REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
MAX_HEAD_BYTES = 64 * 1024  # a request head longer than this is refused (400) and the connection closed


@dataclass(frozen=True)
class Served:
    """What the server answers for one path: the body and its validators, or a status, a redirect, a delay."""

    body: bytes = field(repr=False)
    content_type: str
    etag: str  # quoted, as sent: '"abc"'
    last_modified: str  # an HTTP-date
    status: int = 200
    redirect_to: str | None = None  # an absolute or relative URL: answered with `status` if a 3xx, else 302
    delay: float = 0.0  # seconds before the answer starts (a slow host; longer than the client's timeout: a timeout)


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    keep_alive: bool


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one range asked for as (first, last), "unsatisfiable", or None for the whole body (no header, several ranges, unreadable)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            length = int(last)
            return (max(0, size - length), size - 1) if length > 0 and size else "unsatisfiable"
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def _not_modified(request: _Request, served: Served) -> bool:
    """RFC 9110: If-None-Match decides when sent; otherwise If-Modified-Since (a GET or HEAD not changed since)."""
    tags = request.headers.get("if-none-match")
    if tags is not None:
        wanted = {tag.strip().removeprefix("W/") for tag in tags.split(",")}
        return "*" in wanted or served.etag.removeprefix("W/") in wanted
    since = request.headers.get("if-modified-since")
    if since is None or not served.last_modified:
        return False
    if since == served.last_modified:
        return True
    try:
        return parsedate_to_datetime(served.last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive (pipelined ones in order), each answered at once or after its delay."""

    def __init__(self, server: "ImageServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting = False  # a delayed answer is pending: later requests wait behind it

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server._connections.add(self)

    def connection_lost(self, exc) -> None:
        self.server._connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._answer_waiting_requests()

    def _answer_waiting_requests(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._write(400, {"Content-Type": "text/plain"}, b"request head too long", keep_alive=False)
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            request = self._parse(head)
            if request is None:
                self._write(400, {"Content-Type": "text/plain"}, b"bad request", keep_alive=False)
                return
            self.server.requests += 1
            try:
                served = self.server._resolve(request.path)
            except Exception as error:  # a resolver's bug is the client's 500, not a dead connection
                served = Served(f"{type(error).__name__}: {error}".encode(), "text/plain", "", "", status=500)
            delay = served.delay if served is not None else 0.0
            if delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(delay, self._answer_later, request, served)
            else:
                self._answer(request, served)

    def _answer_later(self, request: _Request, served: Served | None) -> None:
        self.waiting = False
        if self.transport is not None:
            self._answer(request, served)
            self._answer_waiting_requests()

    def _parse(self, head: str) -> _Request | None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return None
        headers = {}
        for line in lines[1:]:
            name, separator, value = line.partition(":")
            if separator:
                headers[name.strip().lower()] = value.strip()
        if headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers:
            return None  # GET and HEAD only: a request with a body is not one of ours
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if parts[2] == "HTTP/1.1" else connection == "keep-alive"
        return _Request(parts[0], parts[1].split("?", 1)[0], headers, keep_alive)

    def _answer(self, request: _Request, served: Served | None) -> None:
        server = self.server
        if request.method not in ("GET", "HEAD"):
            return self._write(405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"}, b"GET or HEAD only", request)
        failing = server._failing_status(request.path)
        if failing is not None:
            status, retry_after = failing
            headers = {"Content-Type": "text/plain", **({"Retry-After": retry_after} if retry_after is not None else {})}
            return self._write(status, headers, b"failing on purpose", request)
        if served is None:
            return self._write(404, {"Content-Type": "text/plain"}, b"no such image", request)
        validators = {"ETag": served.etag, "Last-Modified": served.last_modified} if served.etag else {"Last-Modified": served.last_modified}
        if served.redirect_to is not None:
            status = served.status if 300 <= served.status < 400 else 302
            return self._write(status, {"Location": served.redirect_to, "Content-Type": "text/plain"}, b"", request)
        if served.status != 200:
            return self._write(served.status, {"Content-Type": served.content_type}, served.body, request)
        if _not_modified(request, served):
            server.not_modified += 1
            return self._write(304, validators, b"", request, length=False)
        size = len(served.body)
        wanted = _byte_range(request.headers.get("range"), size) if server.honour_range else None
        headers = {"Content-Type": served.content_type, "Accept-Ranges": "bytes" if server.honour_range else "none", **validators}
        if wanted == "unsatisfiable":
            return self._write(416, {**headers, "Content-Range": f"bytes */{size}"}, b"", request)
        if wanted is None:
            return self._write(200, headers, served.body, request)
        first, last = wanted
        return self._write(206, {**headers, "Content-Range": f"bytes {first}-{last}/{size}"}, memoryview(served.body)[first : last + 1], request)

    def _write(self, status: int, headers: dict, body, request: _Request | None = None, keep_alive: bool = True, length: bool = True) -> None:
        keep_alive = keep_alive and request is not None and request.keep_alive and not self.server._closing
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if length:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not body or (request is not None and request.method == "HEAD"):
            self.transport.write(head)
        else:
            self.transport.writelines((head, body))
        if not keep_alive:
            self.transport.close()
            self.transport = None


class ImageServer:
    """Serves what `resolve(path)` gives for each path (None: 404) on a loopback port, from a background thread with its own loop.

    `requests` counts the requests answered (all paths); `not_modified` the 304s. `fail(times)` makes the next `times`
    requests (of one path, or of any) answer 503 (or another status) first; `honour_range = False` answers every Range
    request with the whole body (200), as servers that ignore Range do; `stop()` closes the port (a host that is down)."""

    def __init__(self, resolve: Callable[[str], Served | None], host: str = "127.0.0.1", port: int = 0) -> None:
        self._resolve = resolve
        self.host = host
        self.port = port
        self.requests = 0
        self.not_modified = 0
        self.honour_range = True
        self._failures: dict[str | None, list] = {}  # path (None: any) -> [times left, status, Retry-After]
        self._connections: set[_Connection] = set()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def fail(self, times: int, path: str | None = None, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next `times` requests of `path` (None: of any path) with `status` before serving normally again."""
        self._failures[path] = [times, status, retry_after]

    def _failing_status(self, path: str) -> tuple[int, str | None] | None:
        for key in (path, None):
            failure = self._failures.get(key)
            if failure is not None and failure[0] > 0:
                failure[0] -= 1
                return failure[1], failure[2]
        return None

    def start(self) -> "ImageServer":
        started = threading.Event()
        problems: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(loop.create_server(lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=1024))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as error:  # the caller hears of it (a port in use) instead of waiting forever
                problems.append(error)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._closing = False
        self._thread = threading.Thread(target=serve, name=f"image-server-{self.port}", daemon=True)
        self._thread.start()
        started.wait()
        if problems:
            raise problems[0]
        return self

    def stop(self) -> None:
        """Close the port and every open connection: the host is down until start() again (on the same port)."""
        if self._loop is None or self._thread is None:
            return

        def close() -> None:
            self._closing = True
            self._server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.abort()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(10)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> "ImageServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
