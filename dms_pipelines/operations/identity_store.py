"""Identity in the operational database: which cluster (customer) each record belongs to, every match decision, the review queue and consent events."""

import json
import math
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import consents, identity_records, match_decisions, review_queue
from dms_pipelines.operations.manifest import utc_aware, utc_now

REVIEW_OPEN, REVIEW_ACCEPTED, REVIEW_REJECTED = "open", "accepted", "rejected"
REVIEW_STATUSES = (REVIEW_OPEN, REVIEW_ACCEPTED, REVIEW_REJECTED)
CONSENT_CHANNELS = ("email", "phone", "sms", "post")
RECORD_COLUMNS = ["record_kind", "record_key", "cluster_id", "tier", "match_probability", "content_hash"]
MATCHED_VALUES = ["first_name", "last_name", "email", "phones", "postcode", "town"]  # identity.records.RECORD_COLUMNS' values
CHUNK = 5_000  # rows per executemany: large enough to be fast, small enough for SQLite's and PostgreSQL's limits


class ReviewError(ValueError):
    """A review decision cannot be taken (no such entry, or already decided); the message says which and why."""


@dataclass(frozen=True)
class Review:
    id: int
    dealer_id: str
    record_kind: str
    record_key: str
    candidate_cluster_id: str
    candidate_key: str | None
    match_probability: float
    match_weight: float | None
    evidence: list[dict]
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None


def _number(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _text(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _chunks(rows: list[dict]):
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def linked_records(engine: Engine, dealer_id: str) -> pd.DataFrame:
    """Every record of the dealer already tied to a cluster, with the hash of what it was linked on."""
    with engine.connect() as connection:
        rows = connection.execute(select(*(identity_records.c[name] for name in RECORD_COLUMNS)).where(identity_records.c.dealer_id == dealer_id)).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=RECORD_COLUMNS).astype({"record_kind": "string", "record_key": "string", "cluster_id": "string", "tier": "string"})


def stored_records(engine: Engine, dealer_id: str) -> pd.DataFrame:
    """Every linked record of the dealer with what it was linked on: RECORD_COLUMNS, source_hash and the matched values
    (phones as a list; a row written before the values were kept has source_hash None)."""
    names = [*RECORD_COLUMNS, "source_hash", *MATCHED_VALUES]
    with engine.connect() as connection:
        rows = connection.execute(select(*(identity_records.c[name] for name in names)).where(identity_records.c.dealer_id == dealer_id)).all()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=names)
    frame["phones"] = [phones.split() if isinstance(phones, str) else [] for phones in frame["phones"]]
    return frame


def matched_values(record: dict, source_hash: str | None) -> dict:
    """The identity_records columns that keep what a record was linked on."""
    values = {name: _text(record.get(name)) for name in MATCHED_VALUES if name != "phones"}
    return {**values, "phones": " ".join(record.get("phones") or ()) or None, "source_hash": source_hash}


def refresh_linked_values(engine: Engine, dealer_id: str, values: dict[tuple[str, str], dict]) -> int:
    """Records not matched again (their matched values are the same) take their source's new hash and values."""
    if not values:
        return 0
    rows = [{"kind": kind, "key": key, **fields} for (kind, key), fields in values.items()]
    statement = (
        update(identity_records)
        .where(and_(identity_records.c.dealer_id == dealer_id, identity_records.c.record_kind == bindparam("kind"), identity_records.c.record_key == bindparam("key")))
        .values({name: bindparam(name) for name in ["source_hash", *MATCHED_VALUES]})
    )
    updated = 0
    with engine.begin() as connection:
        for chunk in _chunks(rows):
            updated += connection.execute(statement, chunk).rowcount
    return updated


