"""The image checks kept between runs (table image_checks): each URL's last look, read back as the next run's cache."""

import hashlib
from datetime import timezone
from typing import Iterable

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from dms_pipelines.operations.db import image_checks
from dms_pipelines.operations.manifest import utc_aware

CHUNK = 5_000  # rows per executemany: large enough to be fast, small enough for SQLite's and PostgreSQL's limits
IN_CHUNK = 900  # values per IN (...): under the 999 bound parameters of older SQLite builds
COLUMNS = ("url", "status", "http_status", "content_type", "format", "width", "height", "byte_size", "etag", "last_modified", "reason", "checked_at")
COLUMN_NAMES = frozenset(COLUMNS)
UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def cached_checks(engine: Engine, urls: Iterable[str]) -> dict[str, dict]:
    """The kept check of each URL asked for that has one, by URL (checked_at UTC-aware); URLs never checked are absent."""
    by_hash = {url_hash(url): url for url in dict.fromkeys(urls)}
    found: dict[str, dict] = {}
    query = select(image_checks.c.url_hash, *(image_checks.c[name] for name in COLUMNS)).where(image_checks.c.url_hash.in_(bindparam("hashes", expanding=True)))
    with engine.connect() as connection:
        for chunk in _chunks(list(by_hash), IN_CHUNK):
            for row in connection.execute(query, {"hashes": chunk}).all():
                values = dict(zip(COLUMNS, row[1:]))
                if values["url"] == by_hash[row[0]]:
                    values["checked_at"] = utc_aware(values["checked_at"])
                    found[values["url"]] = values
    return found


def _stored(row: dict) -> dict:
    values = {**row} if row.keys() == COLUMN_NAMES else {name: row.get(name) for name in COLUMNS}
    values["url_hash"] = url_hash(values["url"])
    checked_at = values["checked_at"]
    if checked_at is not None and checked_at.tzinfo is not None and checked_at.utcoffset():
        values["checked_at"] = checked_at.astimezone(timezone.utc)  # SQLite keeps the wall time without its offset: keep UTC's
    return values


def _replace(connection: Connection, rows: list[dict]) -> None:
    upsert = UPSERTS.get(connection.dialect.name)
    if upsert is None:
        connection.execute(delete(image_checks).where(image_checks.c.url_hash.in_([row["url_hash"] for row in rows])))
        connection.execute(insert(image_checks), rows)
        return
    statement = upsert(image_checks)
    connection.execute(statement.on_conflict_do_update(index_elements=[image_checks.c.url_hash], set_={name: statement.excluded[name] for name in COLUMNS}), rows)


def save_checks(engine: Engine, rows: list[dict]) -> int:
    """Keep these checks (dicts with the columns above, as ImageCheck.as_row gives), each replacing its URL's earlier one; the number kept."""
    latest = {row["url"]: row for row in rows}  # one row per URL (the last given wins): an upsert may not touch a row twice
    stored = [_stored(row) for row in latest.values()]
    with engine.begin() as connection:
        for chunk in _chunks(stored, CHUNK if UPSERTS.get(connection.dialect.name) else IN_CHUNK):
            _replace(connection, chunk)
    return len(stored)
