"""The delivery ledger: per marketplace, dealer and item what was acknowledged, plus a log of every delivery and the dead letters."""

import json
from datetime import datetime, timezone

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import dead_letters, deliveries, listing_ledger
from dms_pipelines.operations.statuses import SETTLED_LISTING_STATUSES, ListingStatus


def now() -> datetime:
    return datetime.now(timezone.utc)


def ledger_rows(engine: Engine, marketplace: str, dealer_id: str, keys: set[str] | None = None) -> dict[str, dict]:
    """The dealer's ledger rows for this marketplace (only those of `keys` when given), by item key."""
    return _rows(engine, marketplace, dealer_id, [listing_ledger], keys)


def _dealer(marketplace: str, dealer_id: str):
    return and_(listing_ledger.c.marketplace == marketplace, listing_ledger.c.dealer_id == dealer_id)


def _chunks(keys: set[str], size: int = 500):
    """The keys in order, as bounded IN lists."""
    ordered = sorted(keys)
    return (ordered[start : start + size] for start in range(0, len(ordered), size))


def _rows(engine: Engine, marketplace: str, dealer_id: str, columns: list, keys: set[str] | None) -> dict[str, dict]:
    where = _dealer(marketplace, dealer_id)
    with engine.connect() as connection:
        if keys is None:
            return {row["item_key"]: dict(row) for row in connection.execute(select(*columns).where(where)).mappings()}
        found = {}
        for chunk in _chunks(keys):
            for row in connection.execute(select(*columns).where(and_(where, listing_ledger.c.item_key.in_(chunk)))).mappings():
                found[row["item_key"]] = dict(row)
        return found


def ledger_hashes(engine: Engine, marketplace: str, dealer_id: str, keys: set[str] | None = None) -> dict[str, str]:
    """acknowledged_hashes() for the dealer (only `keys` when given), reading only the four columns it needs (not each
    item's stored content)."""
    columns = [listing_ledger.c.item_key, listing_ledger.c.status, listing_ledger.c.content_hash, listing_ledger.c.pending_hash]
    return acknowledged_hashes(_rows(engine, marketplace, dealer_id, columns, keys))


def unsettled(engine: Engine, marketplace: str, dealer_id: str) -> bool:
    """Whether any of the dealer's items was sent and neither acknowledged nor refused for good (it is to be sent again)."""
    where = and_(_dealer(marketplace, dealer_id), listing_ledger.c.status.notin_(SETTLED_LISTING_STATUSES))
    with engine.connect() as connection:
        return connection.execute(select(listing_ledger.c.item_key).where(where).limit(1)).first() is not None


def acknowledged_hashes(rows: dict[str, dict]) -> dict[str, str]:
    """Item key -> the hash to diff against: the acknowledged one; for a dead letter the refused content (not resent
    until it changes); '' for anything sent but not acknowledged, so it is sent again; nothing for a withdrawn item."""
    hashes = {}
    for key, row in rows.items():
        if row["status"] == ListingStatus.WITHDRAWN:
            continue  # not on the marketplace (or left there as sold): created anew if it comes back
        if row["status"] == ListingStatus.ACKNOWLEDGED:
            hashes[key] = row["content_hash"] or ""
        elif row["status"] == ListingStatus.DEAD:
            hashes[key] = row["pending_hash"] or ""
        else:
            hashes[key] = ""
    return hashes


def _key(marketplace: str, dealer_id: str, item_key: str):
    return and_(_dealer(marketplace, dealer_id), listing_ledger.c.item_key == item_key)


def _upsert(connection, marketplace: str, dealer_id: str, item_key: str, values: dict) -> None:
    if connection.execute(update(listing_ledger).where(_key(marketplace, dealer_id, item_key)).values(**values)).rowcount == 0:
        connection.execute(insert(listing_ledger).values({"attempts": 0, **values, "marketplace": marketplace, "dealer_id": dealer_id, "item_key": item_key}))


def mark_pending(engine: Engine, marketplace: str, dealer_id: str, item_key: str, content_hash: str) -> int:
    """Written before sending: a crash between sending and recording leaves this trace for the next run to check.

    Returns the change's sequence number, which its idempotency key carries: a new change (anything but a retry of the
    same unacknowledged content) gets the next number, so going back to an earlier content is a new call the marketplace
    applies, while a retry after a lost answer repeats the key and is answered, not applied twice.
    """
    with engine.begin() as connection:
        row = connection.execute(select(listing_ledger.c.status, listing_ledger.c.pending_hash, listing_ledger.c.change_seq).where(_key(marketplace, dealer_id, item_key))).first()
        retry = row is not None and row.status in (ListingStatus.PENDING, ListingStatus.FAILED) and row.pending_hash == content_hash
        seq = (row.change_seq or 0) if retry else (row.change_seq or 0) + 1 if row is not None else 1
        _upsert(connection, marketplace, dealer_id, item_key, {"pending_hash": content_hash, "status": ListingStatus.PENDING, "change_seq": seq, "updated_at": now()})
    return seq


