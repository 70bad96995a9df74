"""Read one DMS export with its mapping profile: the CSV and XML engines behind one function."""

import codecs
import copy
import csv
import difflib
import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from lxml import etree

from dms_pipelines.formats.decoding import BLOCK, DecodingError, decode, detect_encoding, file_utf8_encoding
from dms_pipelines.formats.profile import MappingProfile
from dms_pipelines.formats.safe_xml import UnsafeXmlError, iter_records
from dms_pipelines.formats.transforms import first_non_empty, skipped_records
from dms_pipelines.formats.values import MappingError, ParseResult, map_to_canonical
from dms_pipelines.formats.xml_names import RecordNames, describe_elements
from dms_pipelines.sources.base import shown
from dms_pipelines.sources.compressed import CompressedFileError, decompress, is_compressed

DEFAULT_MAX_UNCOMPRESSED = 2 << 30
# Ends each scalar field in a record's joined text (XPath literals cannot hold control characters). Latin-1, so the
# joined text of a Latin-1 record stays one byte a character; a record whose text holds it is read field by field.
FIELD_END = "\u00a4\u00b6"
ELEMENT_PATH = re.compile(r"(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*(?:/(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*)*")  # child steps only
HEAD_BYTES = 1 << 16  # the header row is read from this much of the file
NOT_WHITESPACE = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # bytes.strip()'s whitespace; searching copies nothing
SAMPLE_RECORDS = 1000  # XML records kept (copied) for the drift report and for telling an XPath that matches nothing


def read_export(path: Path, profile: MappingProfile, dealer_id: str, file_name: str | None = None, max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED) -> ParseResult:
    """Canonical rows and issues from the export at `path`; raises MappingError when the file is unreadable as a whole."""
    file_name = file_name or path.name
    if is_compressed(path.name):
        with tempfile.TemporaryDirectory(prefix="dms-expand-", dir=path.parent) as folder:
            try:
                expanded = decompress(path, Path(folder) / "export", max_uncompressed_bytes, label=shown(file_name))
            except CompressedFileError as error:
                raise MappingError(str(error)) from None
            return read_export(expanded, profile, dealer_id, file_name, max_uncompressed_bytes)
    file_name = shown(file_name)  # it starts every message: no control character may forge a line
    if profile.format == "csv":
        return _read_csv(path, profile, dealer_id, file_name)
    return _read_xml(path, profile, dealer_id, file_name)


def _utf8_bytes(data: bytes, profile: MappingProfile, file_name: str) -> tuple[memoryview, str]:
    try:
        encoding = detect_encoding(data) if profile.encoding == "auto" else profile.encoding
        if encoding == "utf-8":
            return memoryview(data), encoding
        if encoding == "utf-8-sig":
            return memoryview(data)[3:], encoding  # a view: no copy of the whole file
        text, encoding = decode(data, encoding)
        return memoryview(text.encode("utf-8")), encoding
    except (DecodingError, LookupError) as error:
        raise MappingError(f"{file_name}: cannot decode: {error}") from None


def _utf8_source(path: Path, profile: MappingProfile, file_name: str) -> tuple[pa.NativeFile, bytes, str]:
    """The export as UTF-8 for Arrow, its first bytes (for the header) and its encoding.

    A file that already is UTF-8 is streamed from disk (Arrow skips a byte-order mark); any other is read and transcoded whole.
    """
    encoding = file_utf8_encoding(path) if profile.encoding == "auto" else profile.encoding
    if encoding in ("utf-8", "utf-8-sig"):
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
            if encoding == "utf-8-sig" and head.startswith(codecs.BOM_UTF8):
                head = head[len(codecs.BOM_UTF8) :]
            has_text = bool(NOT_WHITESPACE.search(head))
            while not has_text and (block := handle.read(BLOCK)):
                has_text = bool(NOT_WHITESPACE.search(block))
        if not has_text:
            raise MappingError(f"{file_name}: empty file (no header, no rows)")
        return pa.OSFile(str(path)), head, encoding
    data, encoding = _utf8_bytes(path.read_bytes(), profile, file_name)
    if not NOT_WHITESPACE.search(data):
        raise MappingError(f"{file_name}: empty file (no header, no rows)")
    return pa.BufferReader(pa.py_buffer(data)), bytes(data[:HEAD_BYTES]), encoding


