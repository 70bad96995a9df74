"""Read one landed lead file (Meta CSV export, ADF e-mail or XML, Google/website/Auto Trader JSON) into raw lead records."""

import codecs
import csv
import email
import email.policy
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from dms_pipelines.customers.normalise import parse_flag
from dms_pipelines.leads.records import PAYLOAD_NAME, SOURCES, LeadFileError

MAX_LEAD_FILE_BYTES = 20 * 1024 * 1024
MAX_CONSENT_CELL = 10_000
KIND_SOURCE = {"meta_csv": "meta", "adf": "adf", "google": "google", "website": "website", "autotrader_deal": "autotrader", "autotrader_notification": "autotrader"}
NOT_A_LEAD_FILE = "not a lead file: expected .csv (Meta export), .eml, .xml/.adf (ADF) or .json"

# Meta CSV: the column names each canonical field may arrive under (lower case).
META_COLUMNS = {
    "full_name": ("full_name", "full name", "name"),
    "first_name": ("first_name", "first name"),
    "last_name": ("last_name", "last name", "surname"),
    "email": ("email", "e-mail", "email_address", "work_email"),
    "phone": ("phone_number", "phone", "mobile_number", "work_phone_number"),
    "postcode": ("post_code", "postcode", "zip_code", "postal_code", "zip"),
    "message": ("message", "comments", "comment", "enquiry"),
    "vehicle_registration": ("registration", "vehicle_registration", "reg"),
    "vehicle_vin": ("vin", "vehicle_vin"),
}
# Meta prefixes the ids and phones of a CSV export with their kind (l: lead, p: phone); the Graph API gives them bare.
META_PREFIX = re.compile(r"^[a-z]{1,3}:")
CONSENT_COLUMN = re.compile(r"consent|marketing|opt[ _-]?(?:in|out)|\bopt\b|optin|optout")
OPT_OUT = re.compile(r"opt[ _-]?out|unsubscribe")
DISCLAIMER_OBJECT = re.compile(r"\{[^{}]{0,2000}\}")
DISCLAIMER_KEY = re.compile(r"""["']?checkbox_key["']?\s*[:=]\s*["']?([^"',}]+)""")
DISCLAIMER_CHECKED = re.compile(r"""["']?is_checked["']?\s*[:=]\s*["']?([^"',}\s]+)""")

ADF_PROLOG_DANGER = re.compile(r"<!ENTITY|<!DOCTYPE[^>]*\[", re.IGNORECASE)
XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
ADF_START = re.compile(r"<\?adf|<\?xml|<adf[\s>]", re.IGNORECASE)
ADF_END = re.compile(r"</adf\s*>", re.IGNORECASE)
XML_BYTE_ORDER = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)
CONSENT_CHANNEL_WORDS = (("email", ("email", "e-mail", "e_mail")), ("sms", ("sms", "text")), ("phone", ("phone", "call", "telephone", "tel")), ("post", ("post", "mail", "letter")))
WEBSITE_CHANNELS = (("carsnip", "carsnip"), ("google", "google"), ("facebook", "meta"), ("instagram", "meta"), ("meta", "meta"), ("autotrader", "autotrader"), ("auto trader", "autotrader"))
PROVIDER_CHANNELS = (
    ("auto trader", "autotrader"),
    ("autotrader", "autotrader"),
    ("carsnip", "carsnip"),
    ("facebook", "meta"),
    ("meta", "meta"),
    ("google", "google"),
    ("website", "website"),
    ("web site", "website"),
)
DEAL_STATUS = {"complete": "completed", "completed": "completed", "cancelled": "cancelled", "canceled": "cancelled"}
UPDATE_EVENTS = ("DEAL_UPDATED", "COMPONENT_CHANGED")
GOOGLE_COLUMNS = {
    "FULL_NAME": "full_name",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "WORK_EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_PHONE": "phone",
    "POSTAL_CODE": "postcode",
}


@dataclass(frozen=True)
class RecordProblem:
    """One record of a file that could not be read at all; the message never holds a personal value."""

    record: str
    field: str
    rule: str
    message: str


@dataclass
class ParsedLeads:
    kind: str
    records: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[RecordProblem] = field(default_factory=list)


