"""Read one DMS export with its mapping profile: the CSV and XML engines behind one function."""

import csv
import io
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from lxml import etree

from dms_pipelines.formats.decoding import DecodingError, decode, detect_encoding
from dms_pipelines.formats.profile import MappingProfile
from dms_pipelines.formats.safe_xml import UnsafeXmlError, iter_records
from dms_pipelines.formats.values import MappingError, ParseResult, empty_issues, map_to_canonical
from dms_pipelines.sources.compressed import CompressedFileError, decompress, is_compressed


DEFAULT_MAX_UNCOMPRESSED = 2 << 30


def read_export(path: Path, profile: MappingProfile, dealer_id: str, file_name: str | None = None, max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED) -> ParseResult:
    """Canonical rows and issues from the export at `path`; raises MappingError when the file is unreadable as a whole."""
    file_name = file_name or path.name
    if is_compressed(path.name):
        with tempfile.TemporaryDirectory(prefix="dms-expand-", dir=path.parent) as folder:
            try:
                expanded = decompress(path, Path(folder) / "export", max_uncompressed_bytes, label=file_name)
            except CompressedFileError as error:
                raise MappingError(str(error)) from None
            return read_export(expanded, profile, dealer_id, file_name, max_uncompressed_bytes)
    if profile.format == "csv":
        return _read_csv(path, profile, dealer_id, file_name)
    return _read_xml(path, profile, dealer_id, file_name)


def _utf8_bytes(data: bytes, profile: MappingProfile, file_name: str) -> tuple[bytes, str]:
    try:
        encoding = detect_encoding(data) if profile.encoding == "auto" else profile.encoding
        if encoding == "utf-8":
            return data, encoding
        if encoding == "utf-8-sig":
            return data[3:], encoding
        text, encoding = decode(data, encoding)
        return text.encode("utf-8"), encoding
    except (DecodingError, LookupError) as error:
        raise MappingError(f"{file_name}: cannot decode: {error}") from None


def _read_csv(path: Path, profile: MappingProfile, dealer_id: str, file_name: str) -> ParseResult:
    dialect = profile.csv
    data, encoding = _utf8_bytes(path.read_bytes(), profile, file_name)
    if not data.strip():
        raise MappingError(f"{file_name}: empty file (no header, no rows)")
    header_reader = csv.reader(io.StringIO(data[: 1 << 16].decode("utf-8", errors="replace"), newline=""), delimiter=dialect.delimiter, quotechar=dialect.quotechar)
    try:
        header = [name.strip() for name in next(header_reader)]
    except csv.Error as error:
        raise MappingError(f"{file_name}: row 1 (header): not readable as '{dialect.delimiter}'-delimited CSV: {error}") from None
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise MappingError(f"{file_name}: row 1 (header): duplicated column names {duplicated}")
    missing = [name for name in profile.required_columns() if name not in header]
    if missing:
        raise MappingError(
            f"{file_name}: row 1 (header): required columns missing {missing} (profile '{profile.name}'; the file has {len(header)} columns)"
        )
    known = {m.column for m in profile.fields.values()} | set(profile.ignored_columns)
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
            io.BytesIO(data),
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
                include_columns=[m.column for m in profile.fields.values() if m.column in header],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException) as error:
        raise MappingError(f"{file_name}: not readable as '{dialect.delimiter}'-delimited CSV: {error}") from None

    bad_numbers = {number for number, _, _ in invalid}
    total = table.num_rows + len(invalid)
    good_numbers = pd.Series([n for n in range(1, total + 1) if n not in bad_numbers], dtype="Int64") if invalid else pd.Series(range(1, total + 1), dtype="Int64")
    raw = pd.DataFrame(
        {canonical: table.column(m.column).to_pandas(types_mapper=pd.ArrowDtype).astype("string") for canonical, m in profile.fields.items() if m.column in header}
    )
    rows, issues = map_to_canonical(raw, good_numbers, profile, dealer_id, file_name)
    if invalid:
        stock_column = header.index(profile.fields["stock_id"].column) if "stock_id" in profile.fields else None
        shifted = []
        for number, text, actual in invalid:
            fields = next(csv.reader([text], delimiter=dialect.delimiter, quotechar=dialect.quotechar), [])
            stock_id = fields[stock_column] if stock_column is not None and stock_column < len(fields) else None
            shifted.append(
                {
                    "source_row": number,
                    "stock_id": stock_id,
                    "field": None,
                    "rule": "field_count",
                    "value": text[:200],
                    "severity": "error",
                    "message": f"{file_name}: row {number}: {actual} fields where the header has {len(header)} (an unquoted delimiter?)",
                }
            )
        issues = pd.concat([issues, pd.DataFrame(shifted)], ignore_index=True)
    return ParseResult(file_name, rows, issues.astype({"source_row": "Int64"}), total, encoding, warnings)


def _read_xml(path: Path, profile: MappingProfile, dealer_id: str, file_name: str) -> ParseResult:
    layout = profile.xml
    prefix, _, local = layout.record.rpartition(":")
    tag = f"{{{layout.namespaces[prefix]}}}{local}" if prefix else local
    scalar = {
        canonical: etree.XPath(f"string({m.xpath})", namespaces=layout.namespaces, smart_strings=False)
        for canonical, m in profile.fields.items()
        if m.type != "list"
    }
    multiple = {
        canonical: (etree.XPath(m.xpath, namespaces=layout.namespaces, smart_strings=False), m.separator or ",")
        for canonical, m in profile.fields.items()
        if m.type == "list"
    }
    values: dict[str, list] = {name: [] for name in list(scalar) + list(multiple)}
    count = 0
    try:
        for _, element in iter_records(path, tag):
            count += 1
            for name, xpath in scalar.items():
                values[name].append(xpath(element))
            for name, (xpath, separator) in multiple.items():
                items = [(n if isinstance(n, str) else (n.text or "")).strip() for n in xpath(element)]
                values[name].append(separator.join(i for i in items if i))
            element.clear(keep_tail=False)
            parent = element.getparent()
            while parent is not None and element.getprevious() is not None:
                del parent[0]
    except UnsafeXmlError as error:
        raise MappingError(f"{file_name}: {error}") from None
    except etree.XMLSyntaxError as error:
        raise MappingError(f"{file_name}: malformed XML at line {error.lineno}: {error.msg} (after {count} records)") from None
    if count == 0:
        raise MappingError(f"{file_name}: no <{layout.record}> records found (namespace {layout.namespaces.get(prefix, 'none')}); wrong layout or namespace?")
    raw = pd.DataFrame({name: pd.Series(column, dtype="string") for name, column in values.items()})
    rows, issues = map_to_canonical(raw, pd.Series(range(1, count + 1), dtype="Int64"), profile, dealer_id, file_name)
    return ParseResult(file_name, rows, issues, count, "utf-8", [])
