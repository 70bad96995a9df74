"""The status enums are the strings the database holds: stored as such, read back as plain strings that compare equal."""

from datetime import datetime, timezone

from sqlalchemy import insert, select

from dms_pipelines.operations.db import engine_for, ingested_files, listing_ledger
from dms_pipelines.operations.statuses import (
    PROBLEM_FILE_STATUSES,
    PROBLEM_LISTING_STATUSES,
    SETTLED_LISTING_STATUSES,
    TAKEN_FILE_STATUSES,
    FileStatus,
    ListingStatus,
    QuarantineStatus,
)


def test_values_are_the_strings_stored():
    assert [s.value for s in FileStatus] == ["landed", "processed", "failed", "retry", "duplicate", "superseded", "held"]
    assert [s.value for s in ListingStatus] == ["pending", "acknowledged", "failed", "dead", "withdrawn"]
    assert [s.value for s in QuarantineStatus] == ["open", "resolved"]
    assert FileStatus.HELD == "held" and f"{FileStatus.HELD}" == "held" and str(ListingStatus.DEAD) == "dead"
    assert FileStatus("retry") is FileStatus.RETRY


def test_groups():
    assert FileStatus.RETRY not in TAKEN_FILE_STATUSES and FileStatus.FAILED not in TAKEN_FILE_STATUSES
    assert set(PROBLEM_FILE_STATUSES) == {"held", "failed", "retry"}
    assert set(SETTLED_LISTING_STATUSES) | set(PROBLEM_LISTING_STATUSES) == set(ListingStatus)
    assert set(SETTLED_LISTING_STATUSES) & set(PROBLEM_LISTING_STATUSES) == {ListingStatus.DEAD}


def test_an_enum_is_stored_as_its_string_and_found_by_it(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'state.db'}")
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(
            insert(ingested_files).values(
                dealer_id="leeds",
                source_path="/in/a.csv",
                file_name="a.csv",
                size_bytes=1,
                source_mtime=1.0,
                sha256="x",
                received_at=now,
                status=FileStatus.HELD,
                attempts=1,
            )
        )
        connection.execute(insert(listing_ledger).values(marketplace="google", dealer_id="leeds", item_key="S1", status=ListingStatus.PENDING, updated_at=now))
    with engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT status FROM ingested_files").scalar()
        assert type(stored) is str and stored == "held" == FileStatus.HELD
        assert connection.execute(select(ingested_files.c.id).where(ingested_files.c.status.in_(PROBLEM_FILE_STATUSES))).scalar() == 1
        assert connection.execute(select(listing_ledger.c.status).where(listing_ledger.c.status == "pending")).scalar() == ListingStatus.PENDING
