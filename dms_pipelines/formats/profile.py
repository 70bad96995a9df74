"""Mapping profiles: the YAML that tells an engine how a vendor's layout maps onto canonical fields."""

import difflib
import re
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dms_pipelines.formats.records import RecordKind, record_kind
from dms_pipelines.sources.base import matches_any
from dms_pipelines.sources.compressed import inner_name

KEYS_DOC = "docs/configuration.md#mapping-profiles"
XPATH_DOC = "docs/onboarding.md"
QNAME = r"(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*"
# An XML `ignored_columns` entry: a name relative to the record, an attribute only as the last step (Notes, @Colour2, inv:Images/inv:Image/@Position).
IGNORED_XML_NAME = re.compile(rf"(?:{QNAME}/)*@?{QNAME}")
NUMERIC_TYPES = ("integer", "decimal")


class ProfileError(Exception):
    """A mapping profile cannot be used; the message names the profile file, the key and the fix."""


class ProfileProblems(ValueError):
    """Every problem found in one profile, each `key.path: what is wrong and what to do`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMapping(Strict):
    column: str | list[str] | None = None  # CSV header name, or names: the first non-empty value per row
    xpath: str | list[str] | None = None  # XML, relative to the record; a list: the first non-empty value per row
    type: Literal["string", "integer", "decimal", "money", "date", "boolean", "list", "registration"] = "string"
    formats: list[str] = Field(default_factory=list)  # date formats, tried in order
    extract: str | None = None  # Python regular expression: its first group (or the whole match) of the first match
    case: Literal["upper", "lower", "title"] | None = None  # applied before the map
    map: dict[str, str] | None = None  # source value -> canonical value, case-insensitive
    unmapped: Literal["error", "keep", "default"] = "error"  # what a value the map does not cover becomes
    map_default: str | None = None  # with unmapped: default
    convert: Literal["litres_to_cc", "km_to_miles", "miles_to_km"] | None = None  # after the number is read
    separator: str | None = None  # for type list
    default: str | None = None  # used when the source value is empty
    optional: bool = False  # the column may be absent from the file; an XPath may match nothing

    @property
    def columns(self) -> list[str]:
        return _listed(self.column)

    @property
    def xpaths(self) -> list[str]:
        return _listed(self.xpath)

    @property
    def transforms_text(self) -> bool:
        """Whether anything changes the text between reading and the map or type (the plain paths skip all of it)."""
        return self.extract is not None or self.case is not None


class SkipRule(Strict):
    """Records that are not stock (company cars, trade-only): counted per reason, never rows, never quarantined."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    column: str | None = None
    xpath: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")  # case-insensitive, trimmed
    matches: str | None = None  # Python regular expression, searched in the trimmed value
    empty: bool | None = None
    reason: str


class CsvDialect(Strict):
    delimiter: str = ","
    quotechar: str = '"'

    @model_validator(mode="after")
    def _single_characters(self):
        if len(self.delimiter) != 1 or len(self.quotechar) != 1:
            raise ValueError("delimiter and quotechar must be single characters")
        return self


class XmlLayout(Strict):
    record: str  # prefixed tag name of one record, e.g. s:VehicleInventoryVehicleLineItem
    namespaces: dict[str, str] = Field(default_factory=dict)


class FilePatterns(Strict):
    full: list[str]
    delta: list[str] = Field(default_factory=list)


class MappingProfile(Strict):
    name: str
    description: str = ""
    format: Literal["csv", "xml"]
    record: Literal["vehicle", "customer", "images"] = "vehicle"  # what one record is: a vehicle in stock, a DMS customer, or an imaging feed's image
    encoding: str = "auto"
    csv: CsvDialect | None = None
    xml: XmlLayout | None = None
    files: FilePatterns
    fields: dict[str, FieldMapping]
    constants: dict[str, str] = Field(default_factory=dict)  # canonical field -> fixed value for every row
    ignored_columns: list[str] = Field(default_factory=list)  # columns (XML: @attributes and elements) the layout has and we deliberately do not read
    skip: list[SkipRule] = Field(default_factory=list)  # records that are not stock

    @model_validator(mode="after")
    def _consistent(self):
        problems = _problems(self)
        if problems:
            raise ProfileProblems(problems)
        return self

    @property
    def kind(self) -> RecordKind:
        """The record kind's canonical fields, key and row shape."""
        return record_kind(self.record)

    def export_kind(self, file_name: str) -> str | None:
        """'full', 'delta', or None when the name matches neither pattern list (a .gz or .zip suffix is looked through)."""
        file_name = inner_name(file_name)
        if matches_any(file_name, self.files.delta):
            return "delta"
        if matches_any(file_name, self.files.full):
            return "full"
        return None

    def required_columns(self) -> list[str]:
        """The CSV columns a file must have: every column of a field that is not optional, and every skip rule's."""
        named = [column for m in self.fields.values() if not m.optional for column in m.columns] + [rule.column for rule in self.skip if rule.column]
        return list(dict.fromkeys(named))

    def known_columns(self) -> set[str]:
        """Every CSV column the profile reads or deliberately ignores."""
        return {column for m in self.fields.values() for column in m.columns} | {rule.column for rule in self.skip if rule.column} | set(self.ignored_columns)


