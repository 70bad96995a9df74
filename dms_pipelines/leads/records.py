"""The canonical lead's fields, the lead sources, and the one way a raw lead payload is written into the lead landing area."""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dms_pipelines.kernels.atomic import write_bytes_atomically

SOURCES = ("autotrader", "meta", "google", "website", "adf")
# The channel is where the buyer enquired: a website enquiry with utm_source=carsnip is a Carsnip lead.
CHANNELS = ("autotrader", "meta", "google", "website", "carsnip", "email")
CONSENT_CHANNELS = ("email", "phone", "sms", "post")
PERSONAL_FIELDS = ("first_name", "last_name", "full_name", "email", "phone", "postcode", "message", "part_exchange_details")
PAYLOAD_NAME = re.compile(r"^(?P<source>[a-z]+)-(?P<stamp>\d{8}T\d{12})-(?P<digest>[0-9a-f]{12})\.json$")


@dataclass(frozen=True)
class LeadField:
    name: str
    dtype: str  # "string", "bool", "datetime"
    description: str
    personal: bool = False


FIELDS: tuple[LeadField, ...] = (
    LeadField("source", "string", "How the lead reached us: autotrader (Deal Sync), meta, google (lead form), website, adf (an ADF e-mail or file)."),
    LeadField("source_lead_id", "string", "The sender's own id of the lead (deal id, leadgen id, lead_id, enquiry id, ADF <id>): the idempotency key with source."),
    LeadField("dealer_id", "string", "The rooftop the lead is for."),
    LeadField("received_at", "datetime", "When the raw payload landed (UTC)."),
    LeadField("enquired_at", "datetime", "When the buyer enquired, as the sender says (UTC)."),
    LeadField("channel", "string", "Where the buyer enquired (autotrader, meta, google, website, carsnip, email)."),
    LeadField("lead_status", "string", "new, updated, cancelled or completed (an Auto Trader deal's state; others are new)."),
    LeadField("vehicle_ref", "string", "The vehicle reference exactly as the sender gave it."),
    LeadField("vehicle_advert_id", "string", "Marketplace advert id, when given."),
    LeadField("vehicle_stock_id", "string", "DMS stock id, when given (Meta retailer_item_id, website stock id)."),
    LeadField("vehicle_vin", "string", "VIN, when given."),
    LeadField("vehicle_registration", "string", "Registration, when given (upper case, no spaces)."),
    LeadField("first_name", "string", "Buyer's first name.", personal=True),
    LeadField("last_name", "string", "Buyer's last name.", personal=True),
    LeadField("full_name", "string", "Buyer's name as given when not split.", personal=True),
    LeadField("email", "string", "E-mail, normalised (email-validator, no DNS).", personal=True),
    LeadField("phone", "string", "Phone, E.164 (phonenumbers, region GB).", personal=True),
    LeadField("postcode", "string", "UK postcode, upper case with one space.", personal=True),
    LeadField("message", "string", "The buyer's message.", personal=True),
    LeadField("part_exchange", "bool", "The buyer has a car to part-exchange."),
    LeadField("part_exchange_details", "string", "The part-exchange vehicle as described.", personal=True),
    LeadField("finance_interest", "bool", "The buyer asked about finance."),
    LeadField("consent_email", "bool", "Marketing consent by e-mail: True yes, False no, empty not asked. Never inferred."),
    LeadField("consent_phone", "bool", "Marketing consent by phone."),
    LeadField("consent_sms", "bool", "Marketing consent by SMS."),
    LeadField("consent_post", "bool", "Marketing consent by post."),
    LeadField("consent_wording", "string", "The wording the buyer agreed to (or declined), as shown."),
    LeadField("consent_at", "datetime", "When consent was given or declined (UTC)."),
    LeadField("record", "string", "Where in the raw file the lead came from (row number, record index), for errors."),
)
FIELD_NAMES = tuple(field.name for field in FIELDS)


class LeadFileError(ValueError):
    """A whole lead file cannot be read (not a lead file, unsafe XML, too large, not the format its name says): the message names the file."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def payload_name(source: str, body: bytes, received_at: datetime | None = None) -> str:
    """The landing name of a webhook payload: its source, when it arrived (to the microsecond) and its sha256's start,
    so two deliveries of the same bytes are two files (a replay is caught by the lead's idempotency key, not by bytes)."""
    if source not in SOURCES:
        raise ValueError(f"unknown lead source {source!r}; one of {', '.join(SOURCES)}")
    stamp = (received_at or utc_now()).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{source}-{stamp}-{hashlib.sha256(body).hexdigest()[:12]}.json"


def land_payload(folder: Path, source: str, body: bytes, received_at: datetime | None = None) -> Path:
    """Write a raw webhook payload into the dealer's lead landing folder, durably (fsynced file and folder) before returning:
    a 2xx may only be sent once this has returned."""
    path = Path(folder) / payload_name(source, body, received_at)
    write_bytes_atomically(path, body)
    return path
