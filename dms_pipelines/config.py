"""The typed configuration model and its loader, with errors that name the key and the problem."""

import difflib
import os
import re
import types
import typing
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

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


COUNTRY_NAMES = {"GB": "United Kingdom", "IE": "Ireland"}  # an address's country as a postal address writes it


class Address(Strict):
    street: str
    city: str
    postcode: str
    region: str | None = None
    country: str = "GB"

    def one_line(self) -> str:
        parts = [self.street, self.city, self.region, self.postcode, COUNTRY_NAMES.get(self.country, self.country)]
        return ", ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------------- a dealer's market

CONDITIONS = ("new", "used", "demo")  # the canonical vehicle's conditions (stock.schema.CONDITIONS; config sits below stock)
CURRENCIES = ("GBP", "EUR")
DISTANCE_UNITS = ("miles", "km")
KM_PER_MILE = 1.609344
MAX_MILES_PER_YEAR = 40_000  # the most a car plausibly covers in a year (mileage_implausible above it)


@dataclass(frozen=True)
class MarketDefaults:
    currency: str
    distance_unit: str


MARKETS = {"GB": MarketDefaults("GBP", "miles"), "IE": MarketDefaults("EUR", "km")}  # the countries a dealer may sell in


def _one_of(value: object, allowed: tuple[str, ...], what: str, hint: str = "") -> object:
    """`value` when it is one of `allowed`; otherwise an error naming the allowed values and the closest one."""
    if not isinstance(value, str) or value in allowed:
        return value  # a value of another type gets pydantic's own message
    close = [a for a in allowed if a.lower() == value.lower()] or difflib.get_close_matches(value, list(allowed), n=1)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"{value!r} is not a known {what}{suggestion}; allowed: {', '.join(allowed)}{hint}")


class Market(Strict):
    """Where a dealer sells: its country, the currency its prices are in, the unit of its odometer readings (the canonical
    mileage), whose registration plates it carries and which vehicles need one. Unset keys follow the country."""

    country: str = "GB"
    currency: str = "GBP"  # default: the country's (GB: GBP, IE: EUR)
    distance_unit: str = "miles"  # the unit the DMS odometer reading is in; default: the country's (GB: miles, IE: km)
    plates: tuple[str, ...] = ("GB",)  # the countries whose plate rules apply; default: [country]
    registration_required: tuple[str, ...] = ("used", "demo")  # conditions that need a registration; [] for none

    @model_validator(mode="before")
    @classmethod
    def _country_defaults(cls, data):
        if isinstance(data, dict):
            country = data.get("country", "GB") if data.get("country") in MARKETS else "GB"  # an unknown one is refused below
            defaults = MARKETS[country]
            data = {"currency": defaults.currency, "distance_unit": defaults.distance_unit, "plates": [country], **data}
        return data

    @field_validator("country")
    @classmethod
    def _known_country(cls, value):
        return _one_of(value, tuple(MARKETS), "country", " (ISO 3166 codes: the United Kingdom is GB)")

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value):
        return _one_of(value, CURRENCIES, "currency", " (ISO 4217 codes)")

    @field_validator("distance_unit")
    @classmethod
    def _known_unit(cls, value):
        return _one_of(value, DISTANCE_UNITS, "distance unit")

    @field_validator("plates", mode="before")
    @classmethod
    def _plate_countries(cls, value):
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError("needs at least one country whose plates apply (allowed: " + ", ".join(MARKETS) + ")")
            return tuple(dict.fromkeys(_one_of(item, tuple(MARKETS), "plate country") for item in value))
        return value

    @field_validator("registration_required", mode="before")
    @classmethod
    def _conditions(cls, value):
        if isinstance(value, (list, tuple)):
            return tuple(dict.fromkeys(_one_of(item, CONDITIONS, "condition") for item in value))
        return value

    @property
    def mileage_per_year(self) -> int:
        """The plausible most a car covers in a year, in this market's unit: 40,000 miles (64,374 km)."""
        return MAX_MILES_PER_YEAR if self.distance_unit == "miles" else round(MAX_MILES_PER_YEAR * KM_PER_MILE)


# ---------------------------------------------------------------------------------------------------- vehicle page URLs

