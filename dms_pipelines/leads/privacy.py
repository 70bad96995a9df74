"""Find the leads' contact details where they must never be: any file outside the CRM destinations (feeds, warehouse)."""

import re
from pathlib import Path

import phonenumbers

EMAIL = re.compile(rb"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PHONE = re.compile(rb"\+?[0-9][0-9 ()\-]{8,18}[0-9]")
MAX_SCAN_BYTES = 256 * 1024 * 1024  # a file bigger than this is read in its first part only


def _phones(found: bytes, region: str) -> set[str]:
    numbers = set()
    for match in PHONE.findall(found):
        try:
            number = phonenumbers.parse(match.decode("ascii", "ignore"), region)
        except phonenumbers.NumberParseException:
            continue
        numbers.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return numbers


def leaks(folders: list[Path], emails: set[str], phones: set[str], excluded: list[Path], region: str = "GB") -> list[str]:
    """The files under `folders` (except those under `excluded`) holding any of the e-mails (compared case-insensitively)
    or E.164 phones, each named with what kind of value it holds (never the value)."""
    emails = {email.casefold() for email in emails if email}
    phones = {phone for phone in phones if phone}
    excluded = [folder.resolve() for folder in excluded]
    found = []
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            resolved = path.resolve()
            if any(resolved.is_relative_to(ex) for ex in excluded):
                continue
            with path.open("rb") as handle:
                content = handle.read(MAX_SCAN_BYTES)
            kinds = []
            if emails and any(match.decode("utf-8", "ignore").casefold() in emails for match in EMAIL.findall(content)):
                kinds.append("an e-mail address")
            if phones and _phones(content, region) & phones:
                kinds.append("a phone number")
            if kinds:
                found.append(f"{path}: holds {' and '.join(kinds)} of a lead")
    return found
