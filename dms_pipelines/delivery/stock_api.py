"""Client for an Auto Trader Connect-style stock API: create, patch, search, with timeouts and one retry layer."""

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime

from dms_pipelines.delivery.retry import RetryPolicy, call_with_retries

TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
PAGE_SIZE = 200


class ApiError(Exception):
    """A failed call: `transient` says whether trying again may help; `message` is the marketplace's own words."""

    def __init__(self, message: str, *, status: int | None, transient: bool, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class StockApiClient:
    """One marketplace account's stock API; counts every HTTP request it sends (retries included) in `calls`."""

    def __init__(self, base_url: str, token: str, timeout: float = 10.0, policy: RetryPolicy = RetryPolicy(), sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.policy = policy
        self.sleep = sleep
        self.calls = 0

    def __repr__(self) -> str:
        return f"StockApiClient({self.base_url})"

    def _send(self, method: str, path: str, query: dict, body: dict | None, idempotency_key: str | None) -> dict:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        self.calls += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
                return json.loads(payload) if payload else {}
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", errors="replace")
            try:
                message = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                message = text[:500]
            raise ApiError(f"{method} {path}: {message}", status=error.code, transient=error.code in TRANSIENT_STATUSES,
                           retry_after=_retry_after(error.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(f"{method} {path}: {type(reason).__name__}: {reason}", status=None, transient=True) from None

    def _call(self, method: str, path: str, query: dict, body: dict | None = None, idempotency_key: str | None = None) -> dict:
        return call_with_retries(
            lambda: self._send(method, path, query, body, idempotency_key), self.policy,
            is_transient=lambda e: isinstance(e, ApiError) and e.transient,
            retry_after=lambda e: getattr(e, "retry_after", None), sleep=self.sleep,
        )

    def create(self, advertiser_id: str, payload: dict, idempotency_key: str) -> dict:
        return self._call("POST", "/stock", {"advertiserId": advertiser_id}, payload, idempotency_key)

    def patch(self, advertiser_id: str, stock_id: str, payload: dict, idempotency_key: str) -> dict:
        return self._call("PATCH", f"/stock/{urllib.parse.quote(stock_id)}", {"advertiserId": advertiser_id}, payload, idempotency_key)

    def search(self, advertiser_id: str, *, external_reference: str | None = None, lifecycle_state: str | None = None) -> list[dict]:
        results, page = [], 1
        while True:
            answer = self._call("GET", "/stock", {"advertiserId": advertiser_id, "externalStockReference": external_reference, "lifecycleState": lifecycle_state, "page": page, "pageSize": PAGE_SIZE})
            batch = answer.get("results", [])
            results.extend(batch)
            if len(batch) < PAGE_SIZE:
                return results
            page += 1
