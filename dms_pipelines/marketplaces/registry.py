"""The one list of marketplaces: the modules and the feed profiles, and the check of the configuration against them."""

import difflib
from pathlib import Path

from dms_pipelines.config import ConfigError, Dealer, Settings
from dms_pipelines.marketplaces import autotrader, google, meta, website
from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.marketplaces.feed_profile import FeedProfileError, builtin_feed_profiles, load_feed_profile

MODULES = (google, website, meta, autotrader)


def builtin_specs() -> dict[str, MarketplaceSpec]:
    """The marketplaces shipped: one module each, then one feed profile each."""
    specs = {module.SPEC.name: module.SPEC for module in MODULES}
    for spec in builtin_feed_profiles():
        if spec.name in specs:
            raise ConfigError(f"feed profile {spec.name}: a marketplace of that name exists already")
        specs[spec.name] = spec
    return specs


SPECS: dict[str, MarketplaceSpec] = builtin_specs()


def known_specs(profile_dirs: list[Path] = ()) -> dict[str, MarketplaceSpec]:
    """The shipped marketplaces and those defined by the feed profiles (*.yaml) in `profile_dirs` (a data root's feed_profiles/)."""
    specs = dict(SPECS)
    for folder in profile_dirs:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.yaml")):
            try:
                spec = load_feed_profile(path)
            except FeedProfileError as error:
                raise ConfigError(str(error)) from None
            if spec.name in specs:
                raise ConfigError(f"{path}: marketplace {spec.name} is defined already (by a module or another feed profile)")
            specs[spec.name] = spec
    return specs


def published_specs(settings: Settings, profile_dirs: list[Path] = ()) -> list[MarketplaceSpec]:
    """The marketplaces the configuration declares, in the registry's order, after checking the configuration against them."""
    specs = known_specs(profile_dirs)
    check_settings(settings, specs)
    return [spec for name, spec in specs.items() if name in settings.marketplaces]


def check_settings(settings: Settings, specs: dict[str, MarketplaceSpec]) -> None:
    """Every marketplace named in the configuration exists, takes the configured file format, and each dealer's account
    there sets only the keys that marketplace declares and is for a market it takes (currency, odometer unit); the error
    names the key and suggests the close ones."""
    problems = []
    for name, market in settings.marketplaces.items():
        spec = specs.get(name)
        if spec is None:
            problems.append(f"  marketplaces.{name}: unknown marketplace{_suggestion(name, specs)}; known: {sorted(specs)}")
            continue
        if market.file_format and market.file_format not in spec.formats:
            problems.append(f"  marketplaces.{name}.file_format: {market.file_format} is not one {name} takes ({', '.join(spec.formats)})")
        wants_api = spec.mode == "api"
        if wants_api != (market.destination.kind == "http_api"):
            problems.append(f"  marketplaces.{name}.destination: {name} takes {'API calls (kind: http_api)' if wants_api else 'files (kind: local or sftp)'}, not kind: {market.destination.kind}")
    for index, dealer in enumerate(settings.dealers):
        for name, account in dealer.marketplaces.items():
            spec = specs.get(name)
            if spec is None:
                continue
            problems += [f"  dealers[{index}].marketplaces.{name}: {problem}" for problem in market_problems(spec, dealer)]
            for key in sorted(account.model_extra or {}):
                if key not in spec.account_settings:
                    allowed = ", ".join(spec.account_settings) or "none of its own"
                    problems.append(f"  dealers[{index}].marketplaces.{name}.{key}: unknown key{_suggestion(key, spec.account_settings)} ({name} takes list_reserved and {allowed})")
    if problems:
        raise ConfigError("the configuration does not match the marketplaces:\n" + "\n".join(problems))


def market_problems(spec: MarketplaceSpec, dealer: Dealer) -> list[str]:
    """Why the marketplace cannot take the dealer's feed: a currency or an odometer unit it does not take (none: [])."""
    market, problems = dealer.market, []
    if spec.currencies is not None and market.currency not in spec.currencies:
        problems.append(f"{spec.name} takes prices in {' or '.join(spec.currencies)} only, and dealer {dealer.id} sells in {market.currency} (market.currency); remove the account")
    if spec.distance_units is not None and market.distance_unit not in spec.distance_units:
        problems.append(
            f"{spec.name} takes mileage in {' or '.join(spec.distance_units)} only, and dealer {dealer.id}'s odometers are in {market.distance_unit} (market.distance_unit); remove the account"
        )
    return problems


def _suggestion(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


FEED_PROFILES = "feed_profiles"  # the data root's folder of the group's own feed profiles


def specs_for(settings: Settings, data_root: Path) -> list[MarketplaceSpec]:
    """The marketplaces the configuration publishes to, the data root's own feed profiles included."""
    return published_specs(settings, [Path(data_root) / FEED_PROFILES])