def save_assignments(
    engine: Engine,
    dealer_id: str,
    assignments: pd.DataFrame,
    hashes: dict[tuple[str, str], str],
    run_id: str | None,
    model_version: str | None,
    values: dict[tuple[str, str], dict] | None = None,
) -> dict[str, int]:
    """Keep one run's reconciliation: each record's cluster (replacing what it had) with what it was linked on (`values`:
    matched_values per record), a match decision per record, and an open review entry for each record between the
    thresholds (a pair already in the queue is not queued again)."""
    now = utc_now()
    values = values or {}
    unknown = {name: None for name in ["source_hash", *MATCHED_VALUES]}
    keys = [(str(row.record_kind), str(row.record_key)) for row in assignments.itertuples()]
    records, decisions, reviews = [], [], []
    for row in assignments.itertuples():
        key = (str(row.record_kind), str(row.record_key))
        probability = _number(row.match_probability)
        records.append(
            {
                "dealer_id": dealer_id,
                "record_kind": key[0],
                "record_key": key[1],
                "cluster_id": str(row.cluster_id),
                "tier": str(row.tier),
                "match_probability": probability,
                "content_hash": hashes.get(key, ""),
                **values.get(key, unknown),
                "model_version": model_version,
                "linked_at": now,
                "run_id": run_id,
            }
        )
        decisions.append(
            {
                "dealer_id": dealer_id,
                "record_kind": key[0],
                "record_key": key[1],
                "cluster_id": str(row.cluster_id),
                "candidate_key": _text(row.candidate_key),
                "tier": str(row.tier),
                "outcome": str(row.outcome),
                "match_probability": probability,
                "match_weight": _number(row.match_weight),
                "reason": str(row.reason),
                "evidence": _text(row.evidence),
                "model_version": model_version,
                "decided_at": now,
                "run_id": run_id,
            }
        )
        if row.outcome == "review" and _text(row.candidate_cluster_id):
            reviews.append(
                {
                    "dealer_id": dealer_id,
                    "record_kind": key[0],
                    "record_key": key[1],
                    "candidate_cluster_id": str(row.candidate_cluster_id),
                    "candidate_key": _text(row.candidate_key),
                    "match_probability": probability or 0.0,
                    "match_weight": _number(row.match_weight),
                    "evidence": _text(row.evidence) or "[]",
                    "status": REVIEW_OPEN,
                    "created_at": now,
                }
            )
    with engine.begin() as connection:
        for chunk in _chunks([{"kind": kind, "key": key} for kind, key in keys]):
            connection.execute(
                delete(identity_records).where(and_(identity_records.c.dealer_id == dealer_id, identity_records.c.record_kind == bindparam("kind"), identity_records.c.record_key == bindparam("key"))),
                chunk,
            )
        for chunk in _chunks(records):
            connection.execute(insert(identity_records), chunk)
        for chunk in _chunks(decisions):
            connection.execute(insert(match_decisions), chunk)
        queued = {
            (kind, key, cluster)
            for kind, key, cluster in connection.execute(
                select(review_queue.c.record_kind, review_queue.c.record_key, review_queue.c.candidate_cluster_id).where(review_queue.c.dealer_id == dealer_id)
            )
        }
        fresh = [row for row in reviews if (row["record_kind"], row["record_key"], row["candidate_cluster_id"]) not in queued]
        for chunk in _chunks(fresh):
            connection.execute(insert(review_queue), chunk)
    return {"records": len(records), "decisions": len(decisions), "queued": len(fresh)}


def decisions_for_matching(engine: Engine, dealer_id: str) -> pd.DataFrame:
    """The operator's decisions as labels for the matcher: record_kind, record_key, cluster_id and accepted (True/False)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(review_queue.c.record_kind, review_queue.c.record_key, review_queue.c.candidate_cluster_id, review_queue.c.status).where(
                and_(review_queue.c.dealer_id == dealer_id, review_queue.c.status != REVIEW_OPEN)
            )
        ).all()
    return pd.DataFrame([(kind, key, cluster, status == REVIEW_ACCEPTED) for kind, key, cluster, status in rows], columns=["record_kind", "record_key", "cluster_id", "accepted"])


def _comparisons(evidence: str | None) -> list[dict]:
    """The per-comparison entries of a waterfall: the JSON is {prior_log2, comparisons, match_weight} (or the list alone)."""
    parsed = json.loads(evidence or "[]")
    return parsed.get("comparisons", []) if isinstance(parsed, dict) else parsed


def _review(row) -> Review:
    return Review(
        id=row.id,
        dealer_id=row.dealer_id,
        record_kind=row.record_kind,
        record_key=row.record_key,
        candidate_cluster_id=row.candidate_cluster_id,
        candidate_key=row.candidate_key,
        match_probability=row.match_probability,
        match_weight=row.match_weight,
        evidence=_comparisons(row.evidence),
        status=row.status,
        created_at=utc_aware(row.created_at),
        decided_at=utc_aware(row.decided_at) if row.decided_at else None,
        decided_by=row.decided_by,
        note=row.note,
    )


def reviews(engine: Engine, dealer_id: str | None = None, status: str | None = REVIEW_OPEN) -> list[Review]:
    """Review entries, oldest first: of one dealer or all, with one status (default open) or any."""
    query = select(review_queue).order_by(review_queue.c.id)
    if dealer_id is not None:
        query = query.where(review_queue.c.dealer_id == dealer_id)
    if status is not None:
        query = query.where(review_queue.c.status == status)
    with engine.connect() as connection:
        return [_review(row) for row in connection.execute(query)]


def decide_review(engine: Engine, review_id: int, accepted: bool, decided_by: str | None = None, note: str | None = None) -> Review:
    """Accept (the record is that customer) or reject (it is not) one open entry; kept, and applied on every later run."""
    with engine.begin() as connection:
        row = connection.execute(select(review_queue).where(review_queue.c.id == review_id)).first()
        if row is None:
            raise ReviewError(f"no review entry {review_id}; `dms-pipelines review list` shows the open ones")
        if row.status != REVIEW_OPEN:
            raise ReviewError(f"review entry {review_id} was already {row.status} by {row.decided_by or 'someone'} at {utc_aware(row.decided_at):%Y-%m-%d %H:%M} UTC")
        connection.execute(
            update(review_queue).where(review_queue.c.id == review_id).values(status=REVIEW_ACCEPTED if accepted else REVIEW_REJECTED, decided_at=utc_now(), decided_by=decided_by, note=note)
        )
        return _review(connection.execute(select(review_queue).where(review_queue.c.id == review_id)).first())


def cluster_members(engine: Engine, dealer_id: str, cluster_ids: set[str] | None = None) -> pd.DataFrame:
    """Records and their clusters (all of the dealer's, or of the clusters named)."""
    query = select(identity_records.c.record_kind, identity_records.c.record_key, identity_records.c.cluster_id, identity_records.c.tier).where(identity_records.c.dealer_id == dealer_id)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=["record_kind", "record_key", "cluster_id", "tier"])
    return frame if cluster_ids is None else frame[frame["cluster_id"].isin(cluster_ids)]


