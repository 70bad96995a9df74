"""The typed configuration model and its loader, with errors that name the key and the problem."""

import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dms_pipelines.paths import DataPaths, config_path, data_root

IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(f"must be the NAME of an environment variable (like DMS_LEEDS_SFTP_KEY), not a secret itself; got a value of {len(value)} characters")
    return value


class Address(Strict):
    street: str
    city: str
    postcode: str
    region: str | None = None
    country: str = "GB"

    def one_line(self) -> str:
        parts = [self.street, self.city, self.region, self.postcode, "United Kingdom" if self.country == "GB" else self.country]
        return ", ".join(p for p in parts if p)


class LocalInboxSource(Strict):
    kind: Literal["local_inbox"]
    path: str | None = None  # default: inbox/<dealer id>
    stability_seconds: float = Field(default=0.0, ge=0)
    marker_pattern: str | None = None


class SftpConnection(Strict):
    """How to reach an SFTP folder: shared by DMS sources and marketplace destinations."""

    kind: Literal["sftp"]
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    username: str
    known_hosts: str
    remote_dir: str = "."
    private_key_path: str | None = None
    private_key_env: str | None = None
    password_env: str | None = None
    connect_timeout: float = Field(default=15.0, gt=0)
    channel_timeout: float = Field(default=30.0, gt=0)
    transfer_timeout: float = Field(default=600.0, gt=0)
    keepalive_interval: int = Field(default=30, ge=0)

    _check_key_env = field_validator("private_key_env", "password_env")(_env_name)

    @model_validator(mode="after")
    def _needs_credentials(self):
        if not (self.private_key_path or self.private_key_env or self.password_env):
            raise ValueError("needs one of private_key_path, private_key_env or password_env")
        return self


class SftpSource(SftpConnection):
    patterns: list[str] = Field(default_factory=lambda: ["*"])
    stability_seconds: float = Field(default=30.0, ge=0)
    marker_pattern: str | None = None
    after_fetch: Literal["keep", "move", "delete"] = "keep"
    move_to: str | None = None

    @model_validator(mode="after")
    def _move_needs_a_folder(self):
        if self.after_fetch == "move" and not self.move_to:
            raise ValueError("after_fetch: move needs move_to (a remote folder)")
        return self
        return self


SourceConfig = Annotated[Union[LocalInboxSource, SftpSource], Field(discriminator="kind")]


class DealerMarketplace(BaseModel):
    """A dealer's account on one marketplace: whether a reserved car stays listed where the marketplace cannot say
    'pending', and the keys that marketplace declares as its own (MarketplaceSpec.account_settings), checked against it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    list_reserved: bool = True

    def setting(self, name: str, default: str | None = None) -> str | None:
        """One of the marketplace's own keys, or `default` when the dealer's account does not set it."""
        value = (self.model_extra or {}).get(name)
        return default if value is None else str(value)


class Dealer(Strict):
    id: str
    name: str
    address: Address
    phone: str
    website: str
    source: SourceConfig
    profile: str
    marketplaces: dict[str, DealerMarketplace] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("must be lower-case letters, digits, '-' or '_' (it names folders and Dagster partitions)")
        return value


class LocalDestination(Strict):
    kind: Literal["local"]
    path: str  # folder, relative to the data root unless absolute


class HttpApiDestination(Strict):
    kind: Literal["http_api"]
    base_url: str
    base_url_env: str | None = None  # name of a variable that, when set (non-empty), gives the base URL instead of base_url
    token_env: str  # name of the variable holding the API token
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    max_retry_delay_seconds: float = Field(default=30.0, gt=0)

    _check_env = field_validator("token_env", "base_url_env")(_env_name)

    def resolved_base_url(self, environ=None) -> str:
        """The URL to call: the value of base_url_env when that variable is set and non-empty, else base_url."""
        environ = os.environ if environ is None else environ
        value = environ.get(self.base_url_env) if self.base_url_env else None
        if not value:
            return self.base_url
        from urllib.parse import urlsplit

        try:
            parsed = urlsplit(value)
            parsed.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment or "@" in parsed.netloc:
            shown = "a value carrying credentials" if parsed is not None and "@" in parsed.netloc else repr(value)
            raise ConfigError(
                f"marketplaces.*.destination.base_url_env: environment variable {self.base_url_env} must hold an http(s) URL "
                f"like http://127.0.0.1:8765 (no query, fragment or credentials); got {shown}"
            )
        return value


class SftpUploadDestination(SftpConnection):
    """A marketplace's SFTP drop (uploads go to a temporary name and are renamed into place)."""


DestinationConfig = Annotated[Union[LocalDestination, SftpUploadDestination, HttpApiDestination], Field(discriminator="kind")]


class Marketplace(Strict):
    destination: DestinationConfig
    file_format: Literal["csv", "tsv", "json", "xml"] | None = None


