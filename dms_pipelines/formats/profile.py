"""Mapping profiles: the YAML that tells an engine how a vendor's layout maps onto canonical fields."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dms_pipelines.sources.base import matches_any
from dms_pipelines.sources.compressed import inner_name
from dms_pipelines.stock.schema import FIELD_BY_NAME


class ProfileError(Exception):
    """A mapping profile cannot be used; the message names the profile file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMapping(Strict):
    column: str | None = None  # CSV header name
    xpath: str | None = None  # XML, relative to the record element
    type: Literal["string", "integer", "decimal", "money", "date", "boolean", "list", "registration"] = "string"
    formats: list[str] = Field(default_factory=list)  # date formats, tried in order
    map: dict[str, str] | None = None  # source value -> canonical value, case-insensitive
    separator: str | None = None  # for type list
    default: str | None = None  # used when the source value is empty
    optional: bool = False  # the column may be absent from the file


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
    encoding: str = "auto"
    csv: CsvDialect | None = None
    xml: XmlLayout | None = None
    files: FilePatterns
    fields: dict[str, FieldMapping]
    constants: dict[str, str] = Field(default_factory=dict)  # canonical field -> fixed value for every row
    ignored_columns: list[str] = Field(default_factory=list)  # columns the layout has and we deliberately do not read

    @model_validator(mode="after")
    def _consistent(self):
        if self.format == "csv" and self.csv is None:
            raise ValueError("format csv needs a 'csv' section with the dialect (delimiter, quotechar); no sniffing")
        if self.format == "xml" and self.xml is None:
            raise ValueError("format xml needs an 'xml' section with the record tag")
        for name, mapping in self.fields.items():
            if name not in FIELD_BY_NAME or name == "dealer_id":
                raise ValueError(f"fields.{name}: not a canonical field")
            if self.format == "csv" and not mapping.column:
                raise ValueError(f"fields.{name}: needs 'column' in a CSV profile")
            if self.format == "xml" and not mapping.xpath:
                raise ValueError(f"fields.{name}: needs 'xpath' in an XML profile")
        for name in self.constants:
            if name not in FIELD_BY_NAME:
                raise ValueError(f"constants.{name}: not a canonical field")
        return self

    def export_kind(self, file_name: str) -> str | None:
        """'full', 'delta', or None when the name matches neither pattern list (a .gz or .zip suffix is looked through)."""
        file_name = inner_name(file_name)
        if matches_any(file_name, self.files.delta):
            return "delta"
        if matches_any(file_name, self.files.full):
            return "full"
        return None

    def required_columns(self) -> list[str]:
        return [m.column for m in self.fields.values() if m.column and not m.optional]


def load_profile(path: Path) -> MappingProfile:
    """The profile in `path`, parsed once per process for each version of the file (a group run loads it per dealer)."""
    stat = path.stat()
    return _load_profile(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _load_profile(path_text: str, mtime_ns: int, size: int) -> MappingProfile:
    path = Path(path_text)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return MappingProfile.model_validate(raw)
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        problems = [f"  {'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg'].removeprefix('Value error, ')}" for item in error.errors()]
        raise ProfileError(f"{path} is not a valid mapping profile:\n" + "\n".join(problems)) from None


def find_profile(name: str, search_dirs: list[Path]) -> MappingProfile:
    for folder in search_dirs:
        candidate = folder / f"{name}.yaml"
        if candidate.exists():
            return load_profile(candidate)
    raise ProfileError(f"mapping profile '{name}' not found in {', '.join(str(d) for d in search_dirs)}")