URL_PLACEHOLDERS = ("website", "dealer_id", "stock_id", "stock_id_lower", "make", "model")  # {make} and {model} slugged
DEFAULT_VEHICLE_URL = "{website}/used-cars/{stock_id_lower}"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def slug(text: str) -> str:
    """Text as a URL path segment: accents dropped, lower case, every run of other characters one '-' (Land Rover -> land-rover)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")


def url_pieces(template: str) -> list[tuple[str, str]]:
    """A URL template as (literal text, placeholder) pairs in order, the last placeholder '' (the text after it)."""
    pieces, position = [], 0
    for match in _PLACEHOLDER.finditer(template):
        pieces.append((template[position : match.start()], match.group(1)))
        position = match.end()
    return pieces + [(template[position:], "")]


def _check_url_template(template: str) -> str:
    names = _PLACEHOLDER.findall(template)
    for name in names:
        if name not in URL_PLACEHOLDERS:
            close = difflib.get_close_matches(name, URL_PLACEHOLDERS, n=1)
            raise ValueError(f"unknown placeholder {{{name}}}{f' (did you mean {{{close[0]}}}?)' if close else ''}; known: " + ", ".join(f"{{{p}}}" for p in URL_PLACEHOLDERS))
    if _PLACEHOLDER.sub("", template).count("{") or _PLACEHOLDER.sub("", template).count("}"):
        raise ValueError(f"{template!r} has an unmatched brace")
    if "stock_id" not in names and "stock_id_lower" not in names:
        raise ValueError(f"{template!r} must name the vehicle: include {{stock_id}} or {{stock_id_lower}}")
    if not (template.startswith("{website}") or re.match(r"^https?://[^/{}\s]+", template)):
        raise ValueError(f"{template!r} must start with {{website}} or an http(s) address")
    if re.search(r"\s", template):
        raise ValueError(f"{template!r} must not contain spaces")
    return template


class VehicleUrls(Strict):
    """The dealer's vehicle page URL templates: `used` for used and demo cars, `new` for new ones (default: the used one)."""

    used: str = DEFAULT_VEHICLE_URL
    new: str | None = None

    _check = field_validator("used", "new")(lambda value: value if value is None else _check_url_template(value))

    def template(self, condition: str | None) -> str:
        return (self.new or self.used) if condition == "new" else self.used


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
    market: Market = Market()  # default: the address's country (GB or IE), else GB, with that country's defaults
    validation: Validation | None = None  # the group's validation keys this dealer overrides (only those given)
    urls: VehicleUrls = VehicleUrls()
    crm: "Crm | None" = None  # where the dealer's leads go as ADF; none: leads are kept, not delivered (a check says so)
    leads: "DealerLeads" = Field(default_factory=lambda: DealerLeads())
    customers: "DealerCustomers | None" = None  # the DMS customer export; none: leads are matched among themselves only
    images: "DealerImages | None" = None  # the imaging service's feed and which source wins; none: the DMS's images, not looked at

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("must be lower-case letters, digits, '-' or '_' (it names folders and Dagster partitions)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _market_of_the_address(cls, data):
        """A market that names no country is the address's country, when it is one the pipelines know."""
        if not isinstance(data, dict):
            return data
        address = data.get("address")
        country = address.get("country", "GB") if isinstance(address, dict) else getattr(address, "country", "GB")
        market = data.get("market")
        if country in MARKETS and country != "GB" and (market is None or (isinstance(market, dict) and "country" not in market)):
            data = {**data, "market": {**(market or {}), "country": country}}
        return data

    def validation_overrides(self) -> dict[str, Any]:
        """The validation keys this dealer sets, with their values."""
        return self.validation.model_dump(include=self.validation.model_fields_set) if self.validation is not None else {}

    def vehicle_url(self, condition: str | None, stock_id: str, make: str = "", model: str = "") -> str:
        """The vehicle's page on the dealer's website, from its URL template for the condition (new, or used and demo)."""
        values = {
            "website": self.website.rstrip("/"),
            "dealer_id": self.id,
            "stock_id": stock_id,
            "stock_id_lower": stock_id.lower(),
            "make": slug(make or ""),
            "model": slug(model or ""),
        }
        return "".join(text + (values[name] if name else "") for text, name in url_pieces(self.urls.template(condition)))


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


class CrmEmail(Strict):
    """ADF leads by e-mail to the CRM's lead mailbox (SMTP); the XML as the plain-text body, or as an attachment."""

    smtp_host: str
    smtp_port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username_env: str | None = None
    password_env: str | None = None
    email_from: str
    email_to: list[str] = Field(min_length=1)
    body: Literal["text", "attachment"] = "text"  # some CRMs take only text/plain with the ADF alone in the body
    timeout_seconds: float = Field(default=10.0, gt=0)

    _check_envs = field_validator("username_env", "password_env")(_env_name)


CrmDropConfig = Annotated[Union[LocalDestination, SftpUploadDestination], Field(discriminator="kind")]


class Crm(Strict):
    """Where a dealer's leads go as ADF 1.0 XML: a file drop (local folder or SFTP) and/or e-mail; at least one."""

    drop: CrmDropConfig | None = None
    email: CrmEmail | None = None
    max_attempts: int = Field(default=5, ge=1)  # attempts across runs before a lead's delivery is dead-lettered

    @model_validator(mode="after")
    def _somewhere(self):
        if self.drop is None and self.email is None:
            raise ValueError("a CRM needs a drop, an email, or both")
        return self


class DealerLeads(Strict):
    """A dealer's lead inbox: Meta lead CSV exports and ADF e-mails (.eml, .xml) dropped like DMS exports."""

    source: SourceConfig | None = None  # default: a local inbox at lead_inbox/<dealer id>


class DealerCustomers(Strict):
    """A dealer's DMS customer export: where it is dropped and the mapping profile (record: customer) that reads it."""

    profile: str
    source: SourceConfig | None = None  # default: a local inbox at customer_inbox/<dealer id>


class DealerImages(Strict):
    """A dealer's photographs: the imaging service's feed (CitNOW, AutosOnShow and the like), read through a mapping
    profile (record: images), and which source wins per vehicle; the other is the fallback."""

    profile: str | None = None  # the imaging feed's mapping profile; none: the DMS export's images alone (still checked)
    source: "SourceConfig | None" = None  # default: a local inbox at image_inbox/<dealer id>
    prefer: Literal["imaging", "dms"] = "imaging"  # the industry's advice: the imaging service's set, the DMS's as fallback
    check: bool = True  # look at every image (reachable, format, size); false: count the URLs only, as before


class ImageSettings(Strict):
    """How images are looked at: the group's standard, and the limits of the probing (per run, for every dealer)."""

    min_good_images: int = Field(default=6, ge=0)  # the group's own standard: fewer good images hold a vehicle back everywhere
    concurrency: int = Field(default=32, ge=1)  # requests in flight at once
    per_host_concurrency: int = Field(default=16, ge=1)
    timeout_seconds: float = Field(default=5.0, gt=0)  # per request
    attempts: int = Field(default=3, ge=1)  # per image, on a connection error, a timeout, 429 or 5xx
    header_bytes: int = Field(default=65_536, ge=1024)  # the range asked for: enough for any header the formats put first
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)  # a larger image is refused (too_large)
    max_redirects: int = Field(default=3, ge=0)
    allowed_private_hosts: list[str] = Field(default_factory=list)  # hosts a URL or a redirect may name though private (the demo's own server)
    revalidate_after_hours: float = Field(default=0.0, ge=0)  # a check younger than this is trusted without a request; 0: always a conditional request