def _listed(source: str | list[str] | None) -> list[str]:
    if source is None:
        return []
    return [source] if isinstance(source, str) else list(source)


def suggestion(word: str, candidates) -> str:
    """' (did you mean X?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _problems(profile: MappingProfile) -> list[str]:
    """Everything the YAML's shape cannot show, each naming its key, the expression and the fix."""
    problems = []
    fields, doc = profile.kind.fields, profile.kind.doc
    if profile.format == "csv" and profile.csv is None:
        problems.append("csv: format csv needs a 'csv' section with the dialect (delimiter, quotechar); no sniffing")
    if profile.format == "xml" and profile.xml is None:
        problems.append("xml: format xml needs an 'xml' section with the record tag")
    namespaces = profile.xml.namespaces if profile.xml else {}
    if profile.xml is not None:
        prefix = profile.xml.record.rpartition(":")[0]
        if prefix and prefix not in namespaces:
            problems.append(f"xml.record: {profile.xml.record!r} uses the prefix {prefix!r}, which xml.namespaces does not declare; declare it there (prefix: namespace URI)")
    source_key, other_key = ("column", "xpath") if profile.format == "csv" else ("xpath", "column")
    for name, mapping in profile.fields.items():
        where = f"fields.{name}"
        if name == "dealer_id":
            problems.append(f"{where}: the dealer comes from the configuration, not from the export; remove this field")
            continue
        if name not in fields:
            problems.append(f"{where}: not a canonical {profile.kind.field_noun}{suggestion(name, [n for n in fields if n != 'dealer_id'])}; the fields are listed in {doc}")
            continue
        sources = mapping.columns if profile.format == "csv" else mapping.xpaths
        if not sources:
            has_other = f" (it has '{other_key}', which is for {'XML' if other_key == 'xpath' else 'CSV'} profiles)" if getattr(mapping, other_key) else ""
            problems.append(f"{where}: needs '{source_key}' in a{'n' if profile.format == 'xml' else ''} {profile.format.upper()} profile{has_other}")
        for index, source in enumerate(sources):
            key = f"{where}.{source_key}" + (f"[{index}]" if len(sources) > 1 or isinstance(getattr(mapping, source_key), list) else "")
            if not source.strip():
                problems.append(f"{key}: empty; name the {'column' if source_key == 'column' else 'attribute (@Name) or element'} to read")
            elif profile.format == "xml":
                problems += _xpath_problems(key, source, namespaces, listed=mapping.type == "list")
        problems += _transform_problems(where, name, mapping, fields)
    for name in profile.constants:
        if name not in fields:
            problems.append(f"constants.{name}: not a canonical {profile.kind.field_noun}{suggestion(name, list(fields))}; the fields are listed in {doc}")
    for index, rule in enumerate(profile.skip):
        problems += _skip_problems(f"skip[{index}]", rule, profile.format, namespaces)
    if profile.format == "xml":
        for index, entry in enumerate(profile.ignored_columns):
            if not IGNORED_XML_NAME.fullmatch(entry):
                problems.append(f"ignored_columns[{index}]: {entry!r} is not a name; write an attribute @Name and an element Name, relative to the record (a nested one as Parent/Child/@Name)")
    return problems


def _name_problems(raw: dict) -> list[str]:
    """The fields and constants of a raw profile that are not canonical: what _problems says of them, for a profile
    whose shape pydantic refused (so the model, and _problems, never ran)."""
    problems = []
    record = raw.get("record") if isinstance(raw.get("record"), str) else None
    kind = record_kind(record)
    fields = kind.fields
    for section, allowed in (("fields", [n for n in fields if n != "dealer_id"]), ("constants", list(fields))):
        names = raw.get(section)
        for name in names if isinstance(names, dict) else []:
            if str(name) not in fields:
                problems.append(f"{section}.{name}: not a canonical {kind.field_noun}{suggestion(str(name), allowed)}; the fields are listed in {kind.doc}")
    return problems


