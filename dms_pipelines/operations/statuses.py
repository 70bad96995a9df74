"""The statuses kept in the operational database, as enums whose values are the strings stored (the database is unchanged)."""

import enum


class FileStatus(enum.StrEnum):
    """A received export's place in the manifest (`ingested_files.status`)."""

    LANDED = "landed"  # archived with its checksum, waiting to be parsed
    PROCESSED = "processed"  # parsed, validated and applied to the stock
    FAILED = "failed"  # could not be fetched or read; given up on (a permanent fault, or out of attempts)
    RETRY = "retry"  # fetching failed for a transient reason; tried again after a backoff
    DUPLICATE = "duplicate"  # a redelivery of a file already landed; not landed again
    SUPERSEDED = "superseded"  # a newer full export replaced it before (or instead of) being applied
    HELD = "held"  # stopped before it was applied (a file-level guard, or a held export before it); waits for release


# A file with one of these statuses was taken: landed once, never again (a redelivery of it is a duplicate).
TAKEN_FILE_STATUSES = (FileStatus.LANDED, FileStatus.PROCESSED, FileStatus.DUPLICATE, FileStatus.SUPERSEDED, FileStatus.HELD)
# A file with one of these statuses is a problem the operator must see.
PROBLEM_FILE_STATUSES = (FileStatus.HELD, FileStatus.FAILED, FileStatus.RETRY)


class ListingStatus(enum.StrEnum):
    """One item's delivery to one marketplace (`listing_ledger.status`)."""

    PENDING = "pending"  # sent (or about to be), not acknowledged yet: a crash in between shows here
    ACKNOWLEDGED = "acknowledged"  # the marketplace holds the content of `content_hash`
    FAILED = "failed"  # not acknowledged, or no longer shown: sent again by the next delivery
    DEAD = "dead"  # refused for good (a permanent fault): not resent until its content changes or it is replayed
    WITHDRAWN = "withdrawn"  # off the marketplace for good (or left there as sold): no longer ours to diff or touch


# Items settled (acknowledged, refused for good, or gone): nothing to send again until they change.
SETTLED_LISTING_STATUSES = (ListingStatus.ACKNOWLEDGED, ListingStatus.DEAD, ListingStatus.WITHDRAWN)
# Items that are a problem the operator must see: not acknowledged (yet), or refused.
PROBLEM_LISTING_STATUSES = (ListingStatus.PENDING, ListingStatus.FAILED, ListingStatus.DEAD)


class QuarantineStatus(enum.StrEnum):
    """A quarantined row's issue (`quarantine.status`)."""

    OPEN = "open"  # as of the dealer's last processed export
    RESOLVED = "resolved"  # a later export of the dealer was processed


class LeadFileStatus(enum.StrEnum):
    """A landed lead file's place in the lead manifest (`lead_files.status`)."""

    LANDED = "landed"  # in lead_landing/<dealer>/ with its checksum, waiting to be read
    PROCESSED = "processed"  # read: every lead in it is in `leads` or quarantined (a notification: its deal was fetched)
    FAILED = "failed"  # cannot be read as a lead file, or its deal could not be fetched for good: the operator must see it
    RETRY = "retry"  # its deal could not be fetched for a transient reason; tried again after a backoff
    DUPLICATE = "duplicate"  # an inbox file with the bytes of one already landed: not read again


class LeadDeliveryStatus(enum.StrEnum):
    """A lead's delivery to its dealer's CRM (`leads.delivery_status`), for its current revision."""

    PENDING = "pending"  # a new lead or a new revision, not delivered yet
    DELIVERED = "delivered"  # every configured CRM destination acknowledged this revision
    RETRY = "retry"  # a destination failed for a transient reason; tried again after a backoff
    DEAD_LETTER = "dead_letter"  # refused for good, or out of attempts: alerted, replayed by hand
    NO_CRM = "no_crm"  # the dealer has no CRM configured: kept, not delivered (the check says so)


# A lead in one of these states still owes its CRM a delivery: the operator must see it when it is not delivered in time.
UNDELIVERED_LEAD_STATUSES = (LeadDeliveryStatus.PENDING, LeadDeliveryStatus.RETRY, LeadDeliveryStatus.DEAD_LETTER, LeadDeliveryStatus.NO_CRM)