class Identity(Strict):
    """How leads are tied to one customer: the pinned match model and the two thresholds on its match probability."""

    model: str = "customer_match_v1"  # a model file in the package's identity/models (or a path)
    upper_threshold: float = Field(default=0.99, gt=0, lt=1)  # at or above: the lead joins the customer
    lower_threshold: float = Field(default=0.5, gt=0, lt=1)  # below: a new prospect; between the two: the review queue

    @model_validator(mode="after")
    def _ordered(self):
        if self.lower_threshold >= self.upper_threshold:
            raise ValueError(f"lower_threshold ({self.lower_threshold}) must be below upper_threshold ({self.upper_threshold})")
        return self


class Retention(Strict):
    """How long each kind of personal data is kept, in days (applied by the nightly run); none keeps it."""

    leads_days: int | None = Field(default=1095, ge=1)  # leads, their versions, deliveries and raw payloads
    prospects_days: int | None = Field(default=730, ge=1)  # identity records of people who never became DMS customers
    review_days: int | None = Field(default=90, ge=1)  # decided review queue entries
    crm_outbox_days: int | None = Field(default=30, ge=1)  # ADF files left in local CRM drops
    customer_exports_days: int | None = Field(default=90, ge=1)  # raw DMS customer exports in customer_landing


class Receiver(Strict):
    """The webhook receiver: which variables hold each sender's secret; a sender whose variable is unset is refused (403)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8780, ge=0, le=65535)
    autotrader_secret_env: str | None = "DMS_AUTOTRADER_WEBHOOK_SECRET"  # HMAC-SHA256 key of Deal Sync notifications
    google_key_env: str | None = "DMS_GOOGLE_LEAD_KEY"  # the lead form's google_key
    website_key_env: str | None = "DMS_WEBSITE_LEAD_KEY"  # the website form's X-Lead-Key header
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    _check_envs = field_validator("autotrader_secret_env", "google_key_env", "website_key_env")(_env_name)


class Leads(Strict):
    """Group-wide lead settings: the receiver and how many similar available cars a lead on a sold one is offered."""

    receiver: Receiver = Receiver()
    alternatives: int = Field(default=3, ge=0, le=3)  # the ADF carries at most three


Dealer.model_rebuild()  # its crm and leads models are defined above, after it


class Settings(Strict):
    group_name: str
    dealers: list[Dealer]
    marketplaces: dict[str, Marketplace]
    validation: Validation = Validation()
    alerts: Alerts = Alerts()
    operations_db_url_env: str | None = None  # env var holding a SQLAlchemy URL (e.g. PostgreSQL); default SQLite under state/
    leads: Leads = Leads()
    identity: Identity = Identity()
    images: ImageSettings = ImageSettings()
    retention: Retention = Retention()
    erasure_salt_env: str = "DMS_ERASURE_SALT"  # the salt of the suppression list's hashes; unset: a salt kept in state/

    _check_db_env = field_validator("operations_db_url_env")(_env_name)
    _check_salt_env = field_validator("erasure_salt_env")(_env_name)
    _rules: dict[str, Validation] = PrivateAttr(default_factory=dict)  # per dealer with overrides: the group's rules merged with them

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
        problems = []
        for index, dealer in enumerate(self.dealers):
            overrides = dealer.validation_overrides()
            if not overrides:
                continue
            try:  # validated again as a whole: a rule relating two keys sees the merged values
                self._rules[dealer.id] = Validation.model_validate({**self.validation.model_dump(), **overrides})
            except ValidationError as error:
                problems += [f"dealers[{index}].validation.{_location(item['loc'])}: {item['msg'].removeprefix('Value error, ')}" for item in error.errors()]
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def dealer(self, dealer_id: str) -> Dealer:
        for dealer in self.dealers:
            if dealer.id == dealer_id:
                return dealer
        raise KeyError(f"no dealer '{dealer_id}' in the configuration")

    def rules_for(self, dealer_id: str | None) -> Validation:
        """The validation rules of a dealer: the group's, with the keys the dealer overrides (None: the group's own)."""
        if dealer_id is None:
            return self.validation
        self.dealer(dealer_id)  # an unknown dealer is a KeyError, as everywhere
        return self._rules.get(dealer_id, self.validation)

    def market_for(self, dealer_id: str | None) -> Market:
        """The market a dealer sells in (None: the default market, GB)."""
        return Market() if dealer_id is None else self.dealer(dealer_id).market


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


def _members(annotation) -> list:
    """The types an annotation allows: Annotated and unions (X | None, discriminated unions) unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    return [annotation]


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _step(annotation, part):
    """The annotation one step of a pydantic error location further in (a list item, a map value, a field, a union's tag)."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if isinstance(part, int) and origin in (list, tuple):
            return typing.get_args(member)[0]
        if isinstance(part, str) and origin is dict:
            return typing.get_args(member)[1]
        if isinstance(part, str) and _is_model(member):
            if part in member.model_fields:
                return member.model_fields[part].annotation
            kind = member.model_fields.get("kind")
            if kind is not None and part in typing.get_args(kind.annotation):
                return member
    return None


def _keys_at(loc: tuple) -> tuple[str, ...]:
    """The keys the configuration takes at a location (the mapping holding an unknown key), or () when it cannot tell."""
    node = Settings
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        node = _step(node, part)
        if node is None:
            return ()
    models = [member for member in _members(node) if _is_model(member)]
    return tuple(models[0].model_fields) if len(models) == 1 else ()


def _unknown_key(loc: tuple) -> str:
    """The message for an unknown key: the closest known key, or the keys known there."""
    keys = _keys_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    known = f" known here: {', '.join(keys)};" if keys else ""
    return f"unknown key (misspelt?{known} secrets go in environment variables named by *_env keys)"


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
                message = _unknown_key(item["loc"])
            if not item["loc"] and re.match(r"^[a-z_]+[\[.:]", message):  # a check of the whole file that names its key itself
                problems.append(f"  {message}")
            else:
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
