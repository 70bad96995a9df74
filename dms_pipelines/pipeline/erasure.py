"""Erase one person everywhere they are kept: operational tables, raw lead and customer files, the CRM outbox, the warehouse; then a suppression entry and a log."""

import csv
import email
import email.policy
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from sqlalchemy import and_, delete, insert, or_, select, true, update
from sqlalchemy.engine import Engine

from dms_pipelines.config import LocalDestination, Settings
from dms_pipelines.customers.normalise import normalise_email, normalise_phone
from dms_pipelines.formats.decoding import DecodingError, decode
from dms_pipelines.kernels.atomic import write_bytes_atomically
from dms_pipelines.operations import lead_store
from dms_pipelines.operations.db import (
    consents,
    customer_files,
    customer_quarantine,
    dms_customers,
    erasures,
    identity_records,
    lead_files,
    lead_versions,
    leads,
    match_decisions,
    review_queue,
    suppressions,
)
from dms_pipelines.operations.manifest import utc_now
from dms_pipelines.paths import DataPaths
from dms_pipelines.warehouse.identity import publish_identity
from dms_pipelines.warehouse.leads import publish_leads
from dms_pipelines.warehouse.tables import ensure_catalog

EMAIL = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{8,18}[0-9]")
CUSTOMER_PHONES = ("phone_mobile", "phone_home", "phone_work")
SALT_FILE = "erasure_salt"
LOG_FILE = "erasure_log.jsonl"
TEXT_SUFFIXES = (".csv", ".txt", ".tsv")
MAX_SCAN_BYTES = 256 * 1024 * 1024  # the residue check reads a bigger file's first part only


class ErasureError(ValueError):
    """An erasure cannot start (no criterion, a value that is not an e-mail or phone); the message says why."""


@dataclass
class Person:
    """What is known of the person being erased: their records, clusters and the contact values that identify their rows."""

    lead_ids: set[int] = field(default_factory=set)
    customers: set[tuple[str, str]] = field(default_factory=set)  # (dealer_id, customer_number)
    clusters: set[tuple[str, str]] = field(default_factory=set)  # (dealer_id, cluster_id)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)  # "first last" and full names as given, for the residue check
    lead_files: set[tuple[str, str]] = field(default_factory=set)  # (dealer_id, name) of files that held their leads: landed and inbox names

    @property
    def found(self) -> bool:
        return bool(self.lead_ids or self.customers)


@dataclass
class ErasureReport:
    erasure_id: int | None
    criterion: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    files_removed: list[str] = field(default_factory=list)  # paths relative to the data root
    files_rewritten: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be erased, named by file (never the value)
    residue: list[str] = field(default_factory=list)  # files still holding one of the person's values afterwards

    @property
    def ok(self) -> bool:
        return not self.problems and not self.residue


# ------------------------------------------------------------------------------------------------- suppression


def erasure_salt(settings: Settings, paths: DataPaths, environ=None) -> bytes:
    """The suppression list's salt: the configured environment variable, else a random one kept in state/ (created once, 0600)."""
    environ = os.environ if environ is None else environ
    value = environ.get(settings.erasure_salt_env)
    if value:
        return value.encode()
    path = paths.state / SALT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, secrets.token_hex(32).encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


