"""Decide a text file's encoding: a byte-order mark, then strict UTF-8, then cp1252; never latin-1."""

import codecs
from pathlib import Path

BLOCK = 1 << 24

BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class DecodingError(ValueError):
    """The bytes fit none of the encodings tried."""


def detect_encoding(data: bytes) -> str:
    """The encoding to read `data` with, as Python names it."""
    for bom, name in BOMS:
        if data.startswith(bom):
            return name
    try:
        data.decode("utf-8", errors="strict")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        data.decode("cp1252", errors="strict")
        return "cp1252"
    except UnicodeDecodeError as error:
        raise DecodingError(f"neither UTF-8 nor cp1252: byte 0x{data[error.start]:02x} at offset {error.start} is undefined in cp1252") from None


def decode(data: bytes, declared: str = "auto") -> tuple[str, str]:
    """Text and the encoding used; `declared` is a profile's encoding or 'auto'."""
    encoding = detect_encoding(data) if declared == "auto" else declared
    try:
        return data.decode(encoding, errors="strict"), encoding
    except UnicodeDecodeError as error:
        raise DecodingError(f"not valid {encoding}: byte offset {error.start}") from None


def file_utf8_encoding(path: Path) -> str | None:
    """'utf-8-sig' or 'utf-8' when `detect_encoding` would say so of the file; None otherwise. Read a block at a time, never whole."""
    with path.open("rb") as handle:
        start = handle.read(4)
        for bom, name in BOMS:
            if start.startswith(bom):
                return name if name == "utf-8-sig" else None
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        try:
            while block := handle.read(BLOCK):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return None
    return "utf-8"
