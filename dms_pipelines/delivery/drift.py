"""The drift oracle: what a marketplace actually holds against what the stock renders for it (missing, extra, stale, sold but live)."""

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.marketplaces.read_back import UnreadableFeed
from dms_pipelines.operations.drift_state import KINDS, describe_drift

WHOLE_FILE = "(file)"  # the id drift is recorded under when a file differs in what is not a vehicle's row (its header, a dealer file)


@dataclass
class Drift:
    """One marketplace's drift for one dealer after a run: the stock ids in each kind, and an error if it could not be read."""

    dealer_id: str
    marketplace: str
    checked: int = 0  # vehicles the marketplace should show, compared
    missing: list[str] = field(default_factory=list)  # should be shown; the marketplace does not show it
    extra: list[str] = field(default_factory=list)  # shown (or shown twice); should not be
    stale: list[str] = field(default_factory=list)  # shown with other content than the stock renders (an old price)
    sold_live: list[str] = field(default_factory=list)  # the stock says sold; the marketplace still offers it
    error: str | None = None  # the marketplace could not be read back: its state is unknown, which is drift too

    @property
    def clean(self) -> bool:
        return self.error is None and not any(getattr(self, kind) for kind in KINDS)

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS}

    def items(self) -> list[tuple[str, str]]:
        """(stock id, kind) for every drifting vehicle."""
        return [(stock_id, kind) for kind in KINDS for stock_id in getattr(self, kind)]

    def add(self, other: "Drift") -> "Drift":
        """This drift and another file's of the same marketplace together (a marketplace that takes two files per dealer)."""
        for kind in KINDS:
            getattr(self, kind).extend(i for i in getattr(other, kind) if i not in getattr(self, kind))
        self.checked = max(self.checked, other.checked)
        self.error = "; ".join(e for e in (self.error, other.error) if e) or None
        return self

    def describe(self) -> str:
        """'stockapi for leeds: 1 sold but live (LEE00012); 2 stale (LEE00001, LEE00007)' or '... in sync'."""
        told = describe_drift(self.counts(), {kind: getattr(self, kind) for kind in KINDS}, self.error)
        return f"{self.marketplace} for {self.dealer_id}: " + (told or f"in sync ({self.checked} vehicles)")


def compare_shown(
    dealer_id: str,
    marketplace: str,
    expected: dict[str, str],
    actual: dict[str, str],
    status_of: Callable[[list[str]], dict[str, str]],
) -> Drift:
    """Per vehicle key, what the file should show against what it shows; a vehicle shown that the stock has sold is sold but live."""
    drift = Drift(dealer_id, marketplace, checked=len(expected))
    drift.missing = sorted(set(expected) - set(actual))
    drift.stale = sorted(key for key in expected.keys() & actual.keys() if expected[key] != actual[key])
    extra = sorted(set(actual) - set(expected))
    sold = status_of(extra) if extra else {}
    drift.sold_live = [key for key in extra if sold.get(key) == "sold"]
    drift.extra = [key for key in extra if sold.get(key) != "sold"]
    return drift


def file_drift(
    dealer_id: str,
    marketplace: str,
    name: str,
    expected: bytes,
    actual: bytes | None,
    read_back: Callable[[str, bytes], dict[str, str] | None],
    status_of: Callable[[list[str]], dict[str, str]],
    select: Callable[[dict[str, str]], dict[str, str]] = lambda rows: rows,
) -> Drift:
    """A delivered file against the file the stock renders. `select` keeps the dealer's rows (and turns keys into stock
    ids) where the file holds other dealers' too (an account-wide file)."""
    try:
        wanted = read_back(name, expected)
    except UnreadableFeed as error:  # our own file: a bug, never the marketplace's fault; said so
        return Drift(dealer_id, marketplace, error=f"the expected {name} cannot be read back: {error}")
    if wanted is None:  # no vehicle rows in it: the bytes are compared
        return Drift(dealer_id, marketplace, stale=[] if actual == expected else [f"{WHOLE_FILE} {name}"])
    wanted = select(wanted)
    if actual is None:
        return Drift(dealer_id, marketplace, checked=len(wanted), missing=sorted(wanted))
    if actual == expected:
        return Drift(dealer_id, marketplace, checked=len(wanted))
    try:
        shown = read_back(name, actual)
    except UnreadableFeed as error:
        return Drift(dealer_id, marketplace, checked=len(wanted), missing=sorted(wanted), error=f"{name} at the destination: {error}")
    drift = compare_shown(dealer_id, marketplace, wanted, select(shown or {}), status_of)
    if drift.clean:  # the same vehicles, the same rows: what differs is the rest of the file (its header, the dealer's own block)
        drift.stale = [f"{WHOLE_FILE} {name}"]
    return drift


def _differs(sent, held) -> bool:
    """Whether the marketplace's item differs from what was sent, on what was sent (it adds ids, versions and its own
    fields, also to the objects of a list such as images): a list must hold as many items, in order."""
    if isinstance(sent, dict):
        return not isinstance(held, dict) or any(_differs(value, held.get(key)) for key, value in sent.items())
    if isinstance(sent, list):
        return not isinstance(held, list) or len(sent) != len(held) or any(_differs(a, b) for a, b in zip(sent, held))
    return sent != held


def api_drift(dealer_id: str, spec: MarketplaceSpec, items: pd.DataFrame, listed: list[dict], status_of: Callable[[list[str]], dict[str, str]]) -> Drift:
    """The marketplace's own stock search against every vehicle the stock renders for it (sold ones in its sold state)."""
    api = spec.api
    live: dict[str, list[dict]] = {}
    for entry in listed:
        if api.listed_state(entry) not in api.gone_states:
            live.setdefault(api.listed_reference(entry), []).append(entry)
    desired = {row[api.reference]: api.item(row) for row in items.to_dict(orient="records")} if len(items) else {}
    drift = Drift(dealer_id, spec.name, checked=len(desired))
    for reference, item in sorted(desired.items()):
        entries = live.get(reference, [])
        if len(entries) > 1:
            drift.extra.append(reference)  # listed twice
        if not entries:
            if item[api.state] != api.sold_state:  # a sold car nowhere to be seen is not offered: nothing wrong for a buyer
                drift.missing.append(reference)
            continue
        shown = entries[0]
        if item[api.state] == api.sold_state and (api.listed_state(shown) in api.live_states or api.listed_published(shown)):
            drift.sold_live.append(reference)
        elif _differs(api.create_payload(item), shown):
            drift.stale.append(reference)
    strays = sorted(reference for reference, entries in live.items() if reference not in desired and any(api.listed_state(e) in api.live_states for e in entries))
    sold = status_of(strays) if strays else {}
    drift.sold_live += [reference for reference in strays if sold.get(reference) == "sold"]
    drift.extra += [reference for reference in strays if sold.get(reference) != "sold"]
    return drift
