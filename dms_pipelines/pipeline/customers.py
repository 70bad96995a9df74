"""One dealer's DMS customer stages in order: land the customer exports from its source, then read, check and store them."""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, LocalInboxSource, Settings
from dms_pipelines.customers.validate import validate_customers
from dms_pipelines.formats.profile import MappingProfile, ProfileError, find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.kernels.atomic import rename_into_place, temporary_sibling
from dms_pipelines.operations import customer_store
from dms_pipelines.operations.manifest import utc_now
from dms_pipelines.operations.statuses import LeadFileStatus
from dms_pipelines.paths import DataPaths
from dms_pipelines.sources.base import RemoteFile, SourceError, shown
from dms_pipelines.sources.landing import safe_local_name, sha256_of

log = logging.getLogger(__name__)


@dataclass
class CustomerLanding:
    """What one landing pass took: file names only (never their contents)."""

    landed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # names matching neither of the profile's patterns: not taken
    failed: list[str] = field(default_factory=list)  # "name: reason"


@dataclass
class CustomerReading:
    files: int = 0
    records_in: int = 0
    accepted: int = 0
    quarantined: int = 0
    warnings: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # "name: reason"
    new: int = 0
    changed: int = 0
    absent: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # issues per rule


@dataclass
class CustomerSync:
    landing: CustomerLanding
    reading: CustomerReading


def customer_folder(paths: DataPaths, dealer_id: str) -> Path:
    return paths.customer_landing / dealer_id


def customer_profile(dealer: Dealer, paths: DataPaths) -> MappingProfile:
    """The dealer's customer mapping profile; ProfileError when it is not configured or does not read customers."""
    if dealer.customers is None:
        raise ProfileError(f"dealer {dealer.id} has no 'customers' section: no DMS customer export is configured")
    profile = find_profile(dealer.customers.profile, paths.profile_dirs())
    if profile.record != "customer":
        raise ProfileError(
            f"dealers.{dealer.id}.customers.profile: mapping profile '{profile.name}' reads {profile.record} records (record: {profile.record}); "
            "a customer export needs a profile with record: customer (built in: navigator_customers_csv, star5_customers_xml)"
        )
    return profile


def customer_source(dealer: Dealer, paths: DataPaths):
    """The dealer's customer source: customer_inbox/<dealer> unless its configuration names another folder or an SFTP source."""
    source = dealer.customers.source
    if source is None or isinstance(source, LocalInboxSource):
        from dms_pipelines.sources.local_inbox import LocalInboxSource as LocalInbox

        folder = paths.resolve(source.path) if source is not None and source.path else paths.customer_inbox / dealer.id
        return LocalInbox(folder)
    from dms_pipelines.sources.sftp import SftpSettings, SftpSource

    return SftpSource(SftpSettings.from_config(source, resolve=paths.resolve))


def land_customer_exports(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None) -> CustomerLanding:
    """Copy the dealer's new customer exports into customer_landing/<dealer>/ (atomically, with a checksum and a
    customer_files row each); names matching neither of the profile's patterns are left where they are."""
    logger = logger or log
    report = CustomerLanding()
    profile = customer_profile(dealer, paths)
    folder = customer_folder(paths, dealer.id)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        source = customer_source(dealer, paths)
    except SourceError as error:
        report.failed.append(f"customer source: {error}")
        return report
    try:
        listing = source.list_files()
        seen = customer_store.source_keys(engine, dealer.id)
        hashes = customer_store.landed_hashes(engine, dealer.id)
        # the order they apply in: a full export before the deltas dropped with it
        candidates = sorted([*source.refused, *listing], key=lambda remote: (remote.mtime, profile.export_kind(remote.name) != "full", remote.name))
        for remote in candidates:
            key = f"{remote.path}:{remote.size}:{remote.mtime}"
            if key in seen:
                continue
            kind = profile.export_kind(remote.name)
            if kind is None:
                report.ignored.append(shown(remote.name))
                continue
            if remote.problem:
                _refuse(engine, dealer.id, run_id, remote, key, kind, remote.problem, report)
                continue
            _land_one(source, remote, key, kind, dealer.id, engine, run_id, folder, hashes, report, logger)
    except SourceError as error:
        report.failed.append(f"customer source: {error}")
    finally:
        source.close()
    if report.landed or report.failed:
        logger.info(f"{dealer.id}: customer exports landed {len(report.landed)}, duplicates {len(report.duplicates)}, failed {len(report.failed)}")
    return report


