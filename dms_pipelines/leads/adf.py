"""Write one canonical lead as a strict ADF 1.0 document (built with lxml, valid against the public DTD) and validate ADF documents safely."""

import hashlib
import math
import re
from dataclasses import dataclass, field
from importlib import resources

import pandas as pd
import phonenumbers
from lxml import etree

from dms_pipelines.config import Dealer

ADF_DTD_NAME = "adf_1_0.dtd"
XML_HEADER = b'<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n'
SERVICE = "dms-pipelines"
LINK_STATUSES = ("available", "reserved", "sold", "unlinked")
MAX_ALTERNATIVES = 3
# XML 1.0 forbids C0 controls but tab/newline/carriage return, lone surrogates and U+FFFE/U+FFFF; C1 controls and DEL are allowed but meaningless here.
FORBIDDEN_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
DEAL_UPDATES = {
    "updated": "Deal update: the buyer's deal changed since it was last sent.",
    "cancelled": "Deal update: the buyer's deal was cancelled.",
    "completed": "Deal update: the buyer's deal was completed.",
}
LINK_COMMENTS = {
    "sold": "SOLD: this vehicle is no longer available",
    "reserved": "RESERVED: this vehicle is reserved for another buyer",
}
ALTERNATIVE_COMMENT = "Alternative offered: similar available vehicle"

MAX_EARLIER_ENQUIRIES = 10  # the newest ones, in the comments


@dataclass(frozen=True)
class EarlierEnquiry:
    """One earlier enquiry of the same customer, as the salesperson reads it: when, where and about which car."""

    enquired_at: object
    channel: str | None
    vehicle: str | None  # e.g. "Ford Fiesta (S1001)", or the reference the buyer gave


@dataclass(frozen=True)
class CustomerMatch:
    """Who the lead is, as identity reconciliation found: the DMS customer (if any), the cluster and what is known of them."""

    cluster_id: str
    customer_number: str | None = None  # the dealer's DMS customer number, when the lead joined a DMS customer
    customer_source: str = "DMS"  # the ADF customer/id source attribute for the customer number
    returning: bool = False  # the customer is in the DMS or has enquired before
    earlier_enquiries: tuple[EarlierEnquiry, ...] = field(default_factory=tuple)
    owned_vehicles: tuple[str, ...] = field(default_factory=tuple)  # registrations or VINs the DMS records as theirs
    under_review: bool = False  # a possible match waits for an operator: not stated as the customer yet


_dtd: etree.DTD | None = None


def adf_dtd() -> etree.DTD:
    """The packaged ADF 1.0 DTD, loaded once."""
    global _dtd
    if _dtd is None:
        with resources.files("dms_pipelines.leads").joinpath(ADF_DTD_NAME).open("rb") as handle:
            _dtd = etree.DTD(handle)
    return _dtd


# ------------------------------------------------------------------------------------------------------------- values


