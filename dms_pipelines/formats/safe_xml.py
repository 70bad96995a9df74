"""The one way untrusted XML is parsed: no entities, no DTDs, no network, no huge trees."""

import codecs
import re
from pathlib import Path

from lxml import etree

PROLOG_LIMIT = 1 << 20
ROOT_START = re.compile(r"<[A-Za-z_:]|<[^\x00-\x7f]")
DANGEROUS = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
# XML 1.0 Appendix F: a byte-order mark, else the bytes of "<?" in each encoding (UTF-32 before UTF-16: FF FE 00 00 starts both).
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
SIGNATURES = ((b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"), (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"))
EBCDIC_SIGNATURE = b"\x4c\x6f\xa7\x94"  # "<?xm" in EBCDIC
DECLARED = re.compile(r"""<\?xml[^>]*?\sencoding\s*=\s*(["'])([^"'>]*)\1""")
WIDE = ("utf-16", "utf-32")  # codec names (as codecs.lookup spells them) of the encodings whose ASCII is not one byte a character


class UnsafeXmlError(ValueError):
    """The document declares a DOCTYPE or entities, which exports never need; refused before parsing."""


def _encoding_of(head: bytes) -> tuple[str, int]:
    """The document's encoding as an XML parser finds it (Appendix F), and the length of its byte-order mark.

    Raises UnsafeXmlError for what cannot be decoded for the check: EBCDIC, an encoding Python does not know, NUL bytes in
    a document of one-byte characters (UTF-16 or UTF-32 with neither a BOM nor a declaration: not XML either way).
    """
    for mark, encoding in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            found, skip = encoding, len(mark)
            break
    else:
        found, skip = next((encoding for signature, encoding in SIGNATURES if head.startswith(signature)), None), 0
    if head.startswith(EBCDIC_SIGNATURE):
        raise UnsafeXmlError("is EBCDIC-encoded; refused (its prolog cannot be checked)")
    if found is not None and found != "utf-8":
        declared = DECLARED.match(head[skip : skip + 4096].decode(found, errors="replace"))
        if declared and not codecs.lookup(_known(declared.group(2))).name.startswith(found[:6]):
            raise UnsafeXmlError(f"is {found.upper()} but declares encoding {declared.group(2)!r}; refused")
        return found, skip
    declared = DECLARED.match(head[skip : skip + 4096].decode("latin-1"))
    encoding = codecs.lookup(_known(declared.group(2))).name if declared else "utf-8"
    if encoding.startswith(WIDE):
        encoding = "utf-8"  # one-byte characters labelled UTF-16/32: parsers read the bytes, not the label
    if b"\x00" in head:
        raise UnsafeXmlError("holds NUL bytes but starts with no UTF-16/UTF-32 byte-order mark or <?xml; refused")
    return encoding, skip


def _known(name: str) -> str:
    try:
        codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a name no codec can have (a NUL in it)
        raise UnsafeXmlError(f"declares encoding {name!r}, which cannot be decoded to check it; refused") from None
    return name


def check_prolog(path: Path) -> str:
    """Refuse a DOCTYPE or entity declaration before the root element, in whatever encoding the document is; returns that encoding."""
    with path.open("rb") as handle:
        head = handle.read(PROLOG_LIMIT)
    encoding, skip = _encoding_of(head)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        text = decoder.decode(head[skip:], final=len(head) < PROLOG_LIMIT)
    except UnicodeDecodeError as error:  # the prolog must decode; an error after the root start is the parser's to report
        text = head[skip : skip + error.start].decode(encoding, errors="replace")
        if ROOT_START.search(text) is None:
            raise UnsafeXmlError(f"is not valid {encoding} before its root element; refused") from None
    root = ROOT_START.search(text)
    prolog = text[: root.start()] if root else text
    if DANGEROUS.search(prolog):
        raise UnsafeXmlError(f"declares a DOCTYPE or entities ({encoding}); refused (DMS exports never need them, attacks do)")
    if root is None and len(head) == PROLOG_LIMIT:
        raise UnsafeXmlError(f"no root element within the first {PROLOG_LIMIT} bytes; refused")
    return encoding


def iter_records(path: Path, tag: str):
    """Yield each element named `tag` ({namespace}local) as it completes, after the prolog check."""
    return iter_events(path, ("end",), tag=tag)


def iter_events(path: Path, events: tuple[str, ...], tag: str | None = None):
    """lxml's iterparse of `path` for `events` (optionally of `tag` only), after the prolog check, with nothing resolved or fetched."""
    check_prolog(path)
    return etree.iterparse(
        str(path),
        events=events,
        tag=tag,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