def _refuse(engine: Engine, dealer_id: str, run_id, remote: RemoteFile, key: str, kind: str, problem: str, report: CustomerLanding) -> None:
    name = f"refused-{utc_now():%Y%m%dT%H%M%S%f}-{safe_local_name(remote.name)}"
    customer_store.register_file(
        engine,
        dealer_id,
        name,
        "",
        remote.size,
        utc_now(),
        run_id,
        original_name=shown(remote.name),
        source_key=key,
        export_kind=kind,
        status=LeadFileStatus.FAILED,
        error=f"{shown(remote.name)}: {problem}",
    )
    report.failed.append(f"{shown(remote.name)}: {problem}")


def _land_one(source, remote: RemoteFile, key: str, kind: str, dealer_id: str, engine: Engine, run_id, folder: Path, hashes: set[str], report: CustomerLanding, logger) -> None:
    received = utc_now()
    name = f"{received:%Y%m%dT%H%M%S%f}-{safe_local_name(remote.name)}"
    target = folder / name
    temporary = temporary_sibling(target)
    try:
        source.fetch(remote, temporary)
        digest = sha256_of(temporary)
        if digest in hashes:
            temporary.unlink(missing_ok=True)
            customer_store.register_file(
                engine, dealer_id, name, digest, remote.size, received, run_id, original_name=shown(remote.name), source_key=key, export_kind=kind, status=LeadFileStatus.DUPLICATE
            )
            report.duplicates.append(shown(remote.name))
            return
        rename_into_place(temporary, target)
    except SourceError as error:
        temporary.unlink(missing_ok=True)
        if error.transient:
            logger.warning(f"{dealer_id}: customer export {shown(remote.name)} not taken this time: {error}")
            return
        _refuse(engine, dealer_id, run_id, remote, key, kind, str(error), report)
        return
    hashes.add(digest)
    customer_store.register_file(engine, dealer_id, name, digest, target.stat().st_size, received, run_id, original_name=shown(remote.name), source_key=key, export_kind=kind)
    report.landed.append(name)


def read_customer_exports(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None) -> CustomerReading:
    """Read every landed customer export not read yet, in order, through the dealer's customer profile: check the rows,
    store the accepted customers, quarantine the rest. A file that cannot be read fails alone; the others go on."""
    logger = logger or log
    report = CustomerReading()
    profile = customer_profile(dealer, paths)
    folder = customer_folder(paths, dealer.id)
    rules: Counter = Counter()
    limit = settings.rules_for(dealer.id).max_uncompressed_mb << 20
    for row in customer_store.files_to_read(engine, dealer.id):
        shown_name = shown(row.original_name or row.file_name)
        report.files += 1
        kind = row.export_kind or profile.export_kind(shown_name) or "full"
        try:
            result = read_export(folder / row.file_name, profile, dealer.id, file_name=row.original_name or row.file_name, max_uncompressed_bytes=limit)
        except (MappingError, OSError) as error:
            reason = str(error) if str(error).startswith(shown_name) else f"{shown_name}: {error}"
            customer_store.finish_file(engine, row.id, LeadFileStatus.FAILED, error=reason)
            report.failed.append(reason if reason.startswith(f"{shown_name}:") else f"{shown_name}: {reason}")
            logger.warning(f"{dealer.id}: customer export failed: {reason}")
            continue
        accepted, issues = validate_customers(result.rows, result.issues, result.file_name, dealer.market.country)
        errors = issues[issues["severity"] == "error"]
        quarantined = int(errors["source_row"].nunique(dropna=False)) if len(errors) else 0
        warnings = int((issues["severity"] == "warning").sum())
        seen = set(result.rows["customer_number"].dropna().astype(str).str.strip())
        with engine.begin() as connection:
            counts = customer_store.store_customers(connection, dealer.id, accepted, row.id, full=kind == "full", seen=seen)
            customer_store.record_quarantine(connection, dealer.id, row.id, result.file_name, issues)
            skipped = sum(result.skipped.values())
            customer_store.finish_file(connection, row.id, LeadFileStatus.PROCESSED, records_in=result.records_in_file, accepted=len(accepted), quarantined=quarantined, skipped=skipped)
        rules.update(issues["rule"].astype(str))
        report.records_in += result.records_in_file
        report.accepted += len(accepted)
        report.quarantined += quarantined
        report.warnings += warnings
        report.skipped += skipped
        report.new += counts["new"]
        report.changed += counts["changed"]
        report.absent += counts["absent"]
        logger.info(f"{dealer.id}: {shown_name} ({kind}): {len(accepted)} customers accepted, {quarantined} rows quarantined, {warnings} warnings")
    report.rules = dict(rules)
    return report


def sync_customers(dealer_id: str, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None) -> CustomerSync:
    """Land, then read, one dealer's DMS customer exports."""
    dealer = settings.dealer(dealer_id)
    landing = land_customer_exports(dealer, settings, paths, engine, run_id, logger)
    return CustomerSync(landing, read_customer_exports(dealer, settings, paths, engine, run_id, logger))