def is_missing(value: object) -> bool:
    """None, NaN, pd.NA and pd.NaT are all "not given"."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def clean_text(value: object) -> str | None:
    """The value as text XML 1.0 can carry (forbidden characters removed, ends trimmed), or None when nothing is left."""
    if is_missing(value):
        return None
    text = FORBIDDEN_IN_XML.sub("", str(value)).strip()
    return text or None


def _flag(value: object) -> bool | None:
    if is_missing(value):
        return None
    if isinstance(value, str):
        lowered = value.strip().lower()
        return True if lowered in ("true", "yes", "y", "1") else False if lowered in ("false", "no", "n", "0") else None
    return bool(value)


def _number(value: object) -> float | None:
    if is_missing(value) or isinstance(value, bool):
        return None
    try:
        number = float(str(value).replace(",", "").replace("£", "").replace("€", "").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _whole(value: object) -> str | None:
    number = _number(value)
    return None if number is None else str(int(round(number)))


def _money(value: object) -> str | None:
    number = _number(value)
    if number is None:
        return None
    return str(int(number)) if number == int(number) else f"{number:.2f}"


def iso_timestamp(value: object) -> str | None:
    """ISO 8601 in UTC (a naive time is taken as UTC), or None when missing or unreadable."""
    if is_missing(value):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if stamp is pd.NaT:
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime().isoformat(timespec="seconds") if stamp.microsecond == 0 else stamp.isoformat()


def e164(number: str | None, region: str) -> str | None:
    """A phone number as E.164 when phonenumbers can read it, else the text as given."""
    if number is None:
        return None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_possible_number(parsed) else number


# ----------------------------------------------------------------------------------------------------------- building


def _add(parent: etree._Element, tag: str, text: object = None, **attributes: str | None) -> etree._Element:
    """A child element; text and attribute values pass through clean_text (lxml escapes them), missing attributes are left out."""
    element = etree.SubElement(parent, tag)
    for name, value in attributes.items():
        cleaned = clean_text(value)
        if cleaned is not None:
            element.set(name, cleaned)
    cleaned = clean_text(text)
    if cleaned is not None:
        element.text = cleaned
    return element


def _add_if(parent: etree._Element, tag: str, text: object, **attributes: str | None) -> None:
    if clean_text(text) is not None:
        _add(parent, tag, text, **attributes)


def _vehicle_status(condition: object) -> str:
    # ADF knows new and used only: a demonstrator is sold as used; a car we could not identify is most likely used stock.
    return "new" if clean_text(condition) == "new" else "used"


def _stock_vehicle(prospect: etree._Element, vehicle: dict, dealer: Dealer, comments: list[str]) -> None:
    element = _add(prospect, "vehicle", interest="buy", status=_vehicle_status(vehicle.get("condition")))
    _add(element, "year", _whole(vehicle.get("year")))
    _add(element, "make", vehicle.get("make"))
    _add(element, "model", vehicle.get("model"))
    _add_if(element, "vin", vehicle.get("vin"))
    _add_if(element, "stock", vehicle.get("stock_id"))
    _add_if(element, "trim", clean_text(vehicle.get("derivative")) or vehicle.get("trim"))
    _add_if(element, "doors", _whole(vehicle.get("doors")))
    _add_if(element, "bodystyle", vehicle.get("body_type"))
    _add_if(element, "transmission", vehicle.get("transmission"))
    _add_if(element, "odometer", _whole(vehicle.get("mileage")), units="mi" if dealer.market.distance_unit == "miles" else "km")
    _add_if(element, "price", _money(vehicle.get("price")), type="asking", currency=dealer.market.currency)
    # No <colorcombination>: the DTD's content model for it is not deterministic, so libxml2 refuses any document holding one.
    details = [f"{label} {text}" for label, key in (("Registration", "registration"), ("Fuel", "fuel_type"), ("Colour", "colour")) if (text := clean_text(vehicle.get(key)))]
    _add_if(element, "comments", ". ".join(comments + (["; ".join(details)] if details else [])))


def _unlinked_vehicle(prospect: etree._Element, lead: dict) -> None:
    """The car the buyer asked about as the lead names it; the DTD needs year, make and model, so they may be empty."""
    element = _add(prospect, "vehicle", interest="buy", status="used")
    for tag in ("year", "make", "model"):
        _add(element, tag)
    _add_if(element, "vin", lead.get("vehicle_vin"))
    _add_if(element, "stock", lead.get("vehicle_stock_id"))
    references = [f"{label} {text}" for label, key in (("reference", "vehicle_ref"), ("advert", "vehicle_advert_id"), ("registration", "vehicle_registration")) if (text := clean_text(lead.get(key)))]
    _add(element, "comments", "Not matched to a vehicle in stock" + (": the enquiry names " + ", ".join(references) if references else ""))


def _consent_line(lead: dict) -> str:
    answers = {True: "yes", False: "no", None: "not asked"}
    channels = ", ".join(f"{channel} {answers[_flag(lead.get(f'consent_{channel}'))]}" for channel in ("email", "phone", "sms", "post"))
    wording, when = clean_text(lead.get("consent_wording")), iso_timestamp(lead.get("consent_at"))
    record = " ".join(part for part in ((f'"{wording}"' if wording else None), (f"at {when}" if when else None)) if part)
    return f"Marketing consent: {channels}" + (f" ({record})" if record else "")


def _match_lines(match: CustomerMatch | None) -> list[str]:
    if match is None:
        return []
    lines = []
    if match.returning:
        known = f"DMS customer {match.customer_number}" if match.customer_number else "enquired before"
        lines.append(f"RETURNING CUSTOMER: {known}.")
    elif match.under_review:
        lines.append("Possible returning customer: a match is waiting for review.")
    if match.owned_vehicles:
        lines.append(f"Vehicles owned: {', '.join(match.owned_vehicles)}")
    earlier = sorted(match.earlier_enquiries, key=lambda e: iso_timestamp(e.enquired_at) or "", reverse=True)
    if earlier:
        lines.append(f"Earlier enquiries ({len(earlier)}):")
        for enquiry in earlier[:MAX_EARLIER_ENQUIRIES]:
            when = (iso_timestamp(enquiry.enquired_at) or "date unknown")[:10]
            parts = [when, f"via {clean_text(enquiry.channel)}" if clean_text(enquiry.channel) else None, clean_text(enquiry.vehicle)]
            lines.append("- " + " ".join(part for part in parts if part))
        if len(earlier) > MAX_EARLIER_ENQUIRIES:
            lines.append(f"- and {len(earlier) - MAX_EARLIER_ENQUIRIES} older")
    return lines


def _customer_comments(lead: dict, match: CustomerMatch | None = None) -> str:
    lines = _match_lines(match)
    update = DEAL_UPDATES.get(clean_text(lead.get("lead_status")) or "")
    if update:
        lines.append(update)
    channel = clean_text(lead.get("channel"))
    if channel:
        lines.append(f"Enquired via {channel}.")
    message = clean_text(lead.get("message"))
    if message:
        lines.append(f"Message: {message}")
    part_exchange, details = _flag(lead.get("part_exchange")), clean_text(lead.get("part_exchange_details"))
    if part_exchange is not None or details:
        lines.append(f"Part exchange: {'yes' if part_exchange or (part_exchange is None and details) else 'no'}" + (f" ({details})" if details else ""))
    finance = _flag(lead.get("finance_interest"))
    if finance is not None:
        lines.append(f"Finance: {'interested' if finance else 'not interested'}")
    lines.append(_consent_line(lead))
    return "\n".join(lines)


def _customer(prospect: etree._Element, lead: dict, match: CustomerMatch | None = None) -> None:
    customer = _add(prospect, "customer")
    contact = _add(customer, "contact")
    first, last, full = (clean_text(lead.get(key)) for key in ("first_name", "last_name", "full_name"))
    if first or last:
        _add_if(contact, "name", first, part="first")
        _add_if(contact, "name", last, part="last")
    else:
        _add(contact, "name", full, part="full")  # the DTD needs a name: an empty one when the lead has none
    email, phone = clean_text(lead.get("email")), clean_text(lead.get("phone"))
    _add_if(contact, "email", email)
    _add_if(contact, "phone", phone, type="voice")
    if not email and not phone:
        _add(contact, "email")  # the DTD needs an e-mail or a phone
    postcode = clean_text(lead.get("postcode"))
    if postcode:
        address = _add(contact, "address")
        _add(address, "street")  # the DTD needs a street; leads carry a postcode only
        _add(address, "postalcode", postcode)
    if match is not None and match.customer_number and not match.under_review:
        _add(customer, "id", match.customer_number, sequence="1", source=match.customer_source)
    if match is not None:
        _add(customer, "id", match.cluster_id, sequence="2" if match.customer_number and not match.under_review else "1", source=SERVICE)
    _add(customer, "comments", _customer_comments(lead, match))


def _vendor(prospect: etree._Element, dealer: Dealer) -> None:
    vendor = _add(prospect, "vendor")
    _add(vendor, "vendorname", dealer.name)
    _add_if(vendor, "url", dealer.website)
    contact = _add(vendor, "contact")
    _add(contact, "name", dealer.name, part="full", type="business")
    _add(contact, "phone", e164(clean_text(dealer.phone), dealer.address.country) or "", type="voice")
    address = _add(contact, "address")
    _add(address, "street", dealer.address.street, line="1")
    _add_if(address, "city", dealer.address.city)
    _add_if(address, "postalcode", dealer.address.postcode)
    _add_if(address, "country", dealer.address.country)


def render_adf(lead: dict, dealer: Dealer, vehicle: dict | None, link_status: str, alternatives: list[dict], provider_name: str, match: CustomerMatch | None = None) -> bytes:
    """One lead as an ADF 1.0 document (UTF-8 bytes) that validates against the DTD whatever the lead holds.

    `vehicle` is the stock row the lead was linked to (None when it could not be); `link_status` is available, reserved,
    sold or unlinked (any other stock status is written as available); `alternatives` (at most three are written) are
    similar available cars, offered only when the linked car is sold or reserved; `match` is who the customer is (their
    DMS customer number as customer/id, earlier enquiries and owned vehicles in the comments)."""
    if vehicle is None:
        link_status = "unlinked"
    elif link_status not in LINK_STATUSES or link_status == "unlinked":
        link_status = "available"
    lead_status = clean_text(lead.get("lead_status")) or "new"
    root = etree.Element("adf")
    prospect = _add(root, "prospect", status="new" if lead_status == "new" else "resend")
    _add(prospect, "id", lead.get("source_lead_id"), sequence="1", source=lead.get("source"))
    _add(prospect, "requestdate", iso_timestamp(lead.get("enquired_at")) or iso_timestamp(lead.get("received_at")))
    offered = list(alternatives or [])[:MAX_ALTERNATIVES] if link_status in LINK_COMMENTS else []
    if vehicle is None:
        _unlinked_vehicle(prospect, lead)
    else:
        notes = []
        if link_status in LINK_COMMENTS:
            notes.append(LINK_COMMENTS[link_status] + ("; similar available vehicles are listed below" if offered else "; no similar available vehicle was found"))
        _stock_vehicle(prospect, vehicle, dealer, notes)
    for alternative in offered:
        _stock_vehicle(prospect, alternative, dealer, [ALTERNATIVE_COMMENT])
    _customer(prospect, lead, match)
    _vendor(prospect, dealer)
    provider = _add(prospect, "provider")
    _add(provider, "name", provider_name, part="full")
    _add(provider, "service", SERVICE)
    return XML_HEADER + etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)


# --------------------------------------------------------------------------------------------------------- validating


def validate_adf(document: bytes) -> list[str]:
    """[] when `document` is a well-formed ADF document valid against the ADF 1.0 DTD; otherwise its problems ("line N: message").

    The document is parsed without resolving entities, loading DTDs or touching the network: an entity it declares is
    never expanded, whatever it points at."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=False)
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as error:
        return [f"line {error.lineno}: {error.msg}"]
    problems = []
    if root.tag != "adf":
        problems.append(f"line {root.sourceline}: the root element is <{root.tag}>, not <adf>")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        problems.append("the document uses entity references, which ADF does not allow (refused, not expanded)")
    dtd = adf_dtd()
    if not dtd.validate(root):
        problems += [f"line {error.line}: {error.message}" for error in dtd.error_log.filter_from_errors()]
    return problems


def adf_file_name(lead: dict, revision: int) -> str:
    """The CRM drop name of a lead's `revision`th ADF document: `{dealer}-{source}-{lead id}-{digest}-r{revision}.xml`.

    Only letters, digits, '-' and '_' are kept of each part (the lead id is also cut to 40), and the digest of the exact
    (dealer, source, lead id) keeps two ids that read the same after that apart; the same lead and revision always give the same name."""
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise ValueError(f"revision must be a whole number from 0, got {revision!r}")
    dealer, source, lead_id = (clean_text(lead.get(key)) or "" for key in ("dealer_id", "source", "source_lead_id"))
    digest = hashlib.sha256("\x00".join((dealer, source, lead_id)).encode("utf-8", "surrogatepass")).hexdigest()[:10]

    def safe(text: str, limit: int) -> str:
        return UNSAFE_IN_FILE_NAME.sub("_", text).strip("_")[:limit] or "unknown"

    return f"{safe(dealer, 63)}-{safe(source, 20)}-{safe(lead_id, 40)}-{digest}-r{revision}.xml"