def _read_csv(path: Path, profile: MappingProfile, dealer_id: str, file_name: str) -> ParseResult:
    source, head, encoding = _utf8_source(path, profile, file_name)
    with source:
        return _read_csv_source(source, head, encoding, profile, dealer_id, file_name)


def _read_csv_source(source: pa.NativeFile, head: bytes, encoding: str, profile: MappingProfile, dealer_id: str, file_name: str) -> ParseResult:
    dialect = profile.csv
    header_reader = csv.reader(io.StringIO(head.decode("utf-8", errors="replace"), newline=""), delimiter=dialect.delimiter, quotechar=dialect.quotechar)
    try:
        header = [name.strip() for name in next(header_reader)]
    except csv.Error as error:
        raise MappingError(f"{file_name}: row 1 (header): not readable as '{dialect.delimiter}'-delimited CSV: {error}") from None
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise MappingError(f"{file_name}: row 1 (header): duplicated column names {duplicated}")
    missing = [name for name in profile.required_columns() if name not in header]
    if missing:
        unused = [name for name in header if name not in profile.known_columns()]
        close = [f"{name} -> {found[0]}?" for name in missing if (found := difflib.get_close_matches(name, unused, n=1))]
        hint = f"; closest in the file: {', '.join(close)}" if close else ""
        raise MappingError(f"{file_name}: row 1 (header): required columns missing {missing} (profile '{profile.name}'; the file has {len(header)} columns){hint}")
    known = profile.known_columns()
    read = {column for m in profile.fields.values() for column in m.columns} | {rule.column for rule in profile.skip}
    warnings = []
    unknown = [name for name in header if name not in known]
    if unknown:
        warnings.append(f"{file_name}: columns not in profile '{profile.name}' (ignored): {unknown}")

    invalid: list[tuple[int, str, int]] = []

    def on_invalid_row(row) -> str:
        invalid.append((row.number - 1 if row.number is not None else -1, row.text, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(use_threads=False, column_names=header, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=dialect.delimiter,
                quote_char=dialect.quotechar,
                double_quote=True,
                newlines_in_values=True,
                invalid_row_handler=on_invalid_row,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                include_columns=[name for name in header if name in read],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException) as error:
        raise MappingError(f"{file_name}: not readable as '{dialect.delimiter}'-delimited CSV: {error}") from None

    total = table.num_rows + len(invalid)
    numbers = np.arange(1, total + 1)
    if invalid:
        numbers = numbers[~np.isin(numbers, [number for number, _, _ in invalid])]
    skipped: dict[str, int] = {}
    if profile.skip:
        keep, skipped = skipped_records([table.column(rule.column) for rule in profile.skip], profile.skip)
        if skipped:
            table, numbers = table.filter(pa.array(keep)), numbers[keep]
    good_numbers = pd.Series(numbers, dtype="Int64")
    raw, present = {}, []
    for canonical, mapping in profile.fields.items():
        present = [table.column(name) for name in mapping.columns if name in header]
        if present:
            raw[canonical] = present[0] if len(present) == 1 else first_non_empty(present)
    del table, present  # map_to_canonical lets each raw column go once it is converted
    rows, issues, unmapped = map_to_canonical(raw, good_numbers, profile, dealer_id, file_name)
    if invalid:
        kind = profile.kind
        stock_columns = [name for name in profile.fields[kind.key].columns if name in header] if kind.key in profile.fields else []
        stock_column = header.index(stock_columns[0]) if stock_columns else None
        shifted = []
        for number, text, actual in invalid:
            fields = next(csv.reader([text], delimiter=dialect.delimiter, quotechar=dialect.quotechar), [])
            stock_id = fields[stock_column] if stock_column is not None and stock_column < len(fields) else None
            shifted.append(
                {
                    "source_row": number,
                    kind.issue_key: stock_id,
                    "field": None,
                    "rule": "field_count",
                    "value": text[:200] if kind.shows_values else None,
                    "severity": "error",
                    "message": f"{file_name}: row {number}: {actual} fields where the header has {len(header)} (an unquoted delimiter?)",
                }
            )
        issues = pd.concat([issues, pd.DataFrame(shifted)], ignore_index=True)
    records = total - sum(skipped.values())
    return ParseResult(file_name, rows, issues.astype({"source_row": "Int64"}), records, encoding, warnings, skipped=skipped, unread_sources=unknown, unmapped=unmapped)


def _read_xml(path: Path, profile: MappingProfile, dealer_id: str, file_name: str) -> ParseResult:
    layout = profile.xml
    prefix, _, local = layout.record.rpartition(":")
    tag = f"{{{layout.namespaces[prefix]}}}{local}" if prefix else local
    # One source per expression: each of a field's XPaths (several: the first non-empty per record) and each skip rule's.
    sources = [((canonical, index), xpath, m.type == "list", m.separator or ",") for canonical, m in profile.fields.items() for index, xpath in enumerate(m.xpaths)]
    sources += [(("skip", index), rule.xpath, False, ",") for index, rule in enumerate(profile.skip)]
    scalar = {key: etree.XPath(f"string({xpath})", namespaces=layout.namespaces, smart_strings=False) for key, xpath, listed, _ in sources if not listed}
    # One XPath call per record for every scalar source (each one's string() followed by FIELD_END) instead of one each.
    record_text = (
        etree.XPath(
            "concat(" + ", ".join(f"string({xpath}), '{FIELD_END}'" for _, xpath, listed, _ in sources if not listed) + ", '')",
            namespaces=layout.namespaces,
            smart_strings=False,
        )
        if scalar
        else None
    )
    multiple = {key: (etree.XPath(_item_texts(xpath), namespaces=layout.namespaces, smart_strings=False), separator) for key, xpath, listed, separator in sources if listed}
    records: list[str] = []
    read_alone: dict[int, list[str]] = {}  # records whose text holds FIELD_END, read field by field
    lists: dict[tuple, list] = {key: [] for key in multiple}
    sample = []  # copies of the first records, for the drift report and the XPaths that match nothing
    count = 0
    try:
        for _, element in iter_records(path, tag):
            if count < SAMPLE_RECORDS:
                sample.append(copy.deepcopy(element))
            if record_text is not None:
                text = record_text(element)
                if text.count(FIELD_END) != len(scalar):
                    read_alone[count] = [xpath(element) for xpath in scalar.values()]
                    text = FIELD_END * len(scalar)
                records.append(text)
            count += 1
            for key, (xpath, separator) in multiple.items():
                items = [(n if isinstance(n, str) else (n.text or "")).strip() for n in xpath(element)]
                lists[key].append(separator.join(i for i in items if i))
            element.clear(keep_tail=False)
            parent = element.getparent()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except UnsafeXmlError as error:
        raise MappingError(f"{file_name}: {error}") from None
    except etree.XMLSyntaxError as error:
        raise MappingError(f"{file_name}: malformed XML at line {error.lineno}: {error.msg} (after {count} records)") from None
    if count == 0:
        raise MappingError(
            f"{file_name}: no <{layout.record}> records found (namespace {layout.namespaces.get(prefix, 'none')}); wrong layout or namespace?" + describe_elements(path, tag, layout.namespaces)
        )
    columns = {key: pa.chunked_array([values]) for key, values in (_scalar_columns(records, list(scalar), read_alone) if scalar else {}).items()}
    del records
    columns.update({key: pa.chunked_array([pa.array(values, type=pa.large_string())]) for key, values in lists.items()})
    del lists
    names = RecordNames.of(sample, layout.namespaces)
    warnings = _unmatched_sources(profile, columns, sample, names, count, file_name)
    unread = names.unread([xpath for _, xpath, _, _ in sources], profile.ignored_columns)
    if unread:
        warnings.append(f"{file_name}: attributes/elements not in profile '{profile.name}' (ignored): {unread}")
    del sample
    source_rows = np.arange(1, count + 1)
    skipped: dict[str, int] = {}
    if profile.skip:
        keep, skipped = skipped_records([columns.pop(("skip", index)) for index in range(len(profile.skip))], profile.skip)
        if skipped:
            mask = pa.array(keep)
            columns = {key: pc.filter(values, mask) for key, values in columns.items()}
            source_rows = source_rows[keep]
    raw = {}
    for canonical, mapping in profile.fields.items():
        present = [columns.pop((canonical, index)) for index in range(len(mapping.xpaths))]
        raw[canonical] = present[0] if len(present) == 1 else first_non_empty(present)
    del present
    rows, issues, unmapped = map_to_canonical(raw, pd.Series(source_rows, dtype="Int64"), profile, dealer_id, file_name)
    return ParseResult(file_name, rows, issues, len(source_rows), "utf-8", warnings, skipped=skipped, unread_sources=unread, unmapped=unmapped)


def _has_text(values: pa.ChunkedArray) -> bool:
    """Whether any value is non-empty: then its XPath matched something (lengths only, the text is not read)."""
    longest = pc.max(pc.binary_length(values)).as_py() if len(values) else None
    return bool(longest)


def _unmatched_sources(profile: MappingProfile, columns: dict, sample: list, names: RecordNames, count: int, file_name: str) -> list[str]:
    """Warnings for the fields and skip rules whose XPaths match nothing in any record; raises MappingError when a
    required field of a full export does (it has no default or constant to stand in): a misspelt name fails here, clearly,
    instead of quarantining every row. "Nothing" is no record with a value and none of the sampled records with the node at all."""
    namespaces = profile.xml.namespaces
    fields = profile.kind.fields

    def matched(key: tuple, xpath: str) -> bool:
        if _has_text(columns[key]):
            return True
        test = etree.XPath(f"boolean({xpath})", namespaces=namespaces)
        return any(test(record) for record in sample)

    def hint(expressions: list[str], listing: bool = False) -> str:
        nearest = list(dict.fromkeys(name for xpath in expressions for name in names.nearest(xpath, namespaces)))
        if nearest:
            return f"; did you mean {' or '.join(nearest[:3])}?"
        return f"; the records have {names.listing()}" if listing and names.names else ""

    def shown(expressions: list[str]) -> str:
        return repr(expressions[0]) if len(expressions) == 1 else repr(expressions)

    failures, warnings = [], []
    # A delta may carry only what changed (a stock number and "sold"): its rows are quarantined, but a sale in them still
    # applies, which failing the file would hold up; the next full export fails instead.
    delta = profile.export_kind(file_name) == "delta"
    for canonical, mapping in profile.fields.items():
        if mapping.optional or any(matched((canonical, index), xpath) for index, xpath in enumerate(mapping.xpaths)):
            continue
        where = f"fields.{canonical}.xpath {shown(mapping.xpaths)}"
        if fields[canonical].required and mapping.default is None and canonical not in profile.constants and delta:
            warnings.append(f"{file_name}: {where} of profile '{profile.name}' matches nothing in any of the {count} records of this delta ({canonical} is required){hint(mapping.xpaths)}")
        elif fields[canonical].required and mapping.default is None and canonical not in profile.constants:
            failures.append(
                f"{where} of profile '{profile.name}' matches nothing in any of the {count} records read ({canonical} is required, so no record could be used){hint(mapping.xpaths, listing=True)}"
            )
        else:
            warnings.append(f"{file_name}: {where} of profile '{profile.name}' matches nothing in any of the {count} records{hint(mapping.xpaths)} (optional: true if the layout may leave it out)")
    if failures:
        raise MappingError(f"{file_name}: " + "\n  ".join(failures))
    for index, rule in enumerate(profile.skip):
        if not matched(("skip", index), rule.xpath):
            warnings.append(f"{file_name}: skip[{index}].xpath {rule.xpath!r} of profile '{profile.name}' matches nothing in any of the {count} records{hint([rule.xpath])}")
    return warnings


def _item_texts(xpath: str) -> str:
    """For a plain element path, the path to each element's leading text node: what lxml's .text reads (comments and
    CDATA are gone at parse time, so it is one text node), without building an element object per list item."""
    return f"{xpath}/node()[1][self::text()]" if ELEMENT_PATH.fullmatch(xpath) else xpath


def _scalar_columns(records: list[str], names: list[str], read_alone: dict[int, list[str]]) -> dict[str, pa.Array]:
    """Split each record's FIELD_END-terminated text into one column per field, in Arrow."""
    parts = pc.split_pattern(pa.array(records, type=pa.large_string()), FIELD_END).flatten()
    width = len(names) + 1  # the text ends with FIELD_END, so the last part is always empty
    columns = {name: parts.take(pa.array(np.arange(index, len(parts), width))) for index, name in enumerate(names)}
    if read_alone:
        for index, name in enumerate(names):
            values = columns[name].to_pylist()
            for number, fields in read_alone.items():
                values[number] = fields[index]
            columns[name] = pa.array(values, type=pa.large_string())
    return columns
