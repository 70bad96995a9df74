"""A delivered feed file read back into what it shows per vehicle (key -> the vehicle's row as text), for the drift oracle."""

import csv
import io
import json

from lxml import etree

Shown = dict[str, str]


class UnreadableFeed(ValueError):
    """The file at the destination cannot be read as this marketplace's feed (truncated, another format, not UTF-8)."""


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFeed(f"not UTF-8 at byte {error.start}") from None


def delimited(content: bytes, delimiter: str, keys: tuple[str, ...]) -> Shown:
    """Rows of a CSV/TSV file with a header, keyed by the `keys` columns joined with '|'; each row as its non-empty cells
    by column name (so files whose optional columns differ in number, like Meta's image columns, compare by value)."""
    reader = csv.reader(io.StringIO(_text(content), newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return {}
    missing = [key for key in keys if key not in header]
    if missing:
        raise UnreadableFeed(f"the header has no {', '.join(missing)} column")
    positions = [header.index(key) for key in keys]
    shown: Shown = {}
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise UnreadableFeed(f"row {number} has {len(row)} fields, the header {len(header)}")
        key = "|".join(row[p] for p in positions)
        shown[key] = json.dumps({name: value for name, value in zip(header, row) if value != ""}, sort_keys=True, ensure_ascii=False)
    return shown


def json_vehicles(content: bytes, key: str = "stock_id") -> Shown:
    """The `vehicles` list of a JSON document, keyed by `key`."""
    try:
        document = json.loads(_text(content))
        vehicles = document["vehicles"]
        return {str(vehicle[key]): json.dumps(vehicle, sort_keys=True, ensure_ascii=False) for vehicle in vehicles}
    except (ValueError, KeyError, TypeError) as error:
        raise UnreadableFeed(f"not a feed document with vehicles by {key}: {type(error).__name__}: {error}") from None


def xml_listings(content: bytes, item: str, key: str) -> Shown:
    """The `item` elements of an XML document, keyed by the text of their `key` child, each as its canonical text."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)  # untrusted: it may have been edited
    try:
        root = etree.fromstring(content, parser)
    except (ValueError, etree.XMLSyntaxError) as error:
        raise UnreadableFeed(f"not readable XML: {error}") from None
    shown: Shown = {}
    for element in root.iter(item):
        shown[element.findtext(key) or ""] = etree.tostring(element, method="c14n").decode("utf-8")
    return shown
