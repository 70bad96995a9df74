"""Client for an incremental stock API (create, patch, search by advertiser), with timeouts and one retry layer."""

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime

from dms_pipelines.delivery.retry import TRANSIENT_STATUSES, RetryPolicy, call_with_retries, is_transient_status

__all__ = ["PAGE_SIZE", "TRANSIENT_STATUSES", "ApiError", "StockApiClient"]

log = logging.getLogger(__name__)

PAGE_SIZE = 200  # the API's maximum pageSize
_MESSAGE_LIMIT = 500


class ApiError(Exception):
    """A failed call: `transient` says whether trying again may help; `message` is the marketplace's own words.

    `status` is the HTTP status, or None when no answer arrived (timeout, refused or dropped connection);
    `retry_after` is the server's Retry-After in seconds, if it sent one; `request` names the call ("POST /stock").
    """

    def __init__(self, message: str, *, status: int | None, transient: bool, retry_after: float | None = None, request: str | None = None):
        self.message = message
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.request = request
        super().__init__(message)

    def __str__(self) -> str:
        text = f"HTTP {self.status}: {self.message}" if self.status is not None else self.message
        return f"{self.request} -> {text}" if self.request else text

    def __reduce__(self):
        # Keyword-only arguments would otherwise break pickling (multiprocess executors move errors between processes).
        return _rebuild_api_error, (self.message, self.status, self.transient, self.retry_after, self.request)


