"""Incremental delivery to a stock API: only changed vehicles, no duplicate listings, self-healing, and nightly reconciliation."""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines.delivery import ledger
from dms_pipelines.delivery.diff import diff
from dms_pipelines.delivery.stock_api import ApiError, StockApiClient
from dms_pipelines.marketplaces.base import KEY, MarketplaceSpec
from dms_pipelines.stock.hashing import row_digests

log = logging.getLogger(__name__)


@dataclass
class ApiDeliveryReport:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    dead_lettered: int = 0
    calls: int = 0
    repaired: int = 0
    errors: list[str] = field(default_factory=list)


def idempotency_key(marketplace: str, dealer_id: str, stock_id: str, change_seq: int, action: str, target: str) -> str:
    """One attempt at one change: the vehicle, the ledger's sequence number of the change and what it sets. A retry of the
    same change repeats it; the same content sent again later as a new change (a price back to an earlier one) does not."""
    return hashlib.sha256(f"{marketplace}|{dealer_id}|{stock_id}|{change_seq}|{action}|{target}".encode()).hexdigest()[:40]


WITHDRAWN = "withdrawn"  # the pending content of a removal


HASH_SCHEME = "r1:"  # row hashes; an acknowledgement under another scheme is re-checked against its stored content


def desired_items(spec: MarketplaceSpec, items: pd.DataFrame) -> dict[str, dict]:
    """Each rendered item as the plain values the ledger keeps, by the marketplace's reference (our stock number)."""
    return {row[spec.api.reference]: spec.api.item(row) for row in items.to_dict(orient="records")}


def item_hashes(spec: MarketplaceSpec, items: pd.DataFrame) -> dict[str, str]:
    """A content hash per rendered item, by external reference, computed by DuckDB for all rows at once (stock/hashing.py)."""
    if items.empty:
        return {}
    digests = row_digests(items, sorted(c for c in items.columns if c != KEY))
    return dict(zip(items[spec.api.reference].astype(str), (HASH_SCHEME + d for d in digests)))