class Validation(Strict):
    min_images: int = Field(default=6, ge=0)
    min_year: int = Field(default=1950, ge=1886)
    max_future_years: int = Field(default=1, ge=0)
    placeholder_prices: list[float] = Field(default_factory=lambda: [1, 9999, 99999, 123456, 999999])
    min_full_export_share: float = Field(default=0.7, ge=0, le=1)
    pass_rate_warning: float = Field(default=0.9, ge=0, le=1)
    price_outlier_share: float = Field(default=0.4, ge=0, le=1)  # warn below this share of the peer median; 0 turns it off
    price_outlier_min_peers: int = Field(default=5, ge=2)
    max_uncompressed_mb: int = Field(default=2048, ge=1)  # cap on a .gz/.zip export's expanded size
    freshness_hours: float = Field(default=26.0, gt=0)  # a dealer with no export for longer is flagged
    max_price: float | None = Field(default=2_000_000, ge=0)  # a higher price is an error (price_too_high); 0 or null: no bound
    max_mileage: int | None = Field(default=1_000_000, ge=0)  # a higher mileage is an error (mileage_too_high); 0 or null: no bound
    # the distribution guard (stock/guards.py): a full export whose values jump against the last accepted stock is held;
    # each signal is judged on the vehicles in both, with 0 or null turning it off
    guard_min_vehicles: int = Field(default=20, ge=1)  # fewer vehicles in both: not judged (a first export, a tiny dealer)
    guard_median_price_factor: float | None = Field(default=1.5, ge=0)  # their median price moved by more than this factor, either way
    guard_repriced_share: float | None = Field(default=0.5, ge=0, le=1)  # more than this share of them changed price by more than:
    guard_repriced_by: float = Field(default=0.25, ge=0)  # ... this share of the old price
    guard_mileage_down_share: float | None = Field(default=0.2, ge=0, le=1)  # more than this share of them went down in mileage
    guard_price_year_correlation: float | None = Field(default=0.3, ge=0, le=1)  # price-year rank correlation from >= +x to <= -x

    @field_validator("guard_median_price_factor")
    @classmethod
    def _factor_above_one(cls, value: float | None) -> float | None:
        if value and value <= 1:
            raise ValueError("a factor must be above 1 (0 or null turns the signal off)")
        return value


class Alerts(Strict):
    webhook_url_env: str | None = None  # env var holding a webhook URL (Slack-compatible JSON body {"text": ...})
    timeout_seconds: float = Field(default=5.0, gt=0)
    marketplace_failure_threshold: int = Field(default=3, ge=1)  # no longer used (every incident alerts once); accepted so older files load
    smtp_host: str | None = None  # e-mail alerts when set
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username_env: str | None = None
    smtp_password_env: str | None = None
    email_from: str | None = None
    email_to: list[str] = Field(default_factory=list)

    _check_env = field_validator("webhook_url_env", "smtp_username_env", "smtp_password_env")(_env_name)


class Settings(Strict):
    group_name: str
    dealers: list[Dealer]
    marketplaces: dict[str, Marketplace]
    validation: Validation = Validation()
    alerts: Alerts = Alerts()
    operations_db_url_env: str | None = None  # env var holding a SQLAlchemy URL (e.g. PostgreSQL); default SQLite under state/

    _check_db_env = field_validator("operations_db_url_env")(_env_name)

    @model_validator(mode="after")
    def _cross_references(self):
        seen: set[str] = set()
        for index, dealer in enumerate(self.dealers):
            if dealer.id in seen:
                raise ValueError(f"dealers[{index}].id: '{dealer.id}' is used by two dealers")
            seen.add(dealer.id)
            for name in dealer.marketplaces:
                if name not in self.marketplaces:
                    raise ValueError(f"dealers[{index}].marketplaces.{name}: not declared under the top-level 'marketplaces'")
        if not self.dealers:
            raise ValueError("dealers: at least one dealer is needed")
        return self

    def dealer(self, dealer_id: str) -> Dealer:
        for dealer in self.dealers:
            if dealer.id == dealer_id:
                return dealer
        raise KeyError(f"no dealer '{dealer_id}' in the configuration")


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("local_inbox", "sftp", "local", "http_api") or str(part).startswith("function-"):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def parse_settings(raw: object, source_name: str = "configuration") -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source_name}: the top level must be a mapping of keys, got {type(raw).__name__}")
    try:
        return Settings.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown key (misspelt? secrets go in environment variables named by *_env keys)"
            problems.append(f"  {_location(item['loc'])}: {message}")
        raise ConfigError(f"{source_name} is not valid:\n" + "\n".join(problems)) from None


def load_settings(path: Path | None = None) -> Settings:
    path = path or config_path()
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found (set DMS_PIPELINES_CONFIG, or DMS_PIPELINES_DATA to a folder holding config/dms_pipelines.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_settings(raw, str(path))


def current_paths() -> DataPaths:
    return DataPaths(data_root())


def operations_db_url(settings: Settings, paths: DataPaths, environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if settings.operations_db_url_env:
        url = environ.get(settings.operations_db_url_env)
        if not url:
            raise ConfigError(f"operations_db_url_env: environment variable {settings.operations_db_url_env} is not set")
        return url
    paths.state.mkdir(parents=True, exist_ok=True)
    return paths.operations_db_url