def parse_lead_file(path: Path, source: str | None = None) -> ParsedLeads:
    """The raw lead records of one landed file, chosen by its suffix then its content; `source`, when given, is the source
    the file landed as and must agree with what the file is. Raises LeadFileError (message starting with the file name) for
    a file that cannot be read as a lead file at all."""
    path = Path(path)
    name = path.name
    if source is not None and source not in SOURCES:
        raise LeadFileError(f"{name}: landed as unknown source {source!r}; one of {', '.join(SOURCES)}")
    suffix = path.suffix.lower()
    readers = {".csv": _parse_meta_csv, ".eml": _parse_eml, ".xml": _parse_adf_file, ".adf": _parse_adf_file, ".json": _parse_json}
    if suffix not in readers:
        raise LeadFileError(f"{name}: {NOT_A_LEAD_FILE}")
    parsed = readers[suffix](name, _read_bytes(path))
    expected = source or _source_in_name(name)
    actual = KIND_SOURCE[parsed.kind]
    if expected is not None and expected != actual:
        raise LeadFileError(f"{name}: landed as a {expected} lead but holds a {parsed.kind} payload")
    return parsed


def _source_in_name(name: str) -> str | None:
    found = PAYLOAD_NAME.match(name)
    return found.group("source") if found and found.group("source") in SOURCES else None


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_LEAD_FILE_BYTES + 1)
    except OSError as error:
        raise LeadFileError(f"{path.name}: cannot be read ({error.strerror or type(error).__name__})") from None
    if len(data) > MAX_LEAD_FILE_BYTES:
        raise LeadFileError(f"{path.name}: larger than {MAX_LEAD_FILE_BYTES // (1024 * 1024)} MiB; refused (no lead file is that big)")
    return data


