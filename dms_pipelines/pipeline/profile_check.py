"""A dry run of a mapping profile on a sample export: what each field reads, what drifts, is quarantined, skipped or held back; no state touched."""

import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from dms_pipelines.config import Address, Dealer, DealerMarketplace, LocalInboxSource, Settings, Validation
from dms_pipelines.formats.profile import MappingProfile, ProfileError, find_profile, load_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.marketplaces.base import MarketplaceSpec, render_for
from dms_pipelines.stock.merge import apply_full
from dms_pipelines.stock.schema import FIELD_BY_NAME, PRIVATE_COLUMNS, empty_stock
from dms_pipelines.stock.validate import validate_stock

SAMPLES = 3
SHOWN_ROWS = 8  # row numbers shown per rule
PLACEHOLDER_DEALER = "profile-check"


@dataclass
class FieldReport:
    """One canonical field as the profile fills it from the export."""

    name: str
    source: str  # the column(s), XPath(s) or constant it is read from
    filled: int
    fill_rate: float
    samples: list[str]
    required: bool
    unmapped: dict[str, int] = field(default_factory=dict)  # source values the field's map does not cover -> records


@dataclass
class RuleReport:
    severity: str  # error: the vehicle is quarantined; warning: it goes through, flagged
    field: str
    rule: str
    vehicles: int
    rows: list[int]  # the first source rows
    example: str


@dataclass
class MarketplaceReport:
    name: str
    listed: int
    held_back: int
    reasons: dict[str, int]  # why vehicles are held back -> vehicles
    error: str | None = None


@dataclass
class ProfileReport:
    """Everything `dms-pipelines profile check` prints, as data (`--format json`)."""

    profile: str
    profile_file: str
    export: str
    format: str
    encoding: str | None
    dealer: str
    records_in_file: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # skip rule's reason -> records
    fields: list[FieldReport] = field(default_factory=list)
    unread_sources: list[str] = field(default_factory=list)  # columns, attributes or elements no field reads (drift)
    warnings: list[str] = field(default_factory=list)
    accepted: int = 0
    quarantined: int = 0
    quarantine_issues: int = 0
    rules: list[RuleReport] = field(default_factory=list)
    marketplaces: list[MarketplaceReport] = field(default_factory=list)
    private_fields: list[str] = field(default_factory=list)  # read, kept in stock, never in any feed
    errors: list[str] = field(default_factory=list)  # profile errors: the check fails

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"ok": self.ok}, indent=2, default=str)


def resolve_profile(profile: str, profile_dirs: list[Path]) -> tuple[MappingProfile, Path]:
    """The profile named `profile` (searched like a dealer's) or in the file at that path; raises ProfileError."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file")
        return load_profile(path), path
    loaded = find_profile(profile, profile_dirs)
    return loaded, next(folder / f"{profile}.yaml" for folder in profile_dirs if (folder / f"{profile}.yaml").exists())


def placeholder_dealer(profile_name: str, specs: list[MarketplaceSpec]) -> Dealer:
    """A GB dealer with an account on every marketplace, for a check without a configured dealer."""
    return Dealer(
        id=PLACEHOLDER_DEALER,
        name="Profile check",
        address=Address(street="1 Check Street", city="Leeds", postcode="LS1 1AA"),
        phone="0113 000 0000",
        website="https://dealer.example",
        source=LocalInboxSource(kind="local_inbox"),
        profile=profile_name,
        marketplaces={spec.name: DealerMarketplace(**{name: f"CHECK-{name}" for name in spec.account_settings}) for spec in specs},
    )


def check_profile(
    profile: MappingProfile,
    profile_file: Path,
    export: Path,
    specs: list[MarketplaceSpec],
    dealer: Dealer,
    rules: Validation,
    today: date | None = None,
) -> ProfileReport:
    """Read `export` with `profile` as `dealer`'s run would, validate it with `rules`, render it for each of `specs`; nothing is written."""
    today = today or date.today()
    report = ProfileReport(profile.name, str(profile_file), str(export), profile.format, None, dealer.id)
    with tempfile.TemporaryDirectory(prefix="dms-profile-check-") as scratch:  # a compressed export is expanded here, never beside it
        copy = Path(scratch) / export.name
        copy.symlink_to(export.resolve())
        try:
            result = read_export(copy, profile, dealer.id, file_name=export.name)
        except MappingError as error:
            report.errors.append(str(error))
            return report
    report.encoding = result.encoding
    report.rows = result.records_total
    report.skipped = dict(result.skipped)
    report.records_in_file = result.records_in_file
    report.unread_sources = list(result.unread_sources)
    report.warnings = list(result.warnings)
    rows = result.rows
    for name, mapping in profile.fields.items():
        values = rows[name] if name in rows else pd.Series(dtype="string")
        present = values.dropna()
        private = name in PRIVATE_COLUMNS
        samples = ["(private: not shown)"] if private and len(present) else [str(v) for v in present.astype("string").unique()[:SAMPLES]]
        source = mapping.column if profile.format == "csv" else mapping.xpath
        report.fields.append(
            FieldReport(
                name,
                " | ".join(source) if isinstance(source, list) else str(source),
                int(len(present)),
                round(len(present) / len(rows), 4) if len(rows) else 0.0,
                samples,
                FIELD_BY_NAME[name].required,
                dict(result.unmapped.get(name, {})),
            )
        )
    for name, value in profile.constants.items():
        report.fields.append(FieldReport(name, f"constant {value!r}", len(rows), 1.0 if len(rows) else 0.0, [value], FIELD_BY_NAME[name].required))
    report.private_fields = [f.name for f in report.fields if f.name in PRIVATE_COLUMNS and f.filled]
    checked = validate_stock(rows, export.name, rules, today, price_reference=None, market=dealer.market)
    issues = pd.concat([result.issues, checked.issues], ignore_index=True)
    error_rows = set(issues.loc[issues["severity"] == "error", "source_row"].dropna().astype(int))
    accepted = checked.accepted[~checked.accepted["source_row"].isin(error_rows)].reset_index(drop=True)
    report.accepted = len(accepted)
    report.quarantined = result.records_total - len(accepted)
    report.quarantine_issues = int((issues["severity"] == "error").sum())
    for (severity, field_name, rule), group in issues.groupby(["severity", issues["field"].fillna("(row)"), "rule"], sort=False):
        numbers = sorted(group["source_row"].dropna().astype(int).unique())
        report.rules.append(RuleReport(severity, field_name, rule, len(numbers), [int(n) for n in numbers[:SHOWN_ROWS]], str(group["message"].iloc[0])))
    report.rules.sort(key=lambda r: (r.severity != "error", -r.vehicles, r.field, r.rule))
    stock = apply_full(empty_stock(), accepted, set()).stock
    for spec in specs:
        account = dealer.marketplaces.get(spec.name) or DealerMarketplace()
        try:
            rendered = render_for(spec, stock, dealer, account)
        except Exception as error:  # a marketplace that cannot render this stock is reported, the others still are
            report.marketplaces.append(MarketplaceReport(spec.name, 0, 0, {}, f"{type(error).__name__}: {error}"))
            continue
        reasons: dict[str, int] = {}
        for text in rendered.held["reasons"].dropna().astype(str):
            for reason in text.split("; "):
                reasons[reason] = reasons.get(reason, 0) + 1
        report.marketplaces.append(MarketplaceReport(spec.name, len(rendered.items), len(rendered.held), dict(sorted(reasons.items(), key=lambda item: -item[1]))))
    return report


