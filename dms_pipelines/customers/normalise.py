"""Normalise one contact value at a time, for leads and DMS customers: e-mail, phone (E.164), UK postcode, names and free text, yes/no flags, timestamps (UTC)."""

import re
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import phonenumbers
from email_validator import EmailNotValidError, validate_email

DEFAULT_COUNTRY = "GB"
ZONE_BY_COUNTRY = {"GB": "Europe/London", "IE": "Europe/Dublin"}
TRUE_WORDS = frozenset({"y", "yes", "true", "1", "checked", "on", "t"})
FALSE_WORDS = frozenset({"n", "no", "false", "0", "unchecked", "off", "f"})
# Ofcom's numbers reserved for drama (never allocated to anyone): phonenumbers calls them invalid, yet samples, demos and
# test leads use them; they are accepted so a test lead reads as its sender meant (national significant numbers).
OFCOM_DRAMA_NUMBERS = re.compile(r"^(?:7700900\d{3}|1632960\d{3}|2079460\d{3}|1(?:1[3-8]|21|31|41|51|61)4960\d{3}|1914980\d{3}|8081570\d{3}|9098790\d{3}|3069990\d{3}|2920180\d{3}|2896496\d{3})$")
# BS 7666: outward code (area, district) then inward code (sector, unit); the letters each position may hold are restricted.
POSTCODE = re.compile(
    r"^(?:"
    r"(?P<out>[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])"
    r"(?P<in>[0-9][ABD-HJLNP-UW-Z]{2})"
    r"|(?P<gir>GIR0AA)"
    r")$"
)
BFPO = re.compile(r"^BFPO ?(?P<number>[0-9]{1,4})$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
LINE_BREAKS = re.compile(r"\r\n?")
WHITESPACE = re.compile(r"\s+")
NOT_LETTER_OR_DIGIT = re.compile(r"[^A-Z0-9]")
UK_DATE_TIME = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S %z", "%a, %d %b %Y %H:%M:%S %z")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value)


def remove_control_characters(value, keep_line_breaks: bool = False) -> str | None:
    """The text without control characters (line breaks become \\n, or spaces unless `keep_line_breaks`); None stays None."""
    text = _text(value)
    if text is None:
        return None
    text = LINE_BREAKS.sub("\n", text)
    if keep_line_breaks:
        return CONTROL_CHARACTERS.sub("", text.replace("\t", " "))
    return CONTROL_CHARACTERS.sub("", text.replace("\n", " ").replace("\t", " "))


def clean_text(value, keep_line_breaks: bool = False) -> str | None:
    """Control characters removed, surrounding whitespace stripped; None for nothing left."""
    text = remove_control_characters(value, keep_line_breaks)
    if text is None:
        return None
    return text.strip() or None


def normalise_name(value) -> str | None:
    """A person's name: control characters dropped, whitespace collapsed to single spaces, stripped; None when empty."""
    text = remove_control_characters(value)
    if text is None:
        return None
    return WHITESPACE.sub(" ", text).strip() or None


def normalise_email(value) -> str | None:
    """The address as email-validator normalises it (domain lower-cased, no DNS lookup); None when empty or invalid."""
    text = clean_text(value)
    if text is None:
        return None
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def phone_region(country: str | None) -> str:
    return (country or DEFAULT_COUNTRY).upper()


def normalise_phone(value, country: str = DEFAULT_COUNTRY) -> str | None:
    """The number in E.164, read in the dealer's country when it has no country code; None when empty or not a valid number."""
    text = clean_text(value)
    if text is None or len(text) > 64:
        return None
    try:
        number = phonenumbers.parse(text, phone_region(country))
    except phonenumbers.NumberParseException:
        return None
    national = str(number.national_number)
    drama = number.country_code == 44 and OFCOM_DRAMA_NUMBERS.match(national) is not None
    if not (phonenumbers.is_valid_number(number) or drama):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_postcode(value) -> str | None:
    """A UK postcode in BS 7666 shape, upper case with one space (BFPO numbers as "BFPO 123"); None when empty or not one."""
    text = clean_text(value)
    if text is None:
        return None
    compact = WHITESPACE.sub("", text.upper())
    bfpo = BFPO.match(WHITESPACE.sub(" ", text.upper().strip()))
    if bfpo:
        return f"BFPO {int(bfpo.group('number'))}"
    found = POSTCODE.match(compact)
    if found is None:
        return None
    if found.group("gir"):
        return "GIR 0AA"
    return f"{found.group('out')} {found.group('in')}"


def normalise_registration(value) -> str | None:
    """A registration mark upper case with letters and digits only; None when empty."""
    text = clean_text(value)
    if text is None:
        return None
    return NOT_LETTER_OR_DIGIT.sub("", text.upper()) or None


def parse_flag(value) -> bool | None:
    """True or False from Y/N, yes/no, true/false, 1/0, checked/unchecked (any case); None when not given.

    Raises ValueError for any other value: an unknown answer is never read as a yes."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = clean_text(value) if isinstance(value, str) else None
    if isinstance(value, str) and text is None:
        return None
    word = (text or "").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("not a yes/no answer")


def zone_for_country(country: str | None) -> ZoneInfo:
    return ZoneInfo(ZONE_BY_COUNTRY.get(phone_region(country), "Europe/London"))


def parse_timestamp(value, country: str = DEFAULT_COUNTRY) -> datetime | None:
    """An aware UTC datetime from a datetime, an ISO 8601 or UK-style string, or epoch seconds/milliseconds; a time without an
    offset is the dealer's local time (Europe/London for GB). None when not given; ValueError when unreadable."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a flag is not a time")
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        moment = _from_epoch(float(value))
    elif isinstance(value, str):
        text = clean_text(value)
        if text is None:
            return None
        moment = _from_text(text)
    else:
        raise ValueError("not a time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone_for_country(country))
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("time out of range") from None


def _from_epoch(number: float) -> datetime:
    if number != number or number < 0:
        raise ValueError("not a time")
    seconds = number / 1000 if number > 1e11 else number  # past 1e11 seconds (year 5138) it must be milliseconds
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError("time out of range") from None


def _from_text(text: str) -> datetime:
    if len(text) > 64:
        raise ValueError("not a time")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for pattern in UK_DATE_TIME:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    raise ValueError("not a time")
