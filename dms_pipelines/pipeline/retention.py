"""Storage limitation: remove one dealer's personal data older than its retention period (configuration, per kind), as the nightly run does."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.config import LocalDestination, Settings
from dms_pipelines.operations import lead_store
from dms_pipelines.operations.db import consents, customer_files, identity_records, lead_files, leads, match_decisions, review_queue
from dms_pipelines.operations.manifest import utc_aware, utc_now
from dms_pipelines.paths import DataPaths


@dataclass
class RetentionReport:
    dealer_id: str
    removed: dict[str, int] = field(default_factory=dict)  # table or folder -> rows or files removed

    def add(self, name: str, count: int) -> None:
        if count:
            self.removed[name] = self.removed.get(name, 0) + count


def _cutoff(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _remove_leads(engine: Engine, dealer_id: str, lead_ids: list[int], report: RetentionReport) -> None:
    if not lead_ids:
        return
    keys = [str(i) for i in lead_ids]
    with engine.begin() as connection:
        for name, count in lead_store.delete_leads(connection, lead_ids).items():
            report.add(name, count)
        for name, table in (("identity_records", identity_records), ("match_decisions", match_decisions), ("consents", consents)):
            report.add(name, connection.execute(delete(table).where(and_(table.c.dealer_id == dealer_id, table.c.record_kind == "lead", table.c.record_key.in_(keys)))).rowcount)
        report.add(
            "review_queue",
            connection.execute(delete(review_queue).where(and_(review_queue.c.dealer_id == dealer_id, review_queue.c.record_kind == "lead", review_queue.c.record_key.in_(keys)))).rowcount,
        )


def _old_leads(engine: Engine, dealer_id: str, cutoff: datetime) -> list[int]:
    with engine.connect() as connection:
        return [row.id for row in connection.execute(select(leads.c.id, leads.c.last_received_at).where(leads.c.dealer_id == dealer_id)) if utc_aware(row.last_received_at) < cutoff]


def _old_prospects(engine: Engine, dealer_id: str, cutoff: datetime) -> list[int]:
    """Leads of customers the DMS does not know (prospects) whose newest enquiry is older than the cutoff."""
    with engine.connect() as connection:
        members = connection.execute(select(identity_records.c.record_kind, identity_records.c.record_key, identity_records.c.cluster_id).where(identity_records.c.dealer_id == dealer_id)).all()
        received = {row.id: utc_aware(row.last_received_at) for row in connection.execute(select(leads.c.id, leads.c.last_received_at).where(leads.c.dealer_id == dealer_id))}
    customers = {cluster for kind, _, cluster in members if kind == "customer"}
    by_cluster: dict[str, list[int]] = {}
    for kind, key, cluster in members:
        if kind == "lead" and cluster not in customers and key.isdigit() and int(key) in received:
            by_cluster.setdefault(cluster, []).append(int(key))
    return sorted(lead for ids in by_cluster.values() if max(received[i] for i in ids) < cutoff for lead in ids)


def _remove_lead_files(engine: Engine, paths: DataPaths, dealer_id: str, cutoff: datetime, report: RetentionReport) -> None:
    folder = paths.lead_landing / dealer_id
    with engine.begin() as connection:
        rows = connection.execute(select(lead_files.c.id, lead_files.c.file_name, lead_files.c.received_at).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.erased_at.is_(None)))).all()
        old = [row for row in rows if utc_aware(row.received_at) < cutoff]
        for row in old:
            path = folder / row.file_name
            if path.exists():
                path.unlink()
                report.add("lead_landing files", 1)
            connection.execute(update(lead_files).where(lead_files.c.id == row.id).values(erased_at=utc_now()))


def _remove_customer_exports(engine: Engine, paths: DataPaths, dealer_id: str, cutoff: datetime, report: RetentionReport) -> None:
    """Raw customer exports older than the cutoff, but never the newest processed full export (the DMS's latest word)."""
    folder = paths.customer_landing / dealer_id
    with engine.begin() as connection:
        newest_full = connection.execute(
            select(func.max(customer_files.c.id)).where(and_(customer_files.c.dealer_id == dealer_id, customer_files.c.export_kind == "full", customer_files.c.status == "processed"))
        ).scalar()
        rows = connection.execute(
            select(customer_files.c.id, customer_files.c.file_name, customer_files.c.received_at).where(and_(customer_files.c.dealer_id == dealer_id, customer_files.c.removed_at.is_(None)))
        ).all()
        for row in rows:
            if row.id == newest_full or utc_aware(row.received_at) >= cutoff:
                continue
            path = folder / row.file_name
            if path.exists():
                path.unlink()
                report.add("customer_landing files", 1)
            connection.execute(update(customer_files).where(customer_files.c.id == row.id).values(removed_at=utc_now()))


def apply_retention(settings: Settings, paths: DataPaths, engine: Engine, dealer_id: str, now: datetime | None = None) -> RetentionReport:
    """Remove what the dealer keeps past its retention periods: old leads (with their versions, deliveries, identity rows and
    raw files; a decided review entry goes with its lead), prospects not heard from, old ADF files in local CRM drops, old raw customer exports."""
    now = now or utc_now()
    rules = settings.retention
    report = RetentionReport(dealer_id)
    if (cutoff := _cutoff(now, rules.leads_days)) is not None:
        _remove_leads(engine, dealer_id, _old_leads(engine, dealer_id, cutoff), report)
        _remove_lead_files(engine, paths, dealer_id, cutoff, report)
    if (cutoff := _cutoff(now, rules.prospects_days)) is not None:
        _remove_leads(engine, dealer_id, _old_prospects(engine, dealer_id, cutoff), report)
    dealer = settings.dealer(dealer_id)
    if (cutoff := _cutoff(now, rules.crm_outbox_days)) is not None and dealer.crm is not None and isinstance(dealer.crm.drop, LocalDestination):
        drop = paths.resolve(dealer.crm.drop.path)
        if drop.exists():
            for path in sorted(p for p in drop.rglob("*") if p.is_file()):
                if path.stat().st_mtime < cutoff.timestamp():
                    path.unlink()
                    report.add("crm drop files", 1)
    if (cutoff := _cutoff(now, rules.customer_exports_days)) is not None:
        _remove_customer_exports(engine, paths, dealer_id, cutoff, report)
    return report