def suppression_hash(salt: bytes, kind: str, value: str) -> str:
    return hmac.new(salt, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def suppressed(engine: Engine, salt: bytes, email: str | None, phone: str | None) -> bool:
    """Whether an e-mail or phone (normalised) belongs to someone erased before."""
    wanted = [suppression_hash(salt, kind, value) for kind, value in (("email", email), ("phone", phone)) if value]
    if not wanted:
        return False
    with engine.connect() as connection:
        return connection.execute(select(suppressions.c.id).where(suppressions.c.value_hash.in_(wanted)).limit(1)).first() is not None


def any_suppressions(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(suppressions.c.id).limit(1)).first() is not None


# ------------------------------------------------------------------------------------------------- finding them


def _regions(settings: Settings) -> list[str]:
    return list(dict.fromkeys(dealer.market.country for dealer in settings.dealers)) or ["GB"]


def _phones_of(value: str, regions: list[str]) -> set[str]:
    return {number for region in regions if (number := normalise_phone(value, region))}


def _email_key(value) -> str | None:
    """An e-mail as erasure compares it: normalised, then case-folded (a mailbox's local part is case-sensitive in theory only)."""
    normalised = normalise_email(value)
    return normalised.casefold() if normalised else None


def _lead_values(lead: dict) -> tuple[set[str], set[str], set[str]]:
    emails = {_email_key(lead.get("email"))} - {None}
    phones = {lead.get("phone")} - {None, ""}
    names = {" ".join(part for part in (lead.get("first_name"), lead.get("last_name")) if part)} | {lead.get("full_name") or ""}
    return emails, phones, names - {""}


def _customer_values(record: dict) -> tuple[set[str], set[str], set[str]]:
    emails = {_email_key(record.get("email"))} - {None}
    phones = {record.get(name) for name in CUSTOMER_PHONES} - {None, ""}
    names = {" ".join(part for part in (record.get("first_name"), record.get("last_name")) if part)} - {""}
    return emails, phones, names


def find_person(engine: Engine, email: str | None = None, phone_numbers: set[str] | None = None, customer: str | None = None, dealer_id: str | None = None) -> Person:
    """The person's leads and DMS customer records: those holding the e-mail or phone (or the customer number or cluster id),
    then every record of the same clusters, then any other record holding a contact value found so far (to a fixed point)."""
    person = Person(emails={email} if email else set(), phones=set(phone_numbers or ()))
    in_dealer = (lambda table: table.c.dealer_id == dealer_id) if dealer_id else (lambda table: true())
    with engine.connect() as connection:
        if customer:
            if customer.startswith("P-"):
                person.clusters |= {
                    (d, c)
                    for d, c in connection.execute(
                        select(identity_records.c.dealer_id, identity_records.c.cluster_id).where(and_(identity_records.c.cluster_id == customer, in_dealer(identity_records)))
                    )
                }
            else:
                person.customers |= {
                    (d, n)
                    for d, n in connection.execute(
                        select(dms_customers.c.dealer_id, dms_customers.c.customer_number).where(and_(dms_customers.c.customer_number == customer, in_dealer(dms_customers)))
                    )
                }
        all_leads = [(row.id, row.dealer_id, json.loads(row.lead)) for row in connection.execute(select(leads.c.id, leads.c.dealer_id, leads.c.lead).where(in_dealer(leads)))]
        all_customers = [
            (row.dealer_id, row.customer_number, json.loads(row.record))
            for row in connection.execute(select(dms_customers.c.dealer_id, dms_customers.c.customer_number, dms_customers.c.record).where(in_dealer(dms_customers)))
        ]
        memberships = [
            (row.dealer_id, row.record_kind, row.record_key, row.cluster_id)
            for row in connection.execute(
                select(identity_records.c.dealer_id, identity_records.c.record_kind, identity_records.c.record_key, identity_records.c.cluster_id).where(in_dealer(identity_records))
            )
        ]
    cluster_of = {(dealer, kind, key): cluster for dealer, kind, key, cluster in memberships}
    for _ in range(5):
        before = (len(person.lead_ids), len(person.customers), len(person.clusters), len(person.emails), len(person.phones))
        for lead_id, dealer, lead in all_leads:
            emails, phones, names = _lead_values(lead)
            if lead_id in person.lead_ids or emails & person.emails or phones & person.phones or (dealer, cluster_of.get((dealer, "lead", str(lead_id)))) in person.clusters:
                person.lead_ids.add(lead_id)
                person.emails |= emails
                person.phones |= phones
                person.names |= names
        for dealer, number, record in all_customers:
            emails, phones, names = _customer_values(record)
            if (dealer, number) in person.customers or emails & person.emails or phones & person.phones or (dealer, cluster_of.get((dealer, "customer", number))) in person.clusters:
                person.customers.add((dealer, number))
                person.emails |= emails
                person.phones |= phones
                person.names |= names
        for dealer, kind, key, cluster in memberships:
            if (kind == "lead" and key.isdigit() and int(key) in person.lead_ids) or (kind == "customer" and (dealer, key) in person.customers):
                person.clusters.add((dealer, cluster))
        if before == (len(person.lead_ids), len(person.customers), len(person.clusters), len(person.emails), len(person.phones)):
            break
    return person


# ------------------------------------------------------------------------------------------------- raw files


def _holds(value: str, person: Person, regions: list[str]) -> bool:
    """Whether a piece of text holds one of the person's e-mails or phones, in whatever format it was written."""
    if person.emails and any(_email_key(found) in person.emails for found in EMAIL.findall(value)):
        return True
    if person.phones and any(_phones_of(found, regions) & person.phones for found in PHONE.findall(value)):
        return True
    return False


def _csv_without(data: bytes, person: Person, regions: list[str], numbers: set[str]) -> tuple[bytes | None, int]:
    """The CSV without the person's rows (None when nothing changes) and how many rows were dropped."""
    content, encoding = decode(data)
    try:
        dialect = csv.Sniffer().sniff(content.split("\n", 1)[0] + "\n", delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    rows = list(csv.reader(io.StringIO(content, newline=""), delimiter=delimiter))
    kept = [row for row in rows if not (any(_holds(cell, person, regions) for cell in row) or (numbers and any(cell.strip() in numbers for cell in row[:3])))]
    dropped = len(rows) - len(kept)
    if not dropped:
        return None, 0
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n" if "\r\n" in content[:4096] else "\n").writerows(kept)
    return out.getvalue().encode(encoding), dropped


def _xml_without(data: bytes, person: Person, regions: list[str], record_tag: str | None, namespaces: dict[str, str], numbers: set[str]) -> tuple[bytes | None, int]:
    """The XML document without the person's records (elements holding one of their values), or None when nothing changes."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    root = etree.fromstring(data, parser)
    if record_tag:
        prefix, _, local = record_tag.rpartition(":")
        tag = f"{{{namespaces[prefix]}}}{local}" if prefix else local
        candidates = list(root.iter(tag))
    else:
        candidates = [root]
    dropped = 0
    for element in candidates:
        values = [*(t for t in element.itertext()), *(v for e in element.iter() for v in e.attrib.values())]
        if any(_holds(value, person, regions) for value in values) or (numbers and any(value.strip() in numbers for value in values)):
            parent = element.getparent()
            if parent is None:
                return b"", 1
            parent.remove(element)
            dropped += 1
    if not dropped:
        return None, 0
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"), dropped


def readable_text(name: str, data: bytes) -> str:
    """A file's text as a reader would see it: an e-mail's parts decoded (quoted-printable and base64 hide an address)."""
    text_form = data.decode("utf-8", "replace")
    if not name.lower().endswith(".eml"):
        return text_form
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
        parts = [part.get_payload(decode=True) or b"" for part in message.walk() if not part.is_multipart()]
    except Exception:  # a malformed e-mail is still searched as bytes
        return text_form
    return "\n".join([text_form, *(part.decode("utf-8", "replace") for part in parts)])


def _rewrite(path: Path, person: Person, regions: list[str], record_tag=None, namespaces=None, numbers=frozenset(), linked: bool = False) -> tuple[str, int]:
    """'removed', 'rewritten' or 'kept', and the records dropped, for one raw file (plain or .gz). A payload of one lead
    that was one of the person's (`linked`) goes whatever it holds."""
    raw = path.read_bytes()
    compressed = path.suffix == ".gz"
    data = gzip.decompress(raw) if compressed else raw
    inner = path.stem if compressed else path.name
    suffix = Path(inner).suffix.lower()
    try:
        if suffix in TEXT_SUFFIXES:
            new, dropped = _csv_without(data, person, regions, set(numbers))
        elif suffix == ".xml" and record_tag:
            new, dropped = _xml_without(data, person, regions, record_tag, namespaces or {}, set(numbers))
        else:  # a payload of one lead (JSON, ADF, e-mail): theirs as a whole or not at all
            if not linked and not _holds(readable_text(inner, data), person, regions):
                return "kept", 0
            path.unlink()
            return "removed", 1
    except (DecodingError, etree.XMLSyntaxError, UnicodeError) as error:
        if not _holds(readable_text(inner, data), person, regions):
            return "kept", 0
        raise ErasureError(f"{path.name}: holds the person but cannot be rewritten ({error}); remove their records by hand") from error
    if new is None:
        return "kept", 0
    write_bytes_atomically(path, gzip.compress(new, mtime=0) if compressed else new)
    return "rewritten", dropped


# ------------------------------------------------------------------------------------------------- erasing


def _files_of_leads(engine: Engine, lead_ids: set[int]) -> set[tuple[str, str]]:
    """The landed and inbox names of every file that held one of these leads (any revision)."""
    if not lead_ids:
        return set()
    with engine.connect() as connection:
        keys = connection.execute(select(leads.c.dealer_id, leads.c.source, leads.c.source_lead_id, leads.c.lead_file_id).where(leads.c.id.in_(sorted(lead_ids)))).all()
        file_ids = {row.lead_file_id for row in keys if row.lead_file_id is not None}
        for dealer, source, source_lead_id, _ in keys:
            file_ids |= set(
                connection.execute(
                    select(lead_versions.c.lead_file_id).where(and_(lead_versions.c.dealer_id == dealer, lead_versions.c.source == source, lead_versions.c.source_lead_id == source_lead_id))
                ).scalars()
            )
        rows = connection.execute(select(lead_files.c.dealer_id, lead_files.c.file_name, lead_files.c.original_name).where(lead_files.c.id.in_(sorted(i for i in file_ids if i is not None)))).all()
    return {(dealer, name) for dealer, landed, original in rows for name in (landed, Path(original).name if original else None) if name}


def _delete_rows(engine: Engine, person: Person) -> dict[str, int]:
    counts = {}
    lead_ids = sorted(person.lead_ids)
    lead_keys = [str(i) for i in lead_ids]
    with engine.begin() as connection:
        counts |= lead_store.delete_leads(connection, lead_ids)
        counts["dms_customers"] = counts["customer_quarantine"] = 0
        for dealer, number in sorted(person.customers):
            counts["dms_customers"] += connection.execute(delete(dms_customers).where(and_(dms_customers.c.dealer_id == dealer, dms_customers.c.customer_number == number))).rowcount
            counts["customer_quarantine"] += connection.execute(
                delete(customer_quarantine).where(and_(customer_quarantine.c.dealer_id == dealer, customer_quarantine.c.customer_number == number))
            ).rowcount
        # a lead's key is its database id, unique across dealers; a customer number is one rooftop's own
        records = [(None, "lead", key) for key in lead_keys] + [(dealer, "customer", number) for dealer, number in sorted(person.customers)]
        clusters = sorted({cluster for _, cluster in person.clusters})

        def of(table, dealer, kind, key):
            condition = and_(table.c.record_kind == kind, table.c.record_key == key)
            return condition if dealer is None else and_(condition, table.c.dealer_id == dealer)

        for name, table in (("identity_records", identity_records), ("match_decisions", match_decisions), ("consents", consents)):
            total = sum(connection.execute(delete(table).where(of(table, dealer, kind, key))).rowcount for dealer, kind, key in records)
            if name != "consents" and clusters:
                total += connection.execute(delete(table).where(table.c.cluster_id.in_(clusters))).rowcount
            counts[name] = total
        review = 0
        for dealer, kind, key in records:
            candidate = review_queue.c.candidate_key == key if dealer is None else and_(review_queue.c.candidate_key == key, review_queue.c.dealer_id == dealer)
            review += connection.execute(delete(review_queue).where(or_(of(review_queue, dealer, kind, key), candidate))).rowcount
        if clusters:
            review += connection.execute(delete(review_queue).where(review_queue.c.candidate_cluster_id.in_(clusters))).rowcount
        counts["review_queue"] = review
    return counts


def _compact(engine: Engine) -> None:
    """SQLite keeps deleted rows' bytes in free pages and the write-ahead log: rebuild the file and empty the log."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = engine.raw_connection()
    try:
        raw.isolation_level = None  # VACUUM cannot run inside a transaction
        raw.execute("VACUUM")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _relative(paths: DataPaths, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.root.resolve()))
    except ValueError:
        return str(path)


def _erase_files(settings: Settings, paths: DataPaths, engine: Engine, person: Person, report: ErasureReport, dry_run: bool) -> None:
    regions = _regions(settings)
    numbers = {number for _, number in person.customers}
    from dms_pipelines.formats.profile import ProfileError, find_profile

    for dealer in settings.dealers:
        folders = [(paths.lead_landing / dealer.id, "lead"), (paths.lead_inbox / dealer.id, "lead"), (paths.customer_landing / dealer.id, "customer"), (paths.customer_inbox / dealer.id, "customer")]
        record_tag, namespaces = None, {}
        if dealer.customers is not None:
            try:
                profile = find_profile(dealer.customers.profile, paths.profile_dirs())
                if profile.xml is not None:
                    record_tag, namespaces = profile.xml.record, dict(profile.xml.namespaces)
            except (ProfileError, OSError) as error:
                report.problems.append(f"{dealer.id}: customer profile {dealer.customers.profile} cannot be loaded ({error}); its XML exports are searched whole")
        if dealer.crm is not None and isinstance(dealer.crm.drop, LocalDestination):
            folders.append((paths.resolve(dealer.crm.drop.path), "crm"))
        for folder, kind in folders:
            if not folder.exists():
                continue
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                linked = kind == "lead" and (dealer.id, path.name) in person.lead_files
                if dry_run:
                    data = path.read_bytes()
                    if linked or _holds(readable_text(path.name, gzip.decompress(data) if path.suffix == ".gz" else data), person, regions):
                        report.files_rewritten.append(_relative(paths, path))
                    continue
                try:
                    outcome, dropped = _rewrite(path, person, regions, record_tag if kind == "customer" else None, namespaces, numbers if kind == "customer" else frozenset(), linked)
                except ErasureError as error:
                    report.problems.append(str(error))
                    continue
                if outcome == "kept":
                    continue
                shown = _relative(paths, path)
                (report.files_removed if outcome == "removed" else report.files_rewritten).append(shown)
                report.counts[f"{kind}_records_in_files"] = report.counts.get(f"{kind}_records_in_files", 0) + dropped
                _record_in_manifest(engine, dealer.id, path, outcome, kind)


def _record_in_manifest(engine: Engine, dealer_id: str, path: Path, outcome: str, kind: str) -> None:
    now = utc_now()
    with engine.begin() as connection:
        if kind == "lead":
            connection.execute(update(lead_files).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.file_name == path.name)).values(erased_at=now))
        elif kind == "customer" and outcome == "rewritten":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            connection.execute(
                update(customer_files)
                .where(and_(customer_files.c.dealer_id == dealer_id, customer_files.c.file_name == path.name))
                .values(rewritten_at=now, sha256=digest, size_bytes=path.stat().st_size)
            )


def residue(paths: DataPaths, person: Person, regions: list[str]) -> list[str]:
    """Every file under the data root that still holds one of the person's e-mails or phones (raw bytes, text files, any name)."""
    found = []
    for path in sorted(p for p in paths.root.rglob("*") if p.is_file()):
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_SCAN_BYTES)
        except OSError:
            continue
        if path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError):
                pass
        content = readable_text(path.name, data)
        if _holds(content, person, regions) or any(email in content.casefold() for email in person.emails):
            found.append(_relative(paths, path))
    return found