def render_text(report: ProfileReport) -> str:
    """The report as the integration engineer reads it in a terminal."""
    lines = [f"profile {report.profile} ({report.profile_file}) on {report.export}, as dealer {report.dealer}"]
    if report.errors and not report.fields:
        lines += [f"  PROFILE ERROR: {error}" for error in report.errors]
        lines.append("result: FAILED (fix the profile; see docs/onboarding.md)")
        return "\n".join(lines)
    skipped = sum(report.skipped.values())
    lines.append(f"  {report.format}, {report.encoding}: {report.records_in_file} records, {report.rows} read, {skipped} skipped by the profile's skip rules")
    for reason, count in report.skipped.items():
        lines.append(f"    skipped {count:>5}  {reason}")
    lines.append("fields (fill rate, first values; source):")
    width = max((len(f.name) for f in report.fields), default=10)
    for item in report.fields:
        mark = "*" if item.required else " "
        lines.append(f"  {mark}{item.name:<{width}} {item.fill_rate:>6.0%}  {', '.join(item.samples)[:60]:<60}  <- {item.source}")
        if item.unmapped:
            shown = ", ".join(f"{value!r} x{count}" for value, count in list(item.unmapped.items())[:8])
            lines.append(f"   {'':<{width}}         not covered by the map: {shown}")
    lines.append("  (* required)")
    if report.private_fields:
        lines.append(f"private fields read (kept in stock, never in a feed): {', '.join(report.private_fields)}")
    lines.append("read by no field (drift; list them in ignored_columns when that is meant): " + (", ".join(report.unread_sources) or "none"))
    for warning in report.warnings:
        lines.append(f"  warning: {warning}")
    lines.append(f"validation: {report.accepted} vehicles accepted, {report.quarantined} quarantined ({report.quarantine_issues} issues)")
    for rule in report.rules:
        rows = ", ".join(str(n) for n in rule.rows) + (", ..." if rule.vehicles > len(rule.rows) else "")
        lines.append(f"  {rule.severity:<7} {rule.field}: {rule.rule:<24} {rule.vehicles:>5} rows ({rows})")
    lines.append("marketplaces (what each would list, and hold back and why):")
    for market in report.marketplaces:
        if market.error:
            lines.append(f"  {market.name:<12} cannot render: {market.error}")
            continue
        lines.append(f"  {market.name:<12} {market.listed:>5} listed, {market.held_back} held back")
        for reason, count in list(market.reasons.items())[:6]:
            lines.append(f"    {count:>5}  {reason}")
    lines.append("result: " + ("ok" if report.ok else f"FAILED: {len(report.errors)} profile error(s)"))
    return "\n".join(lines)


def dealer_for_check(settings: Settings | None, dealer_id: str | None, profile_name: str, specs: list[MarketplaceSpec]) -> tuple[Dealer, Validation, list[MarketplaceSpec]]:
    """The dealer the check runs as: the one named, else a configured dealer on this profile, else a GB placeholder on every marketplace."""
    if settings is not None:
        chosen = settings.dealer(dealer_id) if dealer_id else next((d for d in settings.dealers if d.profile == profile_name), None)
        if chosen is not None:
            return chosen, settings.rules_for(chosen.id), [spec for spec in specs if spec.name in chosen.marketplaces]
    return placeholder_dealer(profile_name, specs), settings.validation if settings is not None else Validation(), specs