def _transform_problems(where: str, name: str, mapping: FieldMapping, fields: dict) -> list[str]:
    problems = []
    if mapping.extract is not None:
        if mapping.type == "list":
            problems.append(f"{where}.extract: not for type list (it would cut the joined items); extract from a scalar field")
        problems += _regex_problems(f"{where}.extract", mapping.extract, "e.g. '([0-9.]+)' for the number in '2.0L'")
    if mapping.map is None and mapping.unmapped != "error":
        problems.append(f"{where}.unmapped: {mapping.unmapped} is only for a field with a map; add a map or remove unmapped")
    if mapping.unmapped == "default" and mapping.map_default is None:
        problems.append(f"{where}.unmapped: default needs map_default: <the canonical value for a value the map does not cover>")
    if mapping.map_default is not None:
        if mapping.unmapped != "default":
            problems.append(f"{where}.map_default: only with unmapped: default (unmapped is {mapping.unmapped}); add unmapped: default or remove map_default")
        allowed = fields[name].allowed
        if allowed and mapping.map_default not in allowed:
            problems.append(f"{where}.map_default: {mapping.map_default!r} is not a {name} value{suggestion(mapping.map_default, allowed)}; the values are {', '.join(allowed)}")
    if mapping.convert is not None and mapping.type not in NUMERIC_TYPES:
        problems.append(f"{where}.convert: {mapping.convert} converts numbers; it needs type integer or decimal (type is {mapping.type})")
    return problems


def _skip_problems(where: str, rule: SkipRule, profile_format: str, namespaces: dict[str, str]) -> list[str]:
    problems = []
    source_key = "column" if profile_format == "csv" else "xpath"
    sources = [key for key in ("column", "xpath") if getattr(rule, key) is not None]
    if sources != [source_key]:
        found = f"it has {' and '.join(sources)}" if sources else "it has none"
        problems.append(f"{where}: needs exactly one source, '{source_key}' in a{'n' if profile_format == 'xml' else ''} {profile_format.upper()} profile ({found})")
    elif not getattr(rule, source_key).strip():
        problems.append(f"{where}.{source_key}: empty; name what to test")
    elif profile_format == "xml":
        problems += _xpath_problems(f"{where}.xpath", rule.xpath, namespaces, listed=False)
    tests = [key for key, value in (("in", rule.in_), ("matches", rule.matches), ("empty", rule.empty)) if value is not None]
    if len(tests) != 1:
        found = f"it has {' and '.join(tests)}" if tests else "it has none"
        problems.append(f"{where}: needs exactly one test: in: [values], matches: <regular expression> or empty: true|false ({found})")
    if rule.in_ is not None and not rule.in_:
        problems.append(f"{where}.in: an empty list matches nothing; list the values to skip")
    if rule.matches is not None:
        problems += _regex_problems(f"{where}.matches", rule.matches, "e.g. '^(Company|Trade)$'")
    if not rule.reason.strip():
        problems.append(f"{where}.reason: empty; say why such records are not stock, e.g. 'company vehicle, not for sale'")
    return problems


def _regex_problems(where: str, pattern: str, example: str) -> list[str]:
    try:
        re.compile(pattern)
    except re.error as error:
        return [f"{where}: {pattern!r} is not a valid regular expression ({error}); Python re syntax, {example}"]
    return []


def _xpath_problems(where: str, expression: str, namespaces: dict[str, str], listed: bool) -> list[str]:
    """Whether `expression` compiles as the engine uses it (alone, inside string() for a scalar) and evaluates; one problem at most."""
    wrapped = [expression] if listed else [expression, f"string({expression})"]
    try:
        for text in wrapped:
            etree.XPath(text, namespaces=namespaces)(etree.Element("record"))
    except etree.XPathSyntaxError as error:
        names = re.findall(QNAME, _without_literals(expression))
        element = names[-1] if names else "Name"
        return [f"{where}: {expression!r} is not a valid XPath 1.0 expression ({error}); an attribute is written @{element.rpartition(':')[2]}, a child element {element}, see {XPATH_DOC}"]
    except etree.XPathEvalError as error:
        if "namespace prefix" in str(error):
            undeclared = sorted({prefix for prefix in re.findall(r"([A-Za-z_][\w.-]*):(?!:)", _without_literals(expression)) if prefix not in namespaces})
            declared = ", ".join(namespaces) or "none"
            named = ", ".join(undeclared) or "its prefix"
            return [
                f"{where}: {expression!r} is not a valid XPath 1.0 expression here ({error}: {named}); declare {named} under xml.namespaces (declared: {declared}) or write the name without a prefix, see {XPATH_DOC}"
            ]
        functions = "; XPath 1.0 functions only (string(), concat(), normalize-space(), ...)" if "function" in str(error) else ""
        return [f"{where}: {expression!r} is not a valid XPath 1.0 expression ({error}){functions}, see {XPATH_DOC}"]
    return []