def deliver(
    engine: Engine,
    client: StockApiClient,
    spec: MarketplaceSpec,
    dealer_id: str,
    advertiser_id: str,
    items: pd.DataFrame,
    run_id: str | None = None,
    trigger: str | None = None,
    change_seen_at: datetime | None = None,
    scope: set[str] | None = None,
) -> ApiDeliveryReport:
    """Send creates, updates and removals for what changed since the marketplace's last acknowledgement.

    `scope`: the only vehicles (external references) that may have changed; `items` then holds those of them still
    listed, and only their ledger rows are read, so an item of the scope that is not in `items` is removed.
    """
    api, marketplace = spec.api, spec.name
    report = ApiDeliveryReport()
    hashes = item_hashes(spec, items)
    changes = diff(hashes, ledger.ledger_hashes(engine, marketplace, dealer_id, keys=scope))
    changed = set(changes.creates) | set(changes.updates)
    rows = ledger.ledger_rows(engine, marketplace, dealer_id, keys=changed | set(changes.deletes))  # the unchanged are never read
    desired = desired_items(spec, items[items[api.reference].astype(str).isin(changed)]) if changed else {}
    report.unchanged = len(changes.unchanged)
    calls_before = client.calls
    for key in list(changes.updates):
        row = rows.get(key) or {}
        same_content = row.get("status") == "acknowledged" and row.get("content") == json.dumps(desired[key], sort_keys=True)
        if same_content and not str(row.get("content_hash") or "").startswith(HASH_SCHEME):
            # acknowledged under an earlier hash scheme with these very contents: record the new hash, send nothing
            ledger.mark_acknowledged(engine, marketplace, dealer_id, key, hashes[key], row.get("external_id"), row.get("state"), row["content"])
            changes.updates.remove(key)
            report.unchanged += 1

    def record(key: str, action: str, outcome: str, started, calls: int, error: ApiError | None = None, digest: str | None = None) -> None:
        ledger.log_delivery(
            engine,
            run_id=run_id,
            marketplace=marketplace,
            dealer_id=dealer_id,
            item_key=key,
            action=action,
            content_hash=digest,
            outcome=outcome,
            http_status=error.status if error else None,
            calls=calls,
            error=str(error) if error else None,
            trigger=trigger,
            change_seen_at=change_seen_at,
            started_at=started,
        )

    def attempt(key: str, action: str, digest: str | None, payload: dict, call) -> dict | None:
        """Mark the change pending, then `call(idempotency_key)`; record the outcome."""
        started = ledger.now()
        before = client.calls
        seq = ledger.mark_pending(engine, marketplace, dealer_id, key, digest or WITHDRAWN)
        try:
            answer = call(idempotency_key(marketplace, dealer_id, key, seq, action, digest or WITHDRAWN))
        except ApiError as error:
            calls = client.calls - before
            if error.transient:
                report.failed += 1
                ledger.mark_failed(engine, marketplace, dealer_id, key, str(error))
                record(key, action, "failed", started, calls, error, digest)
            else:
                report.dead_lettered += 1
                ledger.mark_failed(engine, marketplace, dealer_id, key, str(error), dead=True, content_hash=digest)
                ledger.add_dead_letter(engine, marketplace, dealer_id, key, action, digest, payload, error.status, error.message)
                record(key, action, "dead_letter", started, calls, error, digest)
            report.errors.append(f"{key}: {error}")
            return None
        record(key, action, "ok", started, client.calls - before, None, digest)
        return answer

    for key in changes.creates + changes.updates:
        item, digest = desired[key], hashes[key]
        row = rows.get(key) or {}
        external_id = row.get("external_id")
        if not external_id and row and row.get("status") != "withdrawn" and row.get("state") not in api.gone_states:  # sent, never acknowledged: a crash may have created it
            found = [i for i in _search(client, advertiser_id, key) if api.listed_state(i) not in api.gone_states]
            external_id = api.listed_id(found[0]) if found else None
        if external_id:
            previous = json.loads(row["content"]) if row.get("content") and row.get("status") == "acknowledged" else None
            payload = api.patch_payload(previous, item)
            action = "sold" if item[api.state] == api.sold_state else "update"
            answer = attempt(key, action, digest, payload, lambda idempotency: client.patch(advertiser_id, external_id, payload, idempotency))
            if answer is not None:
                report.updated += 1
                ledger.mark_acknowledged(engine, marketplace, dealer_id, key, digest, external_id, item[api.state], json.dumps(item, sort_keys=True))
        else:
            payload = api.create_payload(item)
            answer = attempt(key, "create", digest, payload, lambda idempotency: client.create(advertiser_id, payload, idempotency))
            if answer is not None:
                report.created += 1
                ledger.mark_acknowledged(engine, marketplace, dealer_id, key, digest, api.listed_id(answer), item[api.state], json.dumps(item, sort_keys=True))

    for key in changes.deletes:
        row = rows[key]
        if not row.get("external_id") or row.get("state") in (api.sold_state, *api.gone_states):
            ledger.mark_withdrawn(engine, marketplace, dealer_id, key, row.get("state") or "DELETED")  # sold stays sold there; nothing to withdraw
            continue
        payload = api.delete_payload()
        answer = attempt(key, "delete", None, payload, lambda idempotency: client.patch(advertiser_id, row["external_id"], payload, idempotency))
        if answer is not None:
            report.deleted += 1
            ledger.mark_withdrawn(engine, marketplace, dealer_id, key, "DELETED")
    report.calls = client.calls - calls_before
    return report


def _search(client: StockApiClient, advertiser_id: str, reference: str) -> list[dict]:
    try:
        return client.search(advertiser_id, external_reference=reference)
    except ApiError as error:
        log.warning("lookup of %s before creating failed (%s); creating with an idempotency key instead", reference, error)
        return []


def reconcile(engine: Engine, client: StockApiClient, spec: MarketplaceSpec, dealer_id: str, advertiser_id: str, items: pd.DataFrame) -> int:
    """Compare what the marketplace lists with the ledger and repair the ledger, so the next delivery puts things right.

    A listing deleted by hand is forgotten (so it is created again); a listing we never recorded is adopted (so it is
    patched, not duplicated); a live listing for a vehicle we no longer have is marked for removal.
    """
    api, marketplace = spec.api, spec.name
    states = dict(zip(items[api.reference].astype(str), items[api.state])) if len(items) else {}
    rows = ledger.ledger_rows(engine, marketplace, dealer_id)
    listed = client.search(advertiser_id)
    by_reference: dict[str, dict] = {}
    for entry in listed:
        by_reference.setdefault(api.listed_reference(entry), entry)
        if api.listed_state(entry) not in api.gone_states:
            by_reference[api.listed_reference(entry)] = entry
    repaired = 0
    for key, row in rows.items():
        entry = by_reference.get(key)
        live = entry is not None and api.listed_state(entry) not in api.gone_states
        if row.get("external_id") and not live and key in states and states[key] != api.sold_state:
            ledger.mark_lost(engine, marketplace, dealer_id, key)
            repaired += 1
    for key, entry in by_reference.items():
        live = api.listed_state(entry) not in api.gone_states
        row = rows.get(key)
        if live and (row is None or not row.get("external_id")):
            ledger.mark_acknowledged(engine, marketplace, dealer_id, key, "", api.listed_id(entry), api.listed_state(entry))
            repaired += 1
    return repaired
