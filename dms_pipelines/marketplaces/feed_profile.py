"""Feed profiles: the YAML that makes a plain CSV/TSV marketplace feed from canonical stock, and the one engine that turns a profile into a MarketplaceSpec."""

import difflib
import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dms_pipelines.config import CURRENCIES, DISTANCE_UNITS, Dealer, DealerMarketplace
from dms_pipelines.kernels.arrow_text import arrow_strings, nonempty_fields
from dms_pipelines.kernels.csv_bytes import FORMULA_START, delimited_bytes
from dms_pipelines.marketplaces import read_back
from dms_pipelines.marketplaces.base import (
    KEY,
    AccountFeed,
    FeedFile,
    MarketplaceSpec,
    clean_text,
    defuse_formula,
    format_numbers,
    list_item,
    list_joined,
    list_parts,
    listable,
    map_text,
    vehicle_urls,
)
from dms_pipelines.marketplaces.layout import RowFile, delimited
from dms_pipelines.stock.schema import FIELD_BY_NAME, PRIVATE_COLUMNS

FOLDER = Path(__file__).parent / "feed_profiles"  # the shipped profiles: package files, so they travel in the wheel
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
LIST_FIELDS = ("features", "image_urls")  # '|'-joined lists in the canonical stock: sent joined or one item at a time
PUBLIC_FIELDS = tuple(name for name in FIELD_BY_NAME if name not in PRIVATE_COLUMNS)
DEALER_ATTRIBUTES = (
    "id",
    "name",
    "phone",
    "website",
    "address.street",
    "address.city",
    "address.region",
    "address.postcode",
    "address.country",
    "address.one_line",
    "address.building_number",
    "address.street_name",
    "market.country",
    "market.currency",
    "market.distance_unit",
)
VEHICLE_URL = "vehicle_url"  # a template placeholder: the car's page on the dealer's website, from the dealer's urls templates
SOURCES = ("field", "value", "dealer", "account", "template")
TEXT_FORMATS = ("text", "upper", "lower")


class FeedProfileError(ValueError):
    """A feed profile cannot be used; the message names the profile file, the key and the problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _scalar_text(value):
    """A YAML number written where text is meant becomes that text; a YAML boolean (yes, no, on, off) must be quoted."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} reads as a YAML boolean: write it in quotes")
    return str(value) if isinstance(value, (int, float)) else value


class Source(Strict):
    """Where a cell's value comes from (exactly one of field, value, dealer, account, template) and how it is written."""

    field: str | None = None  # a canonical stock field
    value: str | None = None  # a constant ('' for an empty cell)
    dealer: str | None = None  # a dealer attribute (DEALER_ATTRIBUTES)
    account: str | None = None  # a setting of the dealer's account there (one of account_settings)
    template: str | None = None  # text with {placeholders}: canonical fields ({stock_id_lower}), dealer attributes, account settings
    format: str | None = None  # integer, decimal:N, number:<python format>, date:<strftime>, text, text:N, upper, lower
    map: dict[str, str] | None = None  # canonical value -> the marketplace's value (an unmapped value is left empty)
    join: str | None = None  # a list field: its items joined with this separator
    item: int | None = Field(default=None, ge=0)  # a list field: its item at this position

    _text_value = field_validator("value", mode="before")(_scalar_text)

    @field_validator("map", mode="before")
    @classmethod
    def _text_map(cls, value):
        if isinstance(value, dict):
            return {_scalar_text(key): _scalar_text(item) for key, item in value.items()}
        return value


class Column(Source):
    """One column of the file, in order: its source, and the rules the marketplace sets for it."""

    column: str
    required: bool = False  # a vehicle without it is held back, with the reason
    recommended: bool = False  # counted in the listing's completeness score
    max_length: int | None = Field(default=None, ge=1)  # a longer value holds the vehicle back (use format text:N to cut instead)
    enum: list[str] | None = None  # the only values the marketplace accepts
    fallback: Source | None = None  # where the value comes from when the source leaves it empty


class FileSpec(Strict):
    name: str  # placeholders: {dealer_id} and the account settings (none for an account-wide file)
    delimiter: Literal[",", "\t"] = ","
    encoding: Literal["utf-8"] = "utf-8"