def _without_literals(expression: str) -> str:
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", expression)


def load_profile(path: Path) -> MappingProfile:
    """The profile in `path`, parsed once per process for each version of the file (a group run loads it per dealer)."""
    stat = path.stat()
    return _load_profile(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _load_profile(path_text: str, mtime_ns: int, size: int) -> MappingProfile:
    path = Path(path_text)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path} is not a valid mapping profile:\n  (top level): must be a mapping of keys (name, format, files, fields, ...), got {type(raw).__name__}\n(the keys: {KEYS_DOC})")
    try:
        return MappingProfile.model_validate(raw)
    except ValidationError as error:
        problems = validation_problems(error)
        if not any(isinstance(item.get("ctx", {}).get("error"), ProfileProblems) for item in error.errors()):
            problems = _name_problems(raw) + problems  # a shape error stops the checks that name fields: every mistake at once
        raise ProfileError(f"{path} is not a valid mapping profile:\n" + "\n".join(f"  {problem}" for problem in problems) + f"\n(the keys: {KEYS_DOC})") from None


def validation_problems(error: ValidationError) -> list[str]:
    """Pydantic's errors as the profile's own key paths, with the closest key or value suggested; alternatives of one
    key (a name or a list of names) are said once."""
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        found = item.get("ctx", {}).get("error")
        if isinstance(found, ProfileProblems):
            for problem in found.problems:
                problems.setdefault(problem, [])
            continue
        where, model = _where(item["loc"])
        if item["type"] == "extra_forbidden":
            keys = [field.alias or name for name, field in model.model_fields.items()] if model else []
            message = f"unknown key{suggestion(str(item['loc'][-1]), keys)}"
        elif item["type"] == "missing":
            message = "missing; " + ("say why such records are not stock, e.g. reason: company vehicle, not for sale" if where.endswith(".reason") else "this key is required")
        elif item["type"] == "literal_error":
            expected = re.findall(r"'([^']*)'", item["ctx"]["expected"])
            message = f"{item['input']!r} is not one of {', '.join(expected)}{suggestion(str(item['input']), expected)}"
        elif item["type"] == "string_type":
            message = "should be text (quote it in the YAML: '...')"
        elif item["type"] == "list_type":
            message = "should be a list ([a, b])"
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.setdefault(where, []).append(message)
    # a union's alternatives: when one failed deeper (column[1] of a list), the other's "should be text" only confuses
    deeper = {where for where in problems if any(other != where and other.startswith((f"{where}[", f"{where}.")) for other in problems)}
    return [where if not messages else f"{where}: {' or '.join(dict.fromkeys(messages))}" for where, messages in problems.items() if where not in deeper]


def _where(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """A pydantic location as the profile's key path (fields.colour.column, skip[0].in[1]) and the model its last key
    was looked up in; the tags pydantic adds for the alternatives of a union (str, list[str]) are dropped."""
    text, shape, holder = "", MappingProfile, None
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
            shape = _model_or_container(typing.get_args(shape)[0]) if typing.get_origin(shape) is list else None
            continue
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            holder = shape
            field = next((f for n, f in shape.model_fields.items() if step in (n, f.alias)), None)
            shape = _model_or_container(field.annotation) if field else None
        elif typing.get_origin(shape) is dict:
            shape = _model_or_container(typing.get_args(shape)[1])
        else:
            continue  # a union's tag
        text += f".{step}" if text else str(step)
    return text or "(top level)", holder


def _model_or_container(annotation):
    """The model, dict or list inside an annotation (Optional and unions of a name and a list looked through)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else next((a for a in options if typing.get_origin(a) in (dict, list)), options[0] if options else None)
    return annotation


def find_profile(name: str, search_dirs: list[Path]) -> MappingProfile:
    for folder in search_dirs:
        candidate = folder / f"{name}.yaml"
        if candidate.exists():
            return load_profile(candidate)
    available = sorted({path.stem for folder in search_dirs if folder.is_dir() for path in folder.glob("*.yaml")})
    raise ProfileError(f"mapping profile '{name}' not found in {', '.join(str(d) for d in search_dirs)}{suggestion(name, available)}")
