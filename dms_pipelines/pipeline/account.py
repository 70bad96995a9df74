"""Account-wide files: every dealer's last good part of a marketplace's one file for the account, assembled, delivered and read back."""

import csv
import itertools
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines.config import Settings
from dms_pipelines.delivery import feed_cache
from dms_pipelines.delivery.destinations import destination_for
from dms_pipelines.delivery.drift import Drift, file_drift
from dms_pipelines.delivery.snapshot import ACCOUNT, Destination, SnapshotOutcome, deliver_file, record_verified, verified
from dms_pipelines.delivery.staging import StagedFile, stage
from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.marketplaces.row_files import merged
from dms_pipelines.operations.drift_state import record_drift
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline.feeds import HEAL_ROUNDS, PREVIEW_ROWS, feed_files, read_back, statuses
from dms_pipelines.stock.store import StockView
from dms_pipelines.warehouse.export import operational_rows, publish_appended
from dms_pipelines.warehouse.tables import ensure_catalog, publish


@dataclass
class AccountFile:
    """An account-wide file as assembled: how many rows, from how many dealers, a few of its rows, its delivery and drift."""

    marketplace: str
    listed: int
    dealers: int
    preview: pd.DataFrame
    outcome: SnapshotOutcome
    drift: dict[str, Drift] = field(default_factory=dict)  # per dealer, its rows in the file at the destination against its rows as built


def account_file(
    spec: MarketplaceSpec,
    specs: list[MarketplaceSpec],
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    run_id: str | None,
    trigger: str,
    change_seen_at: datetime | None = None,
) -> AccountFile:
    """Assemble every dealer's last good part into the account's one file (their bytes, copied), deliver it if its bytes
    changed, then check the file at its destination against each dealer's part (the drift oracle); `specs`: every
    marketplace published to (the account-wide ones' drift is published with this run)."""
    marketplace = spec.name
    file_format = spec.file_format(settings.marketplaces[marketplace].file_format)
    account_name = spec.account_file.name(file_format)
    destination = destination_for(settings.marketplaces[marketplace], paths)
    delivery = dict(run_id=run_id, trigger=trigger, change_seen_at=change_seen_at)
    with ExitStack() as opened:
        parts = {}  # each part opened with its index read for that very file: a dealer's run may replace it meanwhile
        for dealer in settings.dealers:
            if marketplace not in dealer.marketplaces:
                continue
            (part_name,) = [file.name for file in feed_files(spec, dealer, settings)]
            part = feed_cache.open_kept(paths.state, marketplace, dealer.id, part_name)
            if part is not None:
                parts[dealer.id] = (opened.enter_context(part[0]), part[1])
        staged = stage(paths.state / "staging" / marketplace, account_name, merged(spec.account_file.header(file_format), list(parts.values())))
        try:
            outcome = deliver_file(engine, destination, marketplace, ACCOUNT, account_name, staged, **delivery)
            drift = account_drift(spec, settings, paths, engine, destination, account_name, staged, parts, **delivery)
        finally:
            staged.discard()
        delimiter = spec.account_file.delimiter(file_format)
        listed = sum(_part_rows(part, delimiter) for part in parts.values())
        preview = _first_rows(spec, list(parts.values()), delimiter)
    publish_account_tables(paths, engine, frozenset(s.name for s in specs if s.account_file is not None))
    return AccountFile(marketplace, listed, len(parts), preview, outcome, drift)


def publish_account_tables(paths: DataPaths, engine: Engine, account_wide: frozenset[str]) -> None:
    """The account's own rows of the analysts' tables (its dead letters and deliveries) and every dealer's drift in the
    `account_wide` marketplaces' files."""
    publish(paths, "account", operational_rows(engine, ACCOUNT, ("dead_letters",)))
    publish_appended(paths, engine, "deliveries", ACCOUNT, file_key="account")
    publish(paths, "account_drift", operational_rows(engine, None, ("drift_items",), account_wide))  # every dealer's, at once
    publish_appended(paths, engine, "marketplace_drift", None, file_key="account_drift", account_wide=account_wide)
    ensure_catalog(paths)


def account_drift(
    spec: MarketplaceSpec,
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    destination: Destination,
    name: str,
    staged: StagedFile,
    parts: dict,
    heal_rounds: int = HEAL_ROUNDS,
    **delivery,
) -> dict[str, Drift]:
    """Per dealer, its rows in the account file at the destination against its rows as built; a file that differs is sent
    again (up to `heal_rounds` times) before each dealer's drift is recorded."""
    marketplace = spec.name
    file_format = spec.file_format(settings.marketplaces[marketplace].file_format)
    header = spec.account_file.header(file_format)
    delimiter = spec.account_file.delimiter(file_format)
    for round_number in range(heal_rounds + 1):
        drifts = {dealer_id: Drift(dealer_id, marketplace, checked=_part_rows(part, delimiter)) for dealer_id, part in parts.items()}
        if verified(engine, destination, marketplace, ACCOUNT, name, staged.sha256):
            break
        actual = read_back(destination, name)
        if actual == staged.path.read_bytes():
            record_verified(engine, destination, marketplace, ACCOUNT, name, staged.sha256)
            break
        for dealer_id, (handle, _) in parts.items():
            if isinstance(actual, str):
                drifts[dealer_id].error = f"{name}: {actual}"
                continue
            dealer = settings.dealer(dealer_id)
            view = StockView(paths.state, dealer_id)

            def mine(rows: dict[str, str], prefix: str = spec.account_file.part_key(dealer, dealer.marketplaces[marketplace])) -> dict[str, str]:
                return {key[len(prefix) :]: row for key, row in rows.items() if key.startswith(prefix)}

            drifts[dealer_id] = file_drift(
                dealer_id,
                marketplace,
                name,
                header + _part_bytes(handle),
                actual,
                spec.read_back,
                lambda ids, v=view: statuses(v, ids),
                select=mine,
            )
            if drifts[dealer_id].stale == [f"(file) {name}"]:  # this dealer's rows are right; what differs is another's or the header
                drifts[dealer_id].stale = []
        if round_number == heal_rounds or all(d.clean for d in drifts.values()):
            break
        deliver_file(engine, destination, marketplace, ACCOUNT, name, staged, **delivery)
    for dealer_id, drift in drifts.items():
        record_drift(engine, dealer_id, marketplace, delivery.get("run_id"), drift.checked, drift.items(), drift.error)
    return drifts


def _part_bytes(handle: BinaryIO) -> bytes:
    """The whole part, read through a second descriptor so `handle` stays where it is."""
    with open(os.dup(handle.fileno()), "rb") as part:
        part.seek(0)
        return part.read()


def _part_rows(part: tuple, delimiter: str) -> int:
    handle, index = part
    return len(index) if index is not None else len(_csv_rows(handle, delimiter))


def _csv_rows(handle: BinaryIO, delimiter: str, rows: int | None = None) -> list[list[str]]:
    """The part's first `rows` rows (all by default), read through a second descriptor so `handle` stays open."""
    with open(os.dup(handle.fileno()), encoding="utf-8", newline="") as text:
        text.seek(0)
        return list(itertools.islice(csv.reader(text, delimiter=delimiter), rows))


def _first_rows(spec: MarketplaceSpec, parts: list, delimiter: str, rows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first rows of the first dealer's part, as the account file shows them (for the materialisation's preview)."""
    columns = list(spec.account_file.columns)
    for handle, _ in parts:
        if first := _csv_rows(handle, delimiter, rows):
            return pd.DataFrame(first, columns=columns)
    return pd.DataFrame(columns=columns)
