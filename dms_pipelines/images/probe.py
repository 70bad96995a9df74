"""Each image looked at over HTTP before a listing goes out: reachable, format, pixel and byte size from its first bytes, revalidated by ETag."""

import asyncio
import ipaddress
import logging
import os
import random
import socket
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from io import BytesIO
from typing import Callable, Iterable

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from PIL import Image, UnidentifiedImageError
from yarl import URL

from dms_pipelines.config import ImageSettings

log = logging.getLogger(__name__)

CHECK_STATUSES = ("ok", "unreachable", "http_error", "not_an_image", "broken", "too_large", "blocked")
CONTENT_STATUSES = frozenset({"ok", "not_an_image", "broken", "too_large"})  # what the bytes said: worth revalidating by ETag
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HOST_FAILURES_TO_OPEN = 3  # images of one host failing to connect or answer in a row (no answer between): the host is down
PROGRESS_EVERY = 1000
LONGER_READ_BYTES = 1024 * 1024  # read once more, this far, when the first header_bytes did not say what the image is
BACKOFF_SECONDS = 0.2  # first retry after 0.1-0.2 s, then twice as long each time
MAX_RETRY_AFTER_SECONDS = 5.0  # a longer Retry-After is cut to this: a nightly check does not wait minutes for one image
REQUEST_HEADERS = {"User-Agent": "dms-pipelines image check", "Accept": "image/*,*/*;q=0.8", "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """One look at one image URL: what answered, and what the first bytes say the image is."""

    url: str
    status: str  # one of CHECK_STATUSES
    http_status: int | None
    content_type: str | None
    format: str | None  # Pillow's format name: JPEG, PNG, WEBP, GIF...
    width: int | None
    height: int | None
    byte_size: int | None  # the whole file's size (Content-Range total, else Content-Length)
    etag: str | None
    last_modified: str | None
    reason: str | None  # plain words for the operator; None when ok
    checked_at: datetime  # UTC, aware

    def __post_init__(self) -> None:
        if self.status not in CHECK_STATUSES:
            raise ValueError(f"image check status must be one of {CHECK_STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def seen_again(self, checked_at: datetime) -> "ImageCheck":
        """The same check, confirmed unchanged at `checked_at` (a 304)."""
        return ImageCheck(self.url, self.status, self.http_status, self.content_type, self.format, self.width, self.height, self.byte_size, self.etag, self.last_modified, self.reason, checked_at)

    def as_row(self) -> dict:
        """The check as the store keeps it (operations.image_store)."""
        return {name: getattr(self, name) for name in ROW_FIELDS}

    @classmethod
    def from_row(cls, row: dict) -> "ImageCheck":
        """A check from a stored row (other keys, such as url_hash, are ignored); checked_at read as UTC when naive."""
        get = row.get
        checked_at = get("checked_at")
        if isinstance(checked_at, str):
            checked_at = datetime.fromisoformat(checked_at)
        if checked_at.tzinfo is None:
            checked_at = checked_at.replace(tzinfo=timezone.utc)
        return cls(
            get("url"),
            _shared(get("status")),
            _whole_number(get("http_status")),
            _shared(get("content_type")),
            _shared(get("format")),
            _whole_number(get("width")),
            _whole_number(get("height")),
            _whole_number(get("byte_size")),
            get("etag"),
            get("last_modified"),
            get("reason"),
            checked_at,
        )


ROW_FIELDS = tuple(item.name for item in fields(ImageCheck))


def _whole_number(value) -> int | None:
    return value if value is None or type(value) is int else int(value)


def _shared(value: str | None) -> str | None:
    """One string object for each of the few values a column takes, not one per image read back from the store."""
    return value if value is None else sys.intern(value)


@dataclass
class ProbeRun:
    """What one probe found, with what it cost."""

    checks: dict[str, ImageCheck]  # every URL asked for
    requested: int  # HTTP requests made (all attempts, redirects included)
    not_modified: int  # answered 304 (cached check kept, checked_at refreshed)
    trusted: int  # taken from the cache without a request (revalidate_after_hours)
    failed_hosts: dict[str, str]  # host -> one reason (reported once)
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)  # how many checks have each status

    def __post_init__(self) -> None:
        if not self.statuses:
            self.statuses = dict(Counter(check.status for check in self.checks.values()))


def is_refused_address(address: str) -> bool:
    """Whether an address is one a check must not reach: private, loopback, link-local, reserved, multicast, unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global


def host_key(url: URL | str) -> str:
    """How a host is named in failed_hosts (and limited, and given up on): its name, with the port when not the scheme's own."""
    url = URL(url) if isinstance(url, str) else url
    return url.host if url.is_default_port() else f"{url.host}:{url.port}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class _Refused(Exception):
    """A host that may not be reached: it resolves to a private address."""


class _GuardedResolver(AbstractResolver):
    """Resolves each host once per run (loop.getaddrinfo) and gives the connector only hosts whose every address may be
    reached, so the address checked is the address connected to (no second lookup for a rebinding DNS to answer)."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self._allowed = allowed
        self._resolver = ThreadedResolver()
        self._answers: dict[tuple[str, int], asyncio.Future] = {}

    async def addresses(self, host: str, port: int) -> list[dict]:
        answer = self._answers.get((host, port))
        if answer is None:
            answer = self._answers[(host, port)] = asyncio.ensure_future(self._lookup(host, port))
        return await asyncio.shield(answer)

    async def _lookup(self, host: str, port: int) -> list[dict]:
        results = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
        if host.lower() not in self._allowed:
            refused = [result["host"] for result in results if is_refused_address(result["host"])]
            if refused:
                raise _Refused(f"{host} resolves to a private address ({refused[0]}); allowed_private_hosts does not name it")
        return results

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[dict]:
        results = await self.addresses(host, port)
        return [result for result in results if family == socket.AF_UNSPEC or result["family"] == family]

    async def close(self) -> None:
        await self._resolver.close()


def webp_size(head: bytes) -> tuple[int, int, int]:
    """Width, height and the size the file declares (RIFF), from a WebP's first 30 bytes. Pillow's WebP reader hands the
    whole file to libwebp's demuxer, which refuses one cut short: the first bytes of a WebP larger than the range read."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:  # extended (alpha, animation, metadata): the canvas size, less one
        width, height = 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    elif chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":  # lossy: the key frame's header
        width, height = int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    elif chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:  # lossless: 14 bits each, less one
        bits = int.from_bytes(head[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    else:
        raise ValueError(f"no VP8, VP8L or VP8X header where a WebP has one (found {chunk!r})")
    return width, height, int.from_bytes(head[4:8], "little") + 8


def identify(head: bytes) -> tuple[str, int, int]:
    """The format name (Pillow's), width and height from an image's first bytes; the pixels are not decoded."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        width, height, _ = webp_size(head)
        return "WEBP", width, height
    with Image.open(BytesIO(head)) as image:
        return image.format, image.width, image.height


def examine(head: bytes, byte_size: int | None) -> tuple[str, str | None, int | None, int | None, str | None]:
    """What an image's first bytes say: (status, format, width, height, reason), status ok, broken or too_large."""
    try:
        image_format, width, height = identify(head)
    except Image.DecompressionBombError as error:
        return "too_large", None, None, None, f"too many pixels to be a photograph ({error})"[:300]
    except UnidentifiedImageError:
        return "broken", None, None, None, f"no image format Pillow knows begins its first {len(head)} bytes"
    except Exception as error:  # the readers raise many kinds on damaged bytes: each one is a broken image
        return "broken", None, None, None, f"Pillow cannot read it: {type(error).__name__}: {error}"[:300]
    if image_format == "WEBP" and byte_size is not None:
        declared = webp_size(head)[2]
        if declared > byte_size:
            return "broken", image_format, width, height, f"cut short: the file says it has {declared} bytes, the server has {byte_size}"
    return "ok", image_format, width, height, None


def _size_of_whole(headers, status: int) -> int | None:
    """The whole file's size: the total of a 206's Content-Range, or a 200's Content-Length; None when not told."""
    if status == 206:
        total = headers.get("Content-Range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _is_transient_status(status: int) -> bool:
    return status in (408, 425, 429) or (500 <= status <= 599 and status not in (501, 505))


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


class _Prober:
    """The state of one run: counters, hosts found down, one slot pool per host; `check(url)` looks at one image."""

    def __init__(self, settings: ImageSettings, cached: dict[str, ImageCheck], now: datetime, session: aiohttp.ClientSession, resolver: _GuardedResolver) -> None:
        self.settings = settings
        self.cached = cached
        self.now = now
        self.session = session
        self.resolver = resolver
        self.allowed = frozenset(host.lower() for host in settings.allowed_private_hosts)
        self.trust_after = now - timedelta(hours=settings.revalidate_after_hours) if settings.revalidate_after_hours > 0 else None
        self.timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self.range = {"Range": f"bytes=0-{settings.header_bytes - 1}"}
        self.longer_read = max(settings.header_bytes, min(settings.max_bytes, LONGER_READ_BYTES))
        self.requested = self.not_modified = self.trusted = 0
        self.failed_hosts: dict[str, str] = {}
        self._failing: dict[str, set[str]] = {}  # host -> images that failed to connect since its last answer
        self._answered: set[str] = set()
        self._unreachable: dict[str, str] = {}  # host -> the last reason an image of it was unreachable
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._rng = random.Random()

    def _made(self, url: str, status: str, reason: str | None, http_status: int | None = None, content_type: str | None = None, **found) -> ImageCheck:
        values = {"format": None, "width": None, "height": None, "byte_size": None, "etag": None, "last_modified": None, **found}
        return ImageCheck(url, status, http_status, content_type, reason=reason, checked_at=self.now, **values)

    def _trusted(self, cached: ImageCheck) -> bool:
        """A recent check of what the server said is kept as it is; a failure that may pass (a host down, a 503) never is."""
        if self.trust_after is None or cached.checked_at < self.trust_after:
            return False
        return cached.status in CONTENT_STATUSES or (cached.status == "http_error" and cached.http_status is not None and not _is_transient_status(cached.http_status))

    def _headers(self, cached: ImageCheck | None) -> dict:
        if cached is None or cached.status not in CONTENT_STATUSES or not (cached.etag or cached.last_modified):
            return self.range
        headers = dict(self.range)
        if cached.etag:
            headers["If-None-Match"] = cached.etag
        if cached.last_modified:
            headers["If-Modified-Since"] = cached.last_modified
        return headers

    async def check(self, url: str) -> ImageCheck:
        cached = self.cached.get(url)
        if cached is not None and self._trusted(cached):
            self.trusted += 1
            return cached
        headers = self._headers(cached)
        conditional = headers is not self.range
        limit = self.settings.header_bytes
        target, hops = url, 0
        while True:
            try:
                parsed = URL(target)
            except (ValueError, TypeError):
                return self._made(url, "blocked", f"not a valid URL: {target!r}")
            refusal = await self._refusal(url, parsed)
            if refusal is not None:
                return refusal
            kind, found = await self._fetch(url, parsed, headers, limit)
            if kind == "redirect":
                if hops == self.settings.max_redirects:
                    return self._made(url, "http_error", f"more than {self.settings.max_redirects} redirects (the last to {found})", http_status=found.status)
                target, hops = found.location, hops + 1
            elif kind == "read_longer":
                limit = self.longer_read
                headers = {"Range": f"bytes=0-{limit - 1}"}
            elif kind == "not_modified":
                if not conditional:
                    return self._made(url, "http_error", "the server answered 304 Not Modified to a plain request", http_status=304)
                self.not_modified += 1
                return cached.seen_again(self.now)
            else:
                return found

    async def _refusal(self, url: str, parsed: URL) -> ImageCheck | None:
        """Why a URL (or a redirect's target) is not fetched: not http(s), a private address, a host already found down."""
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return self._made(url, "blocked", f"only http and https URLs are fetched, not {str(parsed)[:80]!r}")
        host = parsed.host
        down = self.failed_hosts.get(host_key(parsed))
        if down is not None:
            return self._made(url, "unreachable", down)
        if host.lower() in self.allowed:
            return None
        if _is_ip_literal(host):
            return self._made(url, "blocked", f"{host} is a private address; allowed_private_hosts does not name it") if is_refused_address(host) else None
        try:
            await self.resolver.addresses(host, parsed.port or 0)
        except _Refused as error:
            return self._made(url, "blocked", str(error))
        except OSError as error:
            reason = f"{host} could not be resolved ({error.strerror or error})"
            self._open_circuit(host_key(parsed), reason)
            return self._made(url, "unreachable", reason)
        return None

    def _open_circuit(self, host: str, reason: str) -> None:
        if host not in self.failed_hosts:
            self.failed_hosts[host] = reason
            log.warning("images on %s are not checked further in this run: %s", host, reason)

    def _failed(self, host: str, url: str, reason: str) -> bool:
        """Note a failure to connect or to be answered; whether the host is now taken as down (its circuit open)."""
        if host in self.failed_hosts:
            return True
        failing = self._failing.setdefault(host, set())
        failing.add(url)
        if len(failing) >= HOST_FAILURES_TO_OPEN:
            self._open_circuit(host, reason)
            return True
        return False

    def _backoff(self, attempt: int) -> float:
        return BACKOFF_SECONDS * 2 ** (attempt - 1) * self._rng.uniform(0.5, 1.0)

    def _described(self, error: BaseException, parsed: URL) -> str:
        where = f"{parsed.host}:{parsed.port}"
        if isinstance(error, asyncio.TimeoutError):
            return f"{where} did not answer within {self.settings.timeout_seconds:g} s"
        if isinstance(error, aiohttp.ClientConnectorError):
            cause = error.os_error
            return f"cannot connect to {where} ({os.strerror(cause.errno) if cause.errno else cause})" if isinstance(cause, OSError) else f"cannot connect to {where}"
        if isinstance(error, aiohttp.ServerDisconnectedError):
            return f"{where} closed the connection without answering"
        return f"{where}: {type(error).__name__}: {error}"[:300]

    async def _fetch(self, url: str, parsed: URL, headers: dict, limit: int) -> tuple[str, object]:
        """One request, retried on transient faults: ("check", ImageCheck), ("redirect", _Redirect), ("not_modified", None)
        or ("read_longer", None) when the first `limit` bytes did not say what the image is."""
        host = host_key(parsed)
        slots = self._slots.get(host)
        if slots is None:
            slots = self._slots[host] = asyncio.Semaphore(self.settings.per_host_concurrency)
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            wait = None
            try:
                async with slots:
                    down = self.failed_hosts.get(host)  # asked once a slot is free: the host may have been found down meanwhile
                    if down is not None:
                        return "check", self._made(url, "unreachable", down)
                    self.requested += 1
                    async with self.session.get(parsed, headers=headers, allow_redirects=False, timeout=self.timeout) as response:
                        self._answered.add(host)
                        self._failing.pop(host, None)
                        kind, found = await self._answer(url, response, limit)
                if kind != "retry":
                    return kind, found
                status, retry_after = found
                if attempt == attempts:
                    return "check", self._made(url, "http_error", f"the server answered {status} {attempts} times", http_status=status)
                wait = max(retry_after, self._backoff(attempt))
            except aiohttp.InvalidURL:
                return "check", self._made(url, "blocked", f"not a valid URL: {str(parsed)[:80]!r}")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                reason = self._described(error, parsed)
                if self._failed(host, url, reason):
                    return "check", self._made(url, "unreachable", self.failed_hosts[host])
                if attempt == attempts:
                    self._unreachable[host] = reason
                    return "check", self._made(url, "unreachable", reason)
                wait = self._backoff(attempt)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns")

    async def _answer(self, url: str, response: aiohttp.ClientResponse, limit: int) -> tuple[str, object]:
        status = response.status
        headers = response.headers
        if status in REDIRECT_STATUSES:
            location = headers.get("Location")
            if not location:
                return "check", self._made(url, "http_error", f"a {status} redirect without a Location", http_status=status)
            try:
                return "redirect", _Redirect(status, str(response.url.join(URL(location))))
            except ValueError:
                return "check", self._made(url, "http_error", f"a {status} redirect to an unreadable Location {location[:80]!r}", http_status=status)
        if status == 304:
            return "not_modified", None
        if _is_transient_status(status):
            return "retry", (status, _retry_after(headers.get("Retry-After")))
        if status not in (200, 206):
            return "check", self._made(url, "http_error", f"the server answered {status} {response.reason or ''}".strip(), http_status=status)
        raw_type = headers.get("Content-Type")
        content_type = sys.intern(raw_type.split(";", 1)[0].strip().lower()) if raw_type else None  # one string for each type, not one per image
        found = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"), "byte_size": _size_of_whole(headers, status)}
        if not content_type or not content_type.startswith("image/"):
            response.close()
            return "check", self._made(url, "not_an_image", f"served as {content_type or 'no content type'}, not as an image", status, content_type, **found)
        if found["byte_size"] is not None and found["byte_size"] > self.settings.max_bytes:
            response.close()
            return "check", self._made(url, "too_large", f"{_mib(found['byte_size'])}, more than the {_mib(self.settings.max_bytes)} allowed", status, content_type, **found)
        head, body_read = await self._head(response, limit)
        if found["byte_size"] is None and body_read and (status == 200 or len(head) < limit):  # told no size, but sent it all
            found["byte_size"] = len(head)
        whole_file = found["byte_size"] is not None and len(head) >= found["byte_size"]
        verdict, image_format, width, height, reason = examine(head, found["byte_size"])
        if verdict == "broken" and image_format is None and not whole_file and limit < self.longer_read:
            return "read_longer", None  # metadata (EXIF, ICC, XMP) may put the frame header past the first bytes
        return "check", self._made(url, verdict, reason, status, content_type, format=image_format, width=width, height=height, **found)

    async def _head(self, response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
        """At most `limit` bytes of the body (a server that ignored the Range is cut off there), and whether that was all of it."""
        length = response.content_length
        if length is not None and length <= limit:
            return await response.read(), True
        parts, size = [], 0
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        whole = response.content.at_eof()
        if not whole:
            response.close()  # the rest is not wanted: drop the connection rather than read it
        return b"".join(parts), whole

    def finish(self) -> None:
        """Hosts that never answered in this run are reported once each, like those whose circuit opened."""
        for host, reason in self._unreachable.items():
            if host not in self._answered:
                self._open_circuit(host, reason)


@dataclass(frozen=True)
class _Redirect:
    status: int
    location: str

    def __str__(self) -> str:
        return self.location


async def _probe(urls: list[str], settings: ImageSettings, cached: dict[str, ImageCheck], now: datetime, progress: Callable[[int, int], None] | None) -> ProbeRun:
    started = time.perf_counter()
    resolver = _GuardedResolver(frozenset(host.lower() for host in settings.allowed_private_hosts))
    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=settings.per_host_concurrency, resolver=resolver)
    checks: dict[str, ImageCheck] = {}
    total, done = len(urls), 0
    pending = iter(urls)  # shared by the workers: one URL taken at a time, so memory follows the workers, not the URLs
    async with aiohttp.ClientSession(connector=connector, headers=REQUEST_HEADERS, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False) as session:
        prober = _Prober(settings, cached, now, session, resolver)

        async def work() -> None:
            nonlocal done
            for url in pending:
                checks[url] = await prober.check(url)
                done += 1
                if progress is not None and done % PROGRESS_EVERY == 0 and done < total:
                    progress(done, total)

        await asyncio.gather(*(work() for _ in range(min(settings.concurrency, total))))
        prober.finish()
    if progress is not None:
        progress(done, total)
    return ProbeRun(checks, prober.requested, prober.not_modified, prober.trusted, prober.failed_hosts, time.perf_counter() - started)


def changed_checks(cached: dict[str, ImageCheck], checks: dict[str, ImageCheck]) -> list[ImageCheck]:
    """The checks that found something other than the cached one did (when each was made aside): the only ones worth
    writing back, so that a night of 304s writes nothing (and a check's checked_at is when its image was last fetched)."""
    return [check for url, check in checks.items() if (before := cached.get(url)) is None or before.seen_again(check.checked_at) != check]


def probe_images(
    urls: Iterable[str],
    settings: ImageSettings,
    cached: dict[str, ImageCheck] | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeRun:
    """Look at every image URL (each once): a cached check is revalidated (If-None-Match / If-Modified-Since, a 304 keeps
    it) or trusted when younger than revalidate_after_hours. Runs its own event loop: from plain code, or from a thread
    whose loop is running (then in a fresh thread). `progress(done, total)` is called every 1000 images and at the end."""
    wanted = list(dict.fromkeys(urls))
    now = now or datetime.now(timezone.utc)
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now

    def run() -> ProbeRun:
        return asyncio.run(_probe(wanted, settings, cached or {}, now, progress))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(1, thread_name_prefix="image-probe") as pool:
        return pool.submit(run).result()
