"""Client for an Auto Trader Connect-style deals API: one deal with its components after a Deal Sync notification, and the baseline of all deals."""

import http.client
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request

from dms_pipelines.delivery.retry import RetryPolicy, call_with_retries, is_transient_status
from dms_pipelines.delivery.stock_api import ApiError, parse_retry_after

log = logging.getLogger(__name__)

# A notification's deal is fetched while the pipeline waits: a few quick retries, then the error (the next run tries again).
DEALS_RETRY_POLICY = RetryPolicy(max_attempts=4, base_delay=0.1, max_delay=1.0, deadline_seconds=20.0)
MAX_RETRY_AFTER_SECONDS = 5.0
COMPONENT_PATHS = {"partExchange": "part-exchanges", "financeApplication": "finance-applications", "delivery": "deliveries"}
_MESSAGE_LIMIT = 300


class DealsApiError(ApiError):
    """A failed deals API call, as the stock API's ApiError: `transient`, `status` (None: no answer), `retry_after`, `request`."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None, retry_after: float | None = None, request: str | None = None):
        super().__init__(message, status=status, transient=transient, retry_after=retry_after, request=request)

    def __reduce__(self):
        return _rebuild, (self.message, self.transient, self.status, self.retry_after, self.request)


def _rebuild(message, transient, status, retry_after, request) -> DealsApiError:
    return DealsApiError(message, transient=transient, status=status, retry_after=retry_after, request=request)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the Bearer token to another address: it is an error instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_RefuseRedirects)


def _server_message(raw: bytes, fallback: str) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip():
        text = body["message"].strip()
    return (text or fallback)[:_MESSAGE_LIMIT]


class _Deals:
    """One base URL and token; every request goes through `get`, which retries transient failures only."""

    def __init__(self, base_url: str, token: str, timeout: float):
        if not token or any(character in token for character in "\r\n"):
            raise DealsApiError("the access token is empty or not a valid header value", transient=False)
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def redact(self, text: str) -> str:
        return text.replace(self.token, "***")

    def get(self, path: str, query: dict) -> dict:
        request_name = f"GET {path}"

        def log_retry(attempt: int, error: Exception, wait: float) -> None:
            log.warning("%s failed (attempt %d of %d): %s; retrying in %.2fs", request_name, attempt, DEALS_RETRY_POLICY.max_attempts, error, wait)

        return call_with_retries(
            lambda: self.send(path, query),
            DEALS_RETRY_POLICY,
            is_transient=lambda error: isinstance(error, DealsApiError) and error.transient,
            retry_after=lambda error: min(error.retry_after, MAX_RETRY_AFTER_SECONDS) if getattr(error, "retry_after", None) is not None else None,
            on_retry=log_retry,
        )

    def send(self, path: str, query: dict) -> dict:
        """One request, no retry: the answer's JSON object, or a DealsApiError saying whether trying again may help."""
        request_name = f"GET {path}"
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"}, method="GET")
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            try:
                raw = error.read()
            except (http.client.HTTPException, OSError):
                raw = b""
            finally:
                error.close()
            if 300 <= error.code < 400:
                message, transient = "redirect refused", False
            else:
                message, transient = _server_message(raw, str(error.reason or "")), is_transient_status(error.code)
            retry_after = parse_retry_after((error.headers or {}).get("Retry-After"))
            raise DealsApiError(self.redact(message), transient=transient, status=error.code, retry_after=retry_after, request=request_name) from None
        except urllib.error.URLError as error:
            transient = not isinstance(error.reason, ssl.SSLCertVerificationError)
            raise DealsApiError(self.redact(f"no answer: {error.reason}"), transient=transient, request=request_name) from None
        except (http.client.HTTPException, OSError) as error:  # timeouts, resets, a connection closed without an answer
            raise DealsApiError(self.redact(f"no answer: {type(error).__name__}: {error}"), transient=True, request=request_name) from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise DealsApiError("the answer is not JSON", transient=False, status=status, request=request_name) from None
        if not isinstance(body, dict):
            raise DealsApiError("the answer is not a JSON object", transient=False, status=status, request=request_name)
        return body


def _segment(value: str, name: str) -> str:
    value = str(value)
    if not value.strip():
        raise DealsApiError(f"{name} is empty", transient=False)
    return urllib.parse.quote(value, safe="")


def fetch_deal(base_url: str, token: str, advertiser_id: str, deal_id: str, timeout: float = 10.0) -> dict:
    """The deal, with "components": each component it names (part exchange, finance application, delivery) fetched, or None."""
    client = _Deals(base_url, token, timeout)
    query = {"advertiserId": advertiser_id}
    deal = client.get(f"/deals/{_segment(deal_id, 'dealId')}", query)
    components: dict[str, dict | None] = {}
    for field, collection in COMPONENT_PATHS.items():
        reference = deal.get(field)
        component_id = reference.get("id") if isinstance(reference, dict) else None
        if component_id in (None, ""):
            components[field] = None
            continue
        components[field] = client.get(f"/{collection}/{_segment(component_id, field + '.id')}", query)
    deal["components"] = components
    return deal


def list_deals(base_url: str, token: str, advertiser_id: str, page_size: int = 100, timeout: float = 10.0) -> list[dict]:
    """Every deal of the advertiser (the baseline), page by page until totalResults are read or a page comes back empty."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    client = _Deals(base_url, token, timeout)
    deals: list[dict] = []
    page = 1
    while True:
        answer = client.get("/deals", {"advertiserId": advertiser_id, "page": page, "pageSize": page_size})
        results = answer.get("results")
        if not isinstance(results, list):
            raise DealsApiError("the answer has no results list", transient=False, request="GET /deals")
        deals.extend(results)
        total = answer.get("totalResults")
        if not results or (isinstance(total, int) and len(deals) >= total) or len(results) < page_size:
            return deals
        page += 1