def _present(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _put(record: dict, key: str, value) -> None:
    """Set `key` only when the source gave a value: a missing key means "not given"."""
    if _present(value):
        record[key] = value if isinstance(value, bool | str) else str(value)


# ---------------------------------------------------------------- Meta CSV


def _decode_csv(name: str, data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    elif data.startswith(codecs.BOM_UTF8):
        encodings = ("utf-8-sig",)
    elif len(data) > 1 and data[1:2] == b"\x00" and data[0:1] != b"\x00":
        encodings = ("utf-16-le",)  # UTF-16 LE without its byte-order mark
    else:
        encodings = ("utf-8", "cp1252")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            raise LeadFileError(f"{name}: holds NUL characters; not a Meta lead export")
        return text
    raise LeadFileError(f"{name}: is neither UTF-16 nor UTF-8 nor cp1252 text; not a Meta lead export")


def _parse_meta_csv(name: str, data: bytes) -> ParsedLeads:
    text = _decode_csv(name, data)
    header_line = text.split("\n", 1)[0]
    delimiter = "\t" if header_line.count("\t") > header_line.count(",") else ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as error:
        raise LeadFileError(f"{name}: not readable as CSV ({error})") from None
    if not rows:
        raise LeadFileError(f"{name}: empty; not a Meta lead export")
    header = [cell.strip().lstrip("\ufeff").lower() for cell in rows[0]]
    if "id" not in header or "created_time" not in header:
        raise LeadFileError(f"{name}: no id and created_time columns; not a Meta lead export")
    parsed = ParsedLeads("meta_csv")
    for number, row in enumerate(rows[1:], start=2):  # row 1 is the header, as a spreadsheet numbers them
        cells = {column: cell.strip() for column, cell in zip(header, row) if column}
        if not any(cells.values()):
            parsed.skipped["blank row"] = parsed.skipped.get("blank row", 0) + 1
            continue
        parsed.records.append(_meta_record(cells, f"row {number}"))
    return parsed


def _meta_record(cells: dict[str, str], label: str) -> dict:
    record = {"source": "meta", "channel": "meta", "lead_status": "new", "record": label}
    _put(record, "source_lead_id", META_PREFIX.sub("", cells.get("id", ""), count=1))
    _put(record, "enquired_at", cells.get("created_time"))
    for target, columns in META_COLUMNS.items():
        value = next((cells[column] for column in columns if _present(cells.get(column))), None)
        if target == "phone" and value is not None:
            value = META_PREFIX.sub("", value, count=1)
        _put(record, target, value)
    stock_id = cells.get("retailer_item_id")
    _put(record, "vehicle_stock_id", stock_id)
    _put(record, "vehicle_ref", stock_id)
    for column, value in cells.items():
        if not _present(value):
            continue
        if re.search(r"part[ _-]?ex|trade[ _-]?in", column):
            _flag_or_details(record, value)
        elif "finance" in column:
            _put(record, "finance_interest", value)
    wording = []
    for column, value in cells.items():
        if column == "custom_disclaimer_responses":
            for key, checked in _disclaimer_responses(value):
                _set_consent(record, key, checked, inverted=False)
                wording.append(key)
        elif CONSENT_COLUMN.search(column) and _present(value):
            _set_consent(record, column, value, inverted=OPT_OUT.search(column) is not None)
            wording.append(column)
    if wording:
        record["consent_wording"] = "; ".join(wording)
        _put(record, "consent_at", cells.get("created_time"))
    return record


def _flag_or_details(record: dict, value: str) -> None:
    try:
        flag = parse_flag(value)
    except ValueError:
        record["part_exchange_details"] = value
        return
    if flag is not None:
        record["part_exchange"] = flag


def _consent_channel(key: str) -> str | None:
    lowered = key.lower()
    return next((channel for channel, words in CONSENT_CHANNEL_WORDS if any(word in lowered for word in words)), None)


def _set_consent(record: dict, key: str, value, inverted: bool) -> None:
    """consent_<channel> from an answer, by the channel word in the key; an answer that is no yes/no is passed on for
    validation to refuse (never read as a yes); a key naming no channel consents to none."""
    channel = _consent_channel(key)
    if channel is None:
        return
    try:
        flag = parse_flag(value)
    except ValueError:
        record[f"consent_{channel}"] = str(value)
        return
    if flag is not None:
        record[f"consent_{channel}"] = (not flag) if inverted else flag


def _disclaimer_responses(value: str) -> list[tuple[str, object]]:
    """(checkbox_key, is_checked) pairs from Meta's custom_disclaimer_responses: JSON, or the Python-ish text exports hold."""
    if len(value) > MAX_CONSENT_CELL:
        return []
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        loaded = None
    if isinstance(loaded, dict):
        loaded = [loaded]
    if isinstance(loaded, list):
        return [(str(item["checkbox_key"]), item.get("is_checked")) for item in loaded if isinstance(item, dict) and _present(item.get("checkbox_key"))]
    pairs = []
    for item in DISCLAIMER_OBJECT.findall(value):
        key, checked = DISCLAIMER_KEY.search(item), DISCLAIMER_CHECKED.search(item)
        if key:
            pairs.append((key.group(1).strip(), checked.group(1) if checked else None))
    return pairs


# ---------------------------------------------------------------- ADF (XML and e-mail)


def _parse_eml(name: str, data: bytes) -> ParsedLeads:
    adf = _adf_in_email(name, data)
    if adf is None:
        raise LeadFileError(f"{name}: an e-mail with no ADF in it (no ADF body, .xml/.adf attachment or XML part)")
    return _parse_adf(name, adf)


def _adf_in_email(name: str, data: bytes) -> bytes | None:
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
        parts = [part for part in message.walk() if not part.is_multipart()]
        candidates: list[tuple[int, bytes]] = []
        for part in parts:
            filename = (part.get_filename() or "").lower()
            content_type = part.get_content_type()
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes) or not payload.strip():
                continue
            if filename.endswith((".xml", ".adf")) or content_type in ("application/xml", "text/xml"):
                candidates.append((0, payload))
            elif content_type == "text/plain" and re.search(rb"<\s*adf[\s>]", payload, re.IGNORECASE):
                candidates.append((1, _adf_from_text(part.get_content())))
    # the stdlib e-mail parser raises assorted exception types on malformed messages (headers, charsets, encodings)
    except Exception as error:
        raise LeadFileError(f"{name}: not readable as an e-mail ({type(error).__name__})") from None
    return min(candidates, key=lambda candidate: candidate[0])[1] if candidates else None


def _adf_from_text(text: str) -> bytes:
    """An ADF document from a plain-text e-mail body: from its prolog or root to its </adf>, re-encoded as UTF-8 (the body's
    charset is already decoded, so any encoding declaration is dropped)."""
    start = ADF_START.search(text)
    text = text[start.start() :] if start else text
    ends = list(ADF_END.finditer(text))
    text = text[: ends[-1].end()] if ends else text
    return XML_DECLARATION.sub("", text, count=1).lstrip().encode("utf-8")


def _parse_adf_file(name: str, data: bytes) -> ParsedLeads:
    return _parse_adf(name, data)


def _refuse_entities(name: str, data: bytes) -> None:
    """Refuse an internal DTD subset or entity declaration (XXE, billion laughs), in whatever encoding; a bare
    <!DOCTYPE adf SYSTEM "adf.dtd"> is allowed (real senders write it) and never loaded."""
    if data.startswith(b"\x4c\x6f\xa7\x94"):
        raise LeadFileError(f"{name}: EBCDIC-encoded XML; refused")
    encoding = next((encoding for mark, encoding in XML_BYTE_ORDER if data.startswith(mark)), "latin-1")
    text = data.decode(encoding, errors="replace")
    if ADF_PROLOG_DANGER.search(text):
        raise LeadFileError(f"{name}: declares entities or an internal DTD subset; refused (ADF never needs them, XML attacks do)")


def _parse_adf(name: str, data: bytes) -> ParsedLeads:
    _refuse_entities(name, data)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        where = f" at line {error.lineno}" if error.lineno else ""
        raise LeadFileError(f"{name}: not well-formed XML{where}") from None
    except (etree.LxmlError, ValueError):
        raise LeadFileError(f"{name}: not readable as XML") from None
    if root is None or _local(root) != "adf":
        raise LeadFileError(f"{name}: the root element is not <adf>; not an ADF lead")
    prospects = _children(root, "prospect")
    if not prospects:
        raise LeadFileError(f"{name}: an <adf> with no <prospect>")
    parsed = ParsedLeads("adf")
    for number, prospect in enumerate(prospects, start=1):
        label = f"prospect {number}"
        try:
            record = _adf_record(prospect, label)
        except (ValueError, TypeError, AttributeError) as error:  # one unreadable prospect never takes the others down
            parsed.problems.append(RecordProblem(label, "prospect", "unreadable_prospect", f"{name}: {label}: cannot be read ({type(error).__name__})"))
            continue
        if isinstance(record, RecordProblem):
            parsed.problems.append(RecordProblem(record.record, record.field, record.rule, f"{name}: {record.message}"))
        else:
            parsed.records.append(record)
    return parsed


def _local(element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return etree.QName(tag).localname.lower() if tag.startswith("{") else tag.lower()


def _children(element, name: str) -> list:
    return [child for child in element if _local(child) == name]


def _child(element, *names: str):
    for name in names:
        if element is None:
            return None
        element = next(iter(_children(element, name)), None)
    return element


def _text(element) -> str | None:
    if element is None:
        return None
    text = " ".join(piece.strip() for piece in element.itertext() if piece.strip())
    return text or None


def _attribute(element, name: str) -> str | None:
    if element is None:
        return None
    for key, value in element.attrib.items():
        if etree.QName(key).localname.lower() == name and value.strip():
            return value.strip()
    return None


def _adf_record(prospect, label: str) -> dict | RecordProblem:
    customer = _child(prospect, "customer")
    contact = _child(customer, "contact")
    if contact is None:
        return RecordProblem(label, "prospect/customer", "no_customer_contact", f"{label}: no <customer><contact>; nobody to answer")
    record: dict = {"source": "adf", "lead_status": "new", "record": label}
    vehicles = _children(prospect, "vehicle")
    wanted = next((vehicle for vehicle in vehicles if (_attribute(vehicle, "interest") or "buy").lower() not in ("trade-in", "sell")), None)
    traded = next((vehicle for vehicle in vehicles if (_attribute(vehicle, "interest") or "").lower() in ("trade-in", "sell")), None)

    provider_name = _text(_child(prospect, "provider", "name"))
    request_date = _text(_child(prospect, "requestdate"))
    email_address = _text(_child(contact, "email"))
    phones = _children(contact, "phone")
    preferred = [phone for phone in phones if (_attribute(phone, "type") or "voice").lower() in ("voice", "cellphone")] or phones
    phone = _text(preferred[0]) if preferred else None
    vehicle_parts = {part: _text(_child(wanted, part)) for part in ("year", "make", "model", "vin", "stock")}

    identifier = next(iter(_children(prospect, "id")), None)
    if _text(identifier):
        sender = _attribute(identifier, "source")
        record["source_lead_id"] = f"{sender}:{_text(identifier)}" if sender else _text(identifier)
    else:
        pieces = [provider_name, request_date, email_address, phone, vehicle_parts["vin"], vehicle_parts["stock"], vehicle_parts["make"], vehicle_parts["model"]]
        digest = hashlib.sha256("\x1f".join(piece or "" for piece in pieces).encode("utf-8")).hexdigest()
        record["source_lead_id"] = f"adf-{digest[:16]}"
    _put(record, "enquired_at", request_date)
    record["channel"] = _provider_channel(provider_name)

    _put(record, "vehicle_stock_id", vehicle_parts["stock"])
    _put(record, "vehicle_vin", vehicle_parts["vin"])
    described = " ".join(vehicle_parts[part] for part in ("year", "make", "model") if vehicle_parts[part])
    _put(record, "vehicle_ref", vehicle_parts["stock"] or vehicle_parts["vin"] or described)
    if wanted is not None and _child(wanted, "finance") is not None:
        record["finance_interest"] = True
    if traded is not None:
        record["part_exchange"] = True
        _put(record, "part_exchange_details", " ".join(text for text in (_text(_child(traded, part)) for part in ("year", "make", "model", "odometer")) if text))

    for name in _children(contact, "name"):
        part = (_attribute(name, "part") or "full").lower()
        target = {"first": "first_name", "last": "last_name", "surname": "last_name", "full": "full_name"}.get(part)
        if target and target not in record:
            _put(record, target, _text(name))
    _put(record, "email", email_address)
    _put(record, "phone", phone)
    _put(record, "postcode", _text(_child(contact, "address", "postalcode")))
    _put(record, "message", _text(_child(customer, "comments")))
    return record


def _provider_channel(provider_name: str | None) -> str:
    lowered = (provider_name or "").lower()
    return next((channel for word, channel in PROVIDER_CHANNELS if word in lowered), "email")


# ---------------------------------------------------------------- JSON payloads


def _parse_json(name: str, data: bytes) -> ParsedLeads:
    try:
        payload = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise LeadFileError(f"{name}: not UTF-8 text; not a JSON lead payload") from None
    except RecursionError:
        raise LeadFileError(f"{name}: JSON nested too deeply; refused") from None
    except ValueError as error:
        where = f" at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else ""
        raise LeadFileError(f"{name}: invalid JSON{where}") from None
    if not isinstance(payload, dict):
        raise LeadFileError(f"{name}: a JSON {type(payload).__name__.replace('dict', 'object').replace('list', 'array')}, not a lead payload (an object)")
    if isinstance(payload.get("deal"), dict):
        return ParsedLeads("autotrader_deal", [_autotrader_record(payload)])
    if "lead_id" in payload and "user_column_data" in payload:
        return _google_leads(name, payload)
    if "enquiry_id" in payload:
        return ParsedLeads("website", [_website_record(payload)])
    if payload.get("type") == "DEAL_UPDATE" or (isinstance(payload.get("data"), dict) and "dealId" in payload["data"]):
        return ParsedLeads("autotrader_notification")
    raise LeadFileError(f"{name}: a JSON object of no known lead shape (Google lead form, website enquiry, Auto Trader deal or notification)")


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _google_leads(name: str, payload: dict) -> ParsedLeads:
    parsed = ParsedLeads("google")
    if payload.get("is_test") is True or str(payload.get("is_test")).lower() == "true":
        parsed.skipped["google test lead"] = 1
        return parsed
    columns = payload.get("user_column_data")
    if not isinstance(columns, list):
        parsed.problems.append(RecordProblem("payload", "user_column_data", "not_a_list", f"{name}: payload: user_column_data is not a list of answers"))
        return parsed
    record: dict = {"source": "google", "channel": "google", "lead_status": "new", "record": "payload"}
    _put(record, "source_lead_id", payload.get("lead_id"))
    _put(record, "enquired_at", payload.get("submit_time") or payload.get("lead_submit_time"))
    for column in columns:
        if not isinstance(column, dict):
            continue
        column_id = str(column.get("column_id") or "").upper()
        column_name = str(column.get("column_name") or "").upper()
        value = column.get("string_value")
        target = GOOGLE_COLUMNS.get(column_id)
        if target and target not in record:
            _put(record, target, value)
        elif any(word in column_id or word in column_name for word in ("STOCK", "VEHICLE")) and "vehicle_stock_id" not in record:
            _put(record, "vehicle_stock_id", value)
            _put(record, "vehicle_ref", value)
    parsed.records.append(record)
    return parsed


def _website_record(payload: dict) -> dict:
    record: dict = {"source": "website", "lead_status": "new", "record": "payload"}
    utm_source = str(payload.get("utm_source") or "").lower()
    record["channel"] = next((channel for word, channel in WEBSITE_CHANNELS if word in utm_source), "website")
    _put(record, "source_lead_id", payload.get("enquiry_id"))
    _put(record, "enquired_at", payload.get("submitted_at"))
    _put(record, "vehicle_stock_id", payload.get("stock_id"))
    _put(record, "vehicle_registration", payload.get("registration"))
    _put(record, "vehicle_ref", payload.get("stock_id") or payload.get("registration"))
    for key in ("first_name", "last_name", "email", "phone", "postcode", "message", "part_exchange_details"):
        _put(record, key, payload.get(key))
    _put(record, "part_exchange", payload.get("part_exchange"))
    _put(record, "finance_interest", payload.get("finance"))
    consent = _mapping(payload.get("consent"))
    for channel in ("email", "phone", "sms", "post"):
        _put(record, f"consent_{channel}", consent.get(channel))
    _put(record, "consent_wording", consent.get("wording"))
    _put(record, "consent_at", consent.get("at"))
    return record


def _autotrader_record(payload: dict) -> dict:
    deal = payload["deal"]
    notification = _mapping(payload.get("notification"))
    event = _mapping(notification.get("data")).get("event") or notification.get("event")
    status = DEAL_STATUS.get(str(deal.get("advertiserDealStatus") or "").lower())
    record: dict = {"source": "autotrader", "channel": "autotrader", "record": "payload"}
    record["lead_status"] = status or ("updated" if event in UPDATE_EVENTS else "new")
    _put(record, "source_lead_id", deal.get("dealId"))
    _put(record, "enquired_at", deal.get("created"))
    stock = _mapping(deal.get("stock"))
    _put(record, "vehicle_advert_id", stock.get("stockId"))
    _put(record, "vehicle_stock_id", stock.get("externalStockReference"))
    _put(record, "vehicle_registration", stock.get("registration"))
    _put(record, "vehicle_vin", stock.get("vin"))
    reference = next((stock.get(key) for key in ("stockId", "externalStockReference", "registration", "vin") if _present(stock.get(key))), None)
    _put(record, "vehicle_ref", reference)
    consumer = _mapping(deal.get("consumer"))
    _put(record, "first_name", consumer.get("firstName"))
    _put(record, "last_name", consumer.get("lastName"))
    _put(record, "email", consumer.get("email"))
    _put(record, "phone", consumer.get("phone"))
    _put(record, "postcode", consumer.get("postcode"))
    _put(record, "message", _mapping(deal.get("messages")).get("lastMessage"))
    preferences = _mapping(consumer.get("marketingPreferences"))
    for channel in ("email", "phone", "sms", "post"):
        _put(record, f"consent_{channel}", preferences.get(channel))
    _put(record, "consent_wording", preferences.get("wording"))
    _put(record, "consent_at", preferences.get("time"))
    components = _mapping(deal.get("components"))
    part_exchange = components.get("partExchange")
    if isinstance(part_exchange, dict):
        record["part_exchange"] = True
        vehicle = _mapping(part_exchange.get("vehicle"))
        _put(record, "part_exchange_details", " ".join(str(vehicle[key]) for key in ("registration", "make", "model", "mileage") if _present(vehicle.get(key))))
    elif "partExchange" in components:
        record["part_exchange"] = False
    if isinstance(components.get("financeApplication"), dict):
        record["finance_interest"] = True
    return record