def mark_acknowledged(
    engine: Engine, marketplace: str, dealer_id: str, item_key: str, content_hash: str | None, external_id: str | None = None, state: str | None = None, content: str | None = None
) -> None:
    values = {
        "content": content,
        "content_hash": content_hash,
        "pending_hash": None,
        "status": ListingStatus.ACKNOWLEDGED,
        "attempts": 0,
        "last_error": None,
        "updated_at": now(),
        "acknowledged_at": now(),
        "state": state,
    }
    if external_id is not None:
        values["external_id"] = external_id
    with engine.begin() as connection:
        _upsert(connection, marketplace, dealer_id, item_key, values)


def mark_failed(engine: Engine, marketplace: str, dealer_id: str, item_key: str, error: str, dead: bool = False, content_hash: str | None = None) -> None:
    """A transient failure stays unacknowledged (sent again next run); a permanent one is dead until the content changes."""
    with engine.begin() as connection:
        current = connection.execute(select(listing_ledger.c.attempts).where(_key(marketplace, dealer_id, item_key))).scalar()
        values = {"status": ListingStatus.DEAD if dead else ListingStatus.FAILED, "last_error": error[:2000], "attempts": (current or 0) + 1, "updated_at": now()}
        if dead:
            values["pending_hash"] = content_hash
        _upsert(connection, marketplace, dealer_id, item_key, values)


def mark_unsettled(engine: Engine, marketplace: str, dealer_id: str, item_keys: set[str]) -> None:
    """The marketplace does not show what was acknowledged for these items: they are sent again, whole, by the next delivery."""
    if not item_keys:
        return
    where = and_(_dealer(marketplace, dealer_id), listing_ledger.c.status == ListingStatus.ACKNOWLEDGED)
    with engine.begin() as connection:
        for chunk in _chunks(item_keys):
            connection.execute(
                update(listing_ledger)
                .where(and_(where, listing_ledger.c.item_key.in_(chunk)))
                .values(
                    status=ListingStatus.FAILED,
                    last_error="the marketplace does not show what was acknowledged; sending again",
                    updated_at=now(),
                )
            )


def mark_withdrawn(engine: Engine, marketplace: str, dealer_id: str, item_key: str, state: str) -> None:
    """The item is off the marketplace for good (withdrawn, or left there as sold): no longer ours to diff or touch. The
    row stays, so that the vehicle coming back is a new change with a new idempotency key, never the first one's."""
    values = {"external_id": None, "content": None, "content_hash": None, "pending_hash": None, "status": ListingStatus.WITHDRAWN, "state": state, "last_error": None, "updated_at": now()}
    with engine.begin() as connection:
        _upsert(connection, marketplace, dealer_id, item_key, values)


def log_delivery(engine: Engine, **values) -> None:
    values.setdefault("finished_at", now())
    values.setdefault("started_at", values["finished_at"])
    with engine.begin() as connection:
        connection.execute(insert(deliveries).values(**values))


def add_dead_letter(engine: Engine, marketplace: str, dealer_id: str, item_key: str, action: str, content_hash: str | None, payload: dict | None, http_status: int | None, message: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(dead_letters).values(
                marketplace=marketplace,
                dealer_id=dealer_id,
                item_key=item_key,
                action=action,
                content_hash=content_hash,
                payload=json.dumps(payload, sort_keys=True) if payload is not None else None,
                http_status=http_status,
                message=message[:2000],
                created_at=now(),
            )
        )


def mark_lost(engine: Engine, marketplace: str, dealer_id: str, item_key: str) -> None:
    """The marketplace no longer lists an item we had acknowledged: send it again, as a new listing."""
    with engine.begin() as connection:
        connection.execute(
            update(listing_ledger)
            .where(_key(marketplace, dealer_id, item_key))
            .values(
                external_id=None,
                content_hash=None,
                pending_hash=None,
                content=None,
                status=ListingStatus.FAILED,
                state="DELETED",
                last_error="missing from the marketplace's own listing; re-creating",
                generation=listing_ledger.c.generation + 1,
                updated_at=now(),
            )
        )


def replay_dead_letters(engine: Engine, marketplace: str | None = None) -> int:
    """Mark unreplayed dead letters replayed and their ledger entries unacknowledged, so the next run resends them.

    Safe to repeat: a letter already replayed is not queued again, and a listing that now exists is patched, not created.
    """
    with engine.begin() as connection:
        query = select(dead_letters).where(dead_letters.c.replayed_at.is_(None))
        if marketplace:
            query = query.where(dead_letters.c.marketplace == marketplace)
        letters = connection.execute(query).mappings().all()
        for letter in letters:
            key = and_(listing_ledger.c.marketplace == letter["marketplace"], listing_ledger.c.dealer_id == letter["dealer_id"], listing_ledger.c.item_key == letter["item_key"])
            connection.execute(update(listing_ledger).where(and_(key, listing_ledger.c.status == ListingStatus.DEAD)).values(status=ListingStatus.FAILED, pending_hash=None, updated_at=now()))
            connection.execute(update(dead_letters).where(dead_letters.c.id == letter["id"]).values(replayed_at=now(), replay_outcome="queued"))
    return len(letters)