def _rebuild_api_error(message, status, transient, retry_after, request) -> ApiError:
    return ApiError(message, status=status, transient=transient, retry_after=retry_after, request=request)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # an HTTP-date is always GMT
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _marketplace_message(raw: bytes, fallback: str) -> str:
    """The marketplace's own explanation: `message`, or the messages of `errors`/`warnings` entries, or the raw text."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("message"), str) and body["message"].strip():
            return body["message"].strip()[:_MESSAGE_LIMIT]
        for key in ("errors", "warnings"):
            entries = body.get(key)
            if isinstance(entries, list):
                messages = [str(e["message"]) for e in entries if isinstance(e, dict) and e.get("message")]
                if messages:
                    return "; ".join(messages)[:_MESSAGE_LIMIT]
    return text[:_MESSAGE_LIMIT] or fallback


def _header_safe(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and not any(c.isspace() for c in value)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as an error: following one would turn a POST into a GET or carry the token to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class StockApiClient:
    """One marketplace account's stock API; counts every HTTP request it sends (retries included) in `calls`.

    `timeout` is the socket timeout in seconds (connecting, and each read). Every request goes through
    `retry.call_with_retries` with `policy`; nothing else retries. Creates and patches carry an Idempotency-Key,
    so a retried write whose first answer was lost is not applied twice.
    """

    def __init__(self, base_url: str, token: str, timeout: float = 10.0, policy: RetryPolicy = RetryPolicy(), sleep=time.sleep):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if parsed.query or parsed.fragment or parsed.username or parsed.password:
            raise ValueError("base_url must not carry a query, a fragment or credentials")
        if not isinstance(token, str) or not _header_safe(token):
            raise ValueError("token must be a non-empty string of visible ASCII characters")  # never echo the token itself
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.policy = policy
        self.sleep = sleep
        self.calls = 0
        self._calls_lock = threading.Lock()
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def __repr__(self) -> str:
        return f"StockApiClient(base_url={self.base_url!r}, timeout={self.timeout}, policy={self.policy})"

    # public calls

    def create(self, advertiser_id: str, payload: dict, idempotency_key: str) -> dict:
        """POST /stock: create a stock item; the answer carries metadata.stockId and the versionNumber."""
        return self._call("POST", "/stock", {"advertiserId": self._advertiser(advertiser_id)}, payload, self._key(idempotency_key))

    def patch(self, advertiser_id: str, stock_id: str, payload: dict, idempotency_key: str) -> dict:
        """PATCH /stock/{stockId}: change only the fields given (lists such as images are replaced whole)."""
        if not stock_id:
            raise ValueError("stock_id is required")
        path = f"/stock/{urllib.parse.quote(stock_id, safe='')}"
        return self._call("PATCH", path, {"advertiserId": self._advertiser(advertiser_id)}, payload, self._key(idempotency_key))

    def search(
        self,
        advertiser_id: str,
        *,
        external_reference: str | None = None,
        lifecycle_state: str | None = None,
        registration: str | None = None,
    ) -> list[dict]:
        """GET /stock with the given filters, every page (pageSize 200) until a short page or totalResults is reached."""
        if "" in (external_reference, lifecycle_state, registration):
            raise ValueError("a search filter must be None (not filtered) or a non-empty value")  # "" would match everything
        query = {
            "advertiserId": self._advertiser(advertiser_id),
            "externalStockReference": external_reference,
            "lifecycleState": lifecycle_state,
            "registration": registration,
            "pageSize": PAGE_SIZE,
        }
        results: list[dict] = []
        seen: set[str] = set()
        page = 1
        while True:
            answer = self._call("GET", "/stock", {**query, "page": page})
            batch = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(batch, list):
                raise ApiError("the search answer has no results list", status=200, transient=False, request="GET /stock")
            ids = {str((item.get("metadata") or {}).get("stockId")) for item in batch if isinstance(item, dict)}
            if batch and ids and ids <= seen:  # a server that ignores `page` would otherwise be read forever
                raise ApiError(f"page {page} repeated earlier results", status=200, transient=False, request="GET /stock")
            seen |= ids
            results.extend(batch)
            total = answer.get("totalResults")
            if len(batch) < PAGE_SIZE or (isinstance(total, int) and len(results) >= total):
                return results
            page += 1

    # plumbing

    @staticmethod
    def _advertiser(advertiser_id: str) -> str:
        if not advertiser_id:
            raise ValueError("advertiser_id is required")
        return advertiser_id

    @staticmethod
    def _key(idempotency_key: str) -> str:
        # Without a key a retried write could be applied twice, so a write without one is refused here.
        if not isinstance(idempotency_key, str) or not _header_safe(idempotency_key) or len(idempotency_key) > 255:
            raise ValueError("idempotency_key must be 1-255 visible ASCII characters")
        return idempotency_key

    def _call(self, method: str, path: str, query: dict, body: dict | None = None, idempotency_key: str | None = None) -> dict:
        request = f"{method} {path}"

        def log_retry(attempt: int, error: Exception, wait: float) -> None:
            log.warning("%s failed (attempt %d of %d): %s; retrying in %.2fs", request, attempt, self.policy.max_attempts, error, wait)

        return call_with_retries(
            lambda: self._send(method, path, query, body, idempotency_key),
            self.policy,
            is_transient=lambda error: isinstance(error, ApiError) and error.transient,
            retry_after=lambda error: getattr(error, "retry_after", None),
            sleep=self.sleep,
            on_retry=log_retry,
        )

    def _send(self, method: str, path: str, query: dict, body: dict | None, idempotency_key: str | None) -> dict:
        """One HTTP request, no retry: the answer's JSON, or an ApiError saying whether trying again may help."""
        request_name = f"{method} {path}"
        url = f"{self.base_url}{path}?{urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        with self._calls_lock:
            self.calls += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise self._http_error(request_name, error) from None
        except urllib.error.URLError as error:
            reason = error.reason
            # A certificate that does not verify is a configuration fault, like an SSH host key: never retried.
            transient = not isinstance(reason, ssl.SSLCertVerificationError)
            raise ApiError(self._redact(f"no answer: {_describe(reason)}"), status=None, transient=transient, request=request_name) from None
        except (http.client.HTTPException, OSError) as error:  # timeouts, resets, a connection closed without an answer
            raise ApiError(self._redact(f"no answer: {_describe(error)}"), status=None, transient=True, request=request_name) from None
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError("the answer is not JSON", status=status, transient=False, request=request_name) from None

    def _http_error(self, request_name: str, error: urllib.error.HTTPError) -> ApiError:
        try:
            raw = error.read()
        except (http.client.HTTPException, OSError):
            raw = b""
        finally:
            error.close()
        status = error.code
        headers = error.headers or {}
        if 300 <= status < 400:
            message, transient = f"redirect to {headers.get('Location', '?')} refused", False
        else:
            message, transient = _marketplace_message(raw, str(error.reason or "")), is_transient_status(status)
        return ApiError(
            self._redact(message),
            status=status,
            transient=transient,
            retry_after=parse_retry_after(headers.get("Retry-After")),
            request=request_name,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***")


def _describe(error: object) -> str:
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text and text != name else name