def record_consents(engine: Engine, dealer_id: str, events: list[dict]) -> int:
    """Store consent statements (record_kind, record_key, channel, granted, source, wording, stated_at); one already kept is not stored twice."""
    if not events:
        return 0
    now = utc_now()
    with engine.begin() as connection:
        known = {
            (kind, key, channel, utc_aware(stated).isoformat(), granted)
            for kind, key, channel, stated, granted in connection.execute(
                select(consents.c.record_kind, consents.c.record_key, consents.c.channel, consents.c.stated_at, consents.c.granted).where(consents.c.dealer_id == dealer_id)
            )
        }
        fresh, seen = [], set()
        for event in events:
            key = (event["record_kind"], str(event["record_key"]), event["channel"], utc_aware(event["stated_at"]).isoformat(), int(bool(event["granted"])))
            if key in known or key in seen:
                continue
            seen.add(key)
            fresh.append({**event, "record_key": str(event["record_key"]), "granted": int(bool(event["granted"])), "dealer_id": dealer_id, "recorded_at": now})
        for chunk in _chunks(fresh):
            connection.execute(insert(consents), chunk)
    return len(fresh)


def current_consent(engine: Engine, dealer_id: str) -> pd.DataFrame:
    """Each cluster's consent per channel now: the newest statement of any of its records wins (a tie: a refusal wins)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(identity_records.c.cluster_id, consents.c.channel, consents.c.granted, consents.c.source, consents.c.wording, consents.c.stated_at, consents.c.record_kind)
            .join(
                identity_records,
                and_(identity_records.c.dealer_id == consents.c.dealer_id, identity_records.c.record_kind == consents.c.record_kind, identity_records.c.record_key == consents.c.record_key),
            )
            .where(consents.c.dealer_id == dealer_id)
        ).all()
    columns = ["cluster_id", "channel", "granted", "source", "wording", "stated_at", "record_kind"]
    frame = pd.DataFrame([tuple(row) for row in rows], columns=columns)
    if frame.empty:
        return frame
    frame["stated_at"] = pd.to_datetime(frame["stated_at"], utc=True)
    frame = frame.sort_values(["cluster_id", "channel", "stated_at", "granted"], ascending=[True, True, False, True], kind="stable")
    return frame.drop_duplicates(["cluster_id", "channel"]).reset_index(drop=True)


def lead_clusters(engine: Engine, dealer_id: str) -> dict[int, str]:
    """Each of the dealer's leads tied to a customer: lead id -> customer (cluster) id."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(identity_records.c.record_key, identity_records.c.cluster_id).where(and_(identity_records.c.dealer_id == dealer_id, identity_records.c.record_kind == "lead"))
        ).all()
    return {int(key): cluster for key, cluster in rows if str(key).isdigit()}