class DealerFile(Strict):
    """A one-row file describing the dealer, sent beside the vehicle file (its columns come from the dealer and its account)."""

    name: str
    columns: list[Column] = Field(min_length=1)


class Profile(Strict):
    name: str
    description: str = ""
    source: str  # the address of the marketplace's published specification
    scope: Literal["dealer", "account"] = "dealer"
    file: FileSpec
    dealer_file: DealerFile | None = None
    account_settings: list[str] = Field(default_factory=list)
    list_reserved_as_pending: bool = False  # True: the feed itself can say 'reserved', so a reserved car stays listed
    key: str  # the column naming the vehicle: our stock number
    dealer_column: str | None = None  # account scope: the column naming the dealer in the shared file
    sort: list[str] | None = None  # the rows' order (ties in stock-number order); default: the key column
    min_images: int = Field(default=0, ge=0)
    images_column: str | None = None
    currencies: list[str] = Field(default_factory=lambda: ["GBP"])  # the currencies its prices may be in (a dealer's market.currency)
    distance_units: list[str] = Field(default_factory=lambda: ["miles"])  # the odometer units it takes (a dealer's market.distance_unit)
    columns: list[Column] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------------- loading and checking


def load_feed_profile(path: Path) -> MarketplaceSpec:
    """The marketplace the feed profile in `path` defines (parsed once per version of the file)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise FeedProfileError(f"{path}: cannot read the feed profile: {error.strerror or error}") from None
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


def builtin_feed_profiles() -> list[MarketplaceSpec]:
    """The marketplaces defined by the feed profiles shipped in the package (feed_profiles/*.yaml), by file name."""
    specs: dict[str, Path] = {}
    loaded = []
    for path in sorted(FOLDER.glob("*.yaml")):
        spec = load_feed_profile(path)
        if spec.name in specs:
            raise FeedProfileError(f"{path}: name {spec.name} is used by {specs[spec.name].name} too")
        specs[spec.name] = path
        loaded.append(spec)
    return loaded


@lru_cache(maxsize=64)
def _load(path_text: str, mtime_ns: int, size: int) -> MarketplaceSpec:
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except UnicodeDecodeError as error:
        raise FeedProfileError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        raise FeedProfileError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise FeedProfileError(f"{path}: a feed profile is a mapping of keys (name, file, key, columns, ...), not {type(raw).__name__}")
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as error:
        raise FeedProfileError(f"{path} is not a valid feed profile:\n" + "\n".join(_pydantic_problems(error, raw))) from None
    problems = _check(profile)
    if problems:
        raise FeedProfileError(f"{path} is not a valid feed profile:\n" + "\n".join(f"  {problem}" for problem in problems))
    return _spec(profile, hashlib.sha256(text.encode("utf-8")).hexdigest())


def _pydantic_problems(error: ValidationError, raw: dict) -> list[str]:
    problems = []
    for item in error.errors():
        where = _where(item["loc"], raw)
        if item["type"] == "extra_forbidden":
            model = _model_at(item["loc"][:-1])
            hint = _suggest(str(item["loc"][-1]), list(model.model_fields)) if model else ""
            problems.append(f"  {where}: unknown key{hint}")
        else:
            problems.append(f"  {where}: {item['msg'].removeprefix('Value error, ')}")
    return problems


def _where(loc: tuple, raw) -> str:
    """A pydantic location as the profile's own path, a column named by its column: columns[3] (Price).format."""
    parts, node = [], raw
    for step in loc:
        if isinstance(step, int):
            label = f"[{step}]"
            if isinstance(node, list) and step < len(node):
                node = node[step]
                if isinstance(node, dict) and "column" in node:
                    label += f" ({node['column']})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _model_at(loc: tuple):
    model = Profile
    for step in loc:
        if isinstance(step, int):
            continue
        annotation = model.model_fields.get(str(step))
        if annotation is None:
            return None
        candidates = [Column, Source, FileSpec, DealerFile]
        text = str(annotation.annotation)
        model = next((c for c in candidates if c.__name__ in text), None)
        if model is None:
            return None
    return model


def _suggest(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _check(profile: Profile) -> list[str]:
    """Every mistake the YAML's shape cannot show, each naming its key: private or unknown fields, formats, placeholders."""
    problems: list[str] = []
    if not NAME.match(profile.name):
        problems.append(f"name: {profile.name!r} must be lower-case letters, digits and '_', starting with a letter")
    if not re.match(r"^https?://\S+$", profile.source):
        problems.append(f"source: {profile.source!r} must be the http(s) address of the marketplace's published specification")
    for setting in profile.account_settings:
        if not NAME.match(setting) or setting == "list_reserved":
            problems.append(f"account_settings: {setting!r} must be a lower-case identifier other than list_reserved")
    for key, values, known in (("currencies", profile.currencies, CURRENCIES), ("distance_units", profile.distance_units, DISTANCE_UNITS)):
        if not values:
            problems.append(f"{key}: lists none (known: {', '.join(known)})")
        for value in values:
            if value not in known:
                problems.append(f"{key}: unknown {value!r}{_suggest(value, known)}; known: {', '.join(known)}")
    names = [column.column for column in profile.columns]
    for index, column in enumerate(profile.columns):
        problems += _check_column(profile, f"columns[{index}] ({column.column})", column, profile.file.delimiter, vehicle=True)
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"columns: {name} appears more than once")
    problems += _check_key_and_order(profile, names)
    problems += _check_names(profile)
    if profile.dealer_file is not None:
        if profile.scope == "account":
            problems.append("dealer_file: only a per-dealer feed (scope: dealer) has a dealer file")
        dealer_names = [column.column for column in profile.dealer_file.columns]
        for index, column in enumerate(profile.dealer_file.columns):
            problems += _check_column(profile, f"dealer_file.columns[{index}] ({column.column})", column, profile.file.delimiter, vehicle=False)
        for name in sorted({name for name in dealer_names if dealer_names.count(name) > 1}):
            problems.append(f"dealer_file.columns: {name} appears more than once")
    return problems


def _check_key_and_order(profile: Profile, names: list[str]) -> list[str]:
    problems = []
    by_name = {column.column: column for column in profile.columns}
    key = by_name.get(profile.key)
    if key is None:
        problems.append(f"key: {profile.key} is not one of the columns{_suggest(profile.key, names)}")
    elif key.field != "stock_id" or key.map or key.format or key.fallback:
        problems.append(f"key: column {profile.key} must be the stock number as it stands (field: stock_id, no format, map or fallback)")
    for name in profile.sort or []:
        if name not in by_name:
            problems.append(f"sort: {name} is not one of the columns{_suggest(name, names)}")
    if profile.images_column is not None:
        images = by_name.get(profile.images_column)
        if images is None:
            problems.append(f"images_column: {profile.images_column} is not one of the columns{_suggest(profile.images_column, names)}")
        elif images.field != "image_urls":
            problems.append(f"images_column: column {profile.images_column} must come from field image_urls")
    elif profile.min_images:
        problems.append("min_images: needs images_column (the column the images are counted in)")
    if profile.scope == "account":
        column = by_name.get(profile.dealer_column or "")
        if profile.dealer_column is None:
            problems.append("dealer_column: an account-wide file needs the column naming the dealer of each row")
        elif column is None:
            problems.append(f"dealer_column: {profile.dealer_column} is not one of the columns{_suggest(profile.dealer_column, names)}")
        elif _uses_vehicle(column) or (column.fallback is not None and _uses_vehicle(column.fallback)):
            problems.append(f"dealer_column: column {profile.dealer_column} must come from the dealer or its account, not a vehicle's field")
    elif profile.dealer_column is not None:
        problems.append("dealer_column: only an account-wide file (scope: account) names the dealer in a column")
    return problems


def _check_names(profile: Profile) -> list[str]:
    """File names: placeholders the dealer's feed can fill, no folders, and a vehicle file told apart from the dealer file."""
    problems = []
    allowed = ("dealer_id", *profile.account_settings) if profile.scope == "dealer" else ()
    for key, name in (("file.name", profile.file.name), ("dealer_file.name", profile.dealer_file.name if profile.dealer_file else None)):
        if name is None:
            continue
        if any(part in name for part in ("/", "\\", "..")) or name.startswith(".") or not name.strip():
            problems.append(f"{key}: {name!r} must be a plain file name (no folders, not hidden)")
        for placeholder in _placeholders(name):
            if placeholder not in allowed:
                where = "an account-wide file's name takes no placeholders" if profile.scope == "account" else f"placeholders are {', '.join(allowed)}"
                problems.append(f"{key}: unknown placeholder {{{placeholder}}} ({where}){_suggest(placeholder, allowed)}")
        if name.count("{") != name.count("}"):
            problems.append(f"{key}: {name!r} has an unmatched brace")
    if profile.dealer_file is not None and not problems:
        vehicles, dealers = _name_pattern(profile.file.name), _name_pattern(profile.dealer_file.name)
        samples = {placeholder: "sample" for placeholder in allowed}
        if dealers.fullmatch(_fill(profile.file.name, samples)) or vehicles.fullmatch(_fill(profile.dealer_file.name, samples)):
            problems.append(f"dealer_file.name: {profile.dealer_file.name!r} cannot be told apart from file.name {profile.file.name!r}")
    return problems


def _check_column(profile: Profile, where: str, column: Column, delimiter: str, vehicle: bool) -> list[str]:
    problems = []
    name = column.column
    if not name or name != name.strip() or any(c in name for c in (delimiter, '"', "\r", "\n")) or name.startswith(FORMULA_START) or name == KEY:
        problems.append(f"{where}.column: {name!r} cannot be a header cell (no delimiter, quote, line break, formula start or edge spaces)")
    problems += _check_source(profile, where, column, vehicle)
    if column.fallback is not None:
        problems += _check_source(profile, f"{where}.fallback", column.fallback, vehicle)
    if column.enum is not None:
        if not column.enum:
            problems.append(f"{where}.enum: lists no value")
        for target in sorted(set((column.map or {}).values()) - set(column.enum)):
            problems.append(f"{where}.map: {target!r} is not one of its enum ({'/'.join(column.enum)})")
    if not vehicle and (column.enum or column.max_length or column.recommended):
        problems.append(f"{where}: a dealer file's column takes no enum, max_length or recommended")
    return problems


def _check_source(profile: Profile, where: str, source: Source, vehicle: bool) -> list[str]:
    given = [name for name in SOURCES if getattr(source, name) is not None]
    if len(given) != 1:
        return [f"{where}: needs exactly one of {', '.join(SOURCES)} (has {', '.join(given) or 'none'})"]
    problems = []
    kind = given[0]
    if kind == "field":
        if not vehicle:
            return [f"{where}.field: a dealer file has no vehicles; use dealer, account, value or template"]
        problem = _field_problem(source.field)
        if problem:
            return [f"{where}.field: {problem}"]
        problems += _check_field_source(where, source)
    else:
        for key in ("map", "join", "item"):
            if getattr(source, key) is not None:
                problems.append(f"{where}.{key}: only for a canonical field")
        if source.format is not None and source.format not in TEXT_FORMATS and not source.format.startswith("text"):
            problems.append(f"{where}.format: {source.format} is for a field; {'an' if kind[0] in 'aeiou' else 'a'} {kind} takes {', '.join(TEXT_FORMATS)} or text:N")
        elif source.format is not None:
            problems += _format_problems(where, source.format, "string")
    if kind == "dealer" and source.dealer not in DEALER_ATTRIBUTES:
        problems.append(f"{where}.dealer: unknown dealer attribute {source.dealer}{_suggest(source.dealer, DEALER_ATTRIBUTES)}; known: {', '.join(DEALER_ATTRIBUTES)}")
    if kind == "account" and source.account not in profile.account_settings:
        problems.append(f"{where}.account: {source.account} is not one of account_settings ({', '.join(profile.account_settings) or 'none'})")
    if kind == "template":
        problems += _template_problems(profile, where, source.template, vehicle)
    return problems


def _field_problem(name: str) -> str | None:
    """Why a canonical field cannot be named (private, unknown, a list used as text), or None."""
    if name in PRIVATE_COLUMNS:
        return f"{name} is private (the dealer's own data) and can never leave the dealership"
    if name not in FIELD_BY_NAME:
        close = difflib.get_close_matches(name, list(FIELD_BY_NAME), n=1)
        if close and close[0] in PRIVATE_COLUMNS:
            return f"unknown canonical field {name}; the nearest, {close[0]}, is private and can never be sent"
        return f"unknown canonical field {name}{_suggest(name, PUBLIC_FIELDS)}"
    return None


def _check_field_source(where: str, source: Source) -> list[str]:
    problems = []
    spec = FIELD_BY_NAME[source.field]
    is_list = source.field in LIST_FIELDS
    if is_list and (source.join is None) == (source.item is None):
        problems.append(f"{where}: {source.field} is a list: give join (a separator) or item (a position), one of them")
    if not is_list and (source.join is not None or source.item is not None):
        problems.append(f"{where}: join and item are for the list fields ({', '.join(LIST_FIELDS)})")
    if source.map is not None:
        if spec.allowed:
            for value in sorted(set(source.map) - set(spec.allowed)):
                problems.append(f"{where}.map: {value!r} is not a value of {source.field}{_suggest(value, spec.allowed)} ({'/'.join(spec.allowed)})")
        if source.format is not None and not source.format.startswith(TEXT_FORMATS):
            problems.append(f"{where}.format: a mapped value is text: {', '.join(TEXT_FORMATS)} or text:N")
    kind = "string" if is_list or source.map is not None else spec.dtype
    if source.format is not None:
        if source.map is None or source.format.startswith(TEXT_FORMATS):
            problems += _format_problems(where, source.format, kind)
    elif kind == "date":
        problems.append(f"{where}.format: {source.field} is a date: give date:<strftime pattern>, e.g. date:%Y-%m-%d")
    elif kind == "Float64":
        problems.append(f"{where}.format: {source.field} is a decimal number: give integer, decimal:N or number:<format>")
    return problems


def _format_problems(where: str, text: str, kind: str) -> list[str]:
    """A format's spelling, and whether it suits the value's kind (string, Int64, Float64, date, bool)."""
    name, _, argument = text.partition(":")
    numeric, known = kind in ("Int64", "Float64"), ("integer", "decimal", "number", "date", "text", "upper", "lower")
    if name not in known:
        return [f"{where}.format: unknown format {text!r}{_suggest(name, known)}; known: integer, decimal:N, number:<format>, date:<strftime>, text, text:N, upper, lower"]
    if name in ("integer", "upper", "lower") and argument:
        return [f"{where}.format: {name} takes no argument"]
    if name in ("integer", "decimal", "number") and not numeric:
        return [f"{where}.format: {name} is for a number; this value is {kind}"]
    if name == "date" and kind != "date":
        return [f"{where}.format: date is for a date field; this value is {kind}"]
    if name in ("text", "upper", "lower") and kind in ("Int64", "Float64", "date"):
        return [f"{where}.format: {name} is for text; this value is {kind} (give integer, decimal:N, number:<format> or date:<pattern>)"]
    if name == "decimal" and not argument.isdigit():
        return [f"{where}.format: decimal needs the number of places, e.g. decimal:2"]
    if name == "text" and argument and not (argument.isdigit() and int(argument) > 0):
        return [f"{where}.format: text:N needs a positive length, e.g. text:100"]
    if name == "number":
        try:
            argument.format(1.5)
        except (ValueError, IndexError, KeyError):
            return [f"{where}.format: number needs a Python format with one {{}}, e.g. number:{{:.2f}} GBP"]
        if argument.count("{") != 1:
            return [f"{where}.format: number needs a Python format with one {{}}, e.g. number:{{:.2f}} GBP"]
    if name == "date" and (not argument or "%" not in argument):
        return [f"{where}.format: date needs a strftime pattern, e.g. date:%Y-%m-%d"]
    return []


def _template_problems(profile: Profile, where: str, template: str, vehicle: bool) -> list[str]:
    problems = []
    if template.count("{") != template.count("}"):
        problems.append(f"{where}.template: {template!r} has an unmatched brace")
    for placeholder in _placeholders(template):
        resolved = _placeholder(placeholder, profile.account_settings)
        if resolved is None:
            base = placeholder.removesuffix("_lower").removesuffix("_upper")
            if base in PRIVATE_COLUMNS:
                problems.append(f"{where}.template: {{{placeholder}}} names {base}, which is private and can never leave the dealership")
                continue
            known = [*PUBLIC_FIELDS, *DEALER_ATTRIBUTES, VEHICLE_URL, *profile.account_settings]
            problems.append(f"{where}.template: unknown placeholder {{{placeholder}}}{_suggest(placeholder, known)}")
            continue
        kind, name, _ = resolved
        if kind == VEHICLE_URL and not vehicle:
            problems.append(f"{where}.template: {{{placeholder}}}: a dealer file has no vehicles")
        if kind == "field":
            if not vehicle:
                problems.append(f"{where}.template: {{{placeholder}}}: a dealer file has no vehicles")
            elif name in LIST_FIELDS or FIELD_BY_NAME[name].dtype in ("Float64", "bool"):
                problems.append(f"{where}.template: {{{placeholder}}} is a list or a decimal number: give it its own column with a format")
    return problems


def _placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def _placeholder(placeholder: str, settings) -> tuple[str, str, str] | None:
    """What a template placeholder names: ('field', name, case), ('dealer', attribute, ''), ('account', setting, ''),
    ('vehicle_url', 'vehicle_url', ''), or None."""
    if placeholder == VEHICLE_URL:
        return VEHICLE_URL, VEHICLE_URL, ""
    for case in ("lower", "upper", ""):
        base = placeholder.removesuffix(f"_{case}") if case else placeholder
        if (not case or base != placeholder) and base in FIELD_BY_NAME and base not in PRIVATE_COLUMNS:
            return "field", base, case
    if placeholder in DEALER_ATTRIBUTES:
        return "dealer", placeholder, ""
    if placeholder in settings:
        return "account", placeholder, ""
    return None


def _uses_vehicle(source: Source) -> bool:
    if source.field is not None:
        return True
    return source.template is not None and any((_placeholder(p, ()) or ("",))[0] in ("field", VEHICLE_URL) for p in _placeholders(source.template))


# ---------------------------------------------------------------------------------------------------- the engine


def dealer_attributes(dealer: Dealer) -> dict[str, str | None]:
    """The dealer attributes a profile may name (the street split into a building number and a street name when it starts with one)."""
    street = dealer.address.street
    number, _, rest = street.partition(" ")
    has_number = number[:1].isdigit()
    return {
        "id": dealer.id,
        "name": dealer.name,
        "phone": dealer.phone,
        "website": dealer.website,
        "address.street": street,
        "address.city": dealer.address.city,
        "address.region": dealer.address.region,
        "address.postcode": dealer.address.postcode,
        "address.country": dealer.address.country,
        "address.one_line": dealer.address.one_line(),
        "address.building_number": number if has_number else None,
        "address.street_name": rest if has_number else street,
        "market.country": dealer.market.country,
        "market.currency": dealer.market.currency,
        "market.distance_unit": dealer.market.distance_unit,
    }


def _constant(value: str | None, index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA if value in (None, "") else value, index=index, dtype="string")


def _formatted(values: pd.Series, text: str | None) -> pd.Series:
    if text is None:
        return values.astype("string")
    name, _, argument = text.partition(":")
    if name == "integer":
        return values.astype("Float64").round().astype("Int64").astype("string")
    if name == "decimal":
        return format_numbers(values, "{:." + argument + "f}")
    if name == "number":
        return format_numbers(values, argument)
    if name == "date":
        return values.dt.strftime(argument).astype("string")
    if name == "text":
        return clean_text(values, int(argument) if argument else None)
    text_values = values.astype("string")
    return text_values.str.upper() if name == "upper" else text_values.str.lower()


def _source_values(source: Source, settings, cars: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.Series:
    """One source's values for every car (string dtype, missing where it gives nothing), vectorised."""
    index = cars.index
    if source.field is not None:
        values = cars[source.field]
        if source.field in LIST_FIELDS:
            parts = list_parts(values)
            values = list_item(parts, source.item, index) if source.item is not None else list_joined(parts, source.join, index)
            values = values.mask(values == "", pd.NA)
        if source.map is not None:
            values = map_text(values.astype("string"), source.map)
        return _formatted(values, source.format)
    if source.template is not None:
        return _formatted(_template(source.template, settings, cars, dealer, account), source.format)
    if source.value is not None:
        scalar = source.value
    elif source.dealer is not None:
        scalar = dealer_attributes(dealer)[source.dealer]
    else:
        scalar = account.setting(source.account)
    return _formatted(_constant(scalar, index), source.format)


def _template(template: str, settings, cars: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.Series:
    """The template filled per car: missing where a placeholder it names is missing. In a template, {website} has no trailing '/'."""
    index = cars.index
    result = pd.Series("", index=index, dtype="string")
    position = 0
    attributes = dealer_attributes(dealer)
    for match in PLACEHOLDER.finditer(template):
        result = result + template[position : match.start()]
        kind, name, case = _placeholder(match.group(1), settings)
        if kind == VEHICLE_URL:
            part = vehicle_urls(dealer, cars)
        elif kind == "field":
            column = cars[name]
            part = column.dt.strftime("%Y-%m-%d").astype("string") if FIELD_BY_NAME[name].dtype == "date" else column.astype("string")
            part = part.str.lower() if case == "lower" else part.str.upper() if case == "upper" else part
        else:
            scalar = attributes[name] if kind == "dealer" else account.setting(name)
            if kind == "dealer" and name == "website" and scalar is not None:
                scalar = scalar.rstrip("/")
            part = _constant(scalar, index)
        result = result + part
        position = match.end()
    return result + template[position:]


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.fillna("").str.strip() == "")


def _column_values(column: Column, settings, cars: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.Series:
    values = _source_values(column, settings, cars, dealer, account)
    if column.fallback is not None:
        empty = _blank(values)
        if empty.any():
            values = values.mask(empty, _source_values(column.fallback, settings, cars, dealer, account))
    return values.astype("string")


def _render(profile: Profile, stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    """Rows of the feed, allowlisted: a canonical field the profile does not name cannot reach the marketplace."""
    cars = stock.loc[listable(stock, account, profile.list_reserved_as_pending)].reset_index(drop=True)
    columns = {KEY: cars["stock_id"].astype("string")}
    for column in profile.columns:
        columns[column.column] = _column_values(column, profile.account_settings, cars, dealer, account)
    return pd.DataFrame(columns, index=cars.index)


def _dealer_value(column: Column, settings, dealer: Dealer, account: DealerMarketplace) -> str:
    """A dealer-level column's one value (as the file writes it: a formula-like value defused)."""
    value = _column_values(column, settings, pd.DataFrame(index=pd.RangeIndex(1)), dealer, account).iloc[0]
    return "" if value is pd.NA else defuse_formula(str(value))


def _fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _name_pattern(template: str) -> re.Pattern:
    parts = PLACEHOLDER.split(template)
    return re.compile("".join(re.escape(part) if n % 2 == 0 else ".+" for n, part in enumerate(parts)))


def _file_name(profile: Profile, template: str, dealer: Dealer, account: DealerMarketplace) -> str:
    values = {"dealer_id": dealer.id}
    for placeholder in _placeholders(template):
        if placeholder != "dealer_id":
            setting = account.setting(placeholder)
            if not setting:
                raise ValueError(f"feed profile {profile.name}: dealer {dealer.id} sets no {placeholder} on its account, which the file name {template!r} needs")
            values[placeholder] = setting
    name = _fill(template, values)
    if any(part in name for part in ("/", "\\", "\x00")) or name.startswith(".") or ".." in name:
        raise ValueError(f"feed profile {profile.name}: dealer {dealer.id}'s file name {name!r} is not a plain file name")
    return name


def _dealer_file_bytes(profile: Profile, dealer: Dealer, account: DealerMarketplace) -> bytes:
    """The dealer file: a header and the dealer's one row, formula-like cells defused."""
    frame = pd.DataFrame(index=pd.RangeIndex(1))
    cells = {}
    for column in profile.dealer_file.columns:
        values = _column_values(column, profile.account_settings, frame, dealer, account)
        if column.required and _blank(values).iloc[0]:
            raise ValueError(f"feed profile {profile.name}: dealer {dealer.id} has no value for {column.column}, which the dealer file requires")
        cells[column.column] = values
    return delimited_bytes(cells, profile.file.delimiter, defuse_formulas=True)


def _image_count(column: Column) -> Callable[[pd.DataFrame], pd.Series]:
    def count(items: pd.DataFrame) -> pd.Series:
        values = items[column.column]
        if column.item is not None:
            return values.notna().astype(int)
        if len(column.join) == 1 and column.join.isascii():
            return pd.Series(nonempty_fields(arrow_strings(values), ord(column.join)), index=items.index)
        return values.fillna("").map(lambda text: sum(1 for part in text.split(column.join) if part)).astype(int)

    return count


@dataclass(frozen=True)
class _Layout:
    rows: RowFile
    names: tuple[str, ...]
    header: bytes


def _layout(profile: Profile) -> _Layout:
    names = tuple(column.column for column in profile.columns)
    sort = tuple(profile.sort or [profile.key])
    rows = delimited(sort, lambda items, width: list(names), profile.file.delimiter)
    return _Layout(rows, names, (profile.file.delimiter.join(names) + "\r\n").encode("utf-8"))


def _spec(profile: Profile, fingerprint: str) -> MarketplaceSpec:
    layout = _layout(profile)
    file_format = "tsv" if profile.file.delimiter == "\t" else "csv"
    by_name = {column.column: column for column in profile.columns}
    delimiter = profile.file.delimiter
    common = dict(
        name=profile.name,
        mode="snapshot",
        render=lambda stock, dealer, account: _render(profile, stock, dealer, account),
        required=tuple(column.column for column in profile.columns if column.required),
        recommended=tuple(column.column for column in profile.columns if column.recommended and not column.required),
        enums={column.column: tuple(column.enum) for column in profile.columns if column.enum},
        max_lengths={column.column: column.max_length for column in profile.columns if column.max_length},
        min_images=profile.min_images,
        image_count=_image_count(by_name[profile.images_column]) if profile.images_column else None,
        formats=(file_format,),
        account_settings=tuple(profile.account_settings),
        description=profile.description.strip() or f"{profile.name}: a {file_format.upper()} feed defined by a feed profile ({profile.source})",
        fingerprint=fingerprint,
        currencies=tuple(profile.currencies),
        distance_units=tuple(profile.distance_units),
    )
    if profile.scope == "account":
        dealer_column = by_name[profile.dealer_column]
        part = replace(layout.rows, head=lambda rows, names: b"")
        return MarketplaceSpec(
            **common,
            read_back=lambda name, content: read_back.delimited(content, delimiter, (profile.dealer_column, profile.key)),
            files=lambda dealer, account, requested: [FeedFile(f"rows.{file_format}", rows=part)],
            account_file=AccountFeed(
                name=lambda requested: profile.file.name,
                header=lambda requested: layout.header,
                columns=layout.names,
                delimiter=lambda requested: delimiter,
                part_key=lambda dealer, account: f"{_dealer_value(dealer_column, profile.account_settings, dealer, account)}|",
            ),
        )
    dealer_pattern = _name_pattern(profile.dealer_file.name) if profile.dealer_file else None

    def files(dealer: Dealer, account: DealerMarketplace, requested: str) -> list[FeedFile]:
        vehicle_file = FeedFile(_file_name(profile, profile.file.name, dealer, account), rows=layout.rows)
        if profile.dealer_file is None:
            return [vehicle_file]
        dealer_file = FeedFile(
            _file_name(profile, profile.dealer_file.name, dealer, account),
            build=lambda items, dealer, account: [_dealer_file_bytes(profile, dealer, account)],
            uses_items=False,
        )
        return [dealer_file, vehicle_file]

    def read(name: str, content: bytes):
        if dealer_pattern is not None and dealer_pattern.fullmatch(name):
            return None  # the dealer file: compared whole
        return read_back.delimited(content, delimiter, (profile.key,))

    return MarketplaceSpec(**common, read_back=read, files=files)