def erase(
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    email: str | None = None,
    phone: str | None = None,
    customer: str | None = None,
    dealer_id: str | None = None,
    requested_by: str | None = None,
    dry_run: bool = False,
    environ=None,
    republish: bool = True,
) -> ErasureReport:
    """Remove the person (found by e-mail, phone, DMS customer number or cluster id) from every table and file that holds them,
    keep a salted hash of their contacts so a later lead or export from them is flagged, and log the counts."""
    if sum(value is not None for value in (email, phone, customer)) != 1:
        raise ErasureError("give exactly one of --email, --phone or --customer")
    regions = _regions(settings)
    criterion = "email" if email is not None else "phone" if phone is not None else "customer"
    wanted_email = _email_key(email) if email is not None else None
    if email is not None and wanted_email is None:
        raise ErasureError("the --email given is not a valid e-mail address")
    phones = _phones_of(phone, regions) if phone is not None else set()
    if phone is not None and not phones:
        raise ErasureError("the --phone given is not a valid phone number")
    person = find_person(engine, wanted_email, phones, customer, dealer_id)
    person.lead_files = _files_of_leads(engine, person.lead_ids)
    report = ErasureReport(None, criterion, dry_run)
    report.counts = {"leads_found": len(person.lead_ids), "customers_found": len(person.customers), "clusters_found": len(person.clusters)}
    if dry_run:
        _erase_files(settings, paths, engine, person, report, dry_run=True)
        return report
    started = utc_now()
    with engine.begin() as connection:
        report.erasure_id = connection.execute(insert(erasures).values(requested_at=started, requested_by=requested_by, criterion=criterion, counts="{}")).inserted_primary_key[0]
    report.counts |= _delete_rows(engine, person)
    _erase_files(settings, paths, engine, person, report, dry_run=False)
    salt = erasure_salt(settings, paths, environ)
    entries = [("email", value) for value in person.emails] + [("phone", value) for value in person.phones]
    with engine.begin() as connection:
        known = set(connection.execute(select(suppressions.c.value_hash)).scalars())
        fresh = [{"kind": kind, "value_hash": h, "erasure_id": report.erasure_id, "created_at": started} for kind, value in entries if (h := suppression_hash(salt, kind, value)) not in known]
        if fresh:
            connection.execute(insert(suppressions), fresh)
    report.counts["suppression_entries"] = len(fresh)
    if republish:  # every dealer's files: the person may have enquired at several rooftops
        for dealer in settings.dealers:
            publish_leads(paths, engine, dealer.id)
            publish_identity(paths, engine, dealer.id)
        ensure_catalog(paths)
    _compact(engine)
    report.residue = residue(paths, person, regions)
    report.counts |= {"files_removed": len(report.files_removed), "files_rewritten": len(report.files_rewritten), "residue_files": len(report.residue)}
    with engine.begin() as connection:
        connection.execute(update(erasures).where(erasures.c.id == report.erasure_id).values(counts=json.dumps(report.counts, sort_keys=True), finished_at=utc_now()))
    log_line = {"erasure_id": report.erasure_id, "at": started.isoformat(), "by": requested_by, "criterion": criterion, "counts": report.counts, "problems": len(report.problems)}
    paths.state.mkdir(parents=True, exist_ok=True)
    with (paths.state / LOG_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(log_line, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _compact(engine)
    return report
