"""One dealer's run, the stage order stated once: land, parse, validate, stock, a feed per marketplace (pipeline.feeds.publish_feed), publish."""

import logging
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, Settings
from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.operations.manifest import change_seen_at, hours_since_last_export, release_held_files
from dms_pipelines.operations.run_health import Problem
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline.feeds import FeedOutcome, publish_feed
from dms_pipelines.pipeline.images import ImageRun, image_stage
from dms_pipelines.pipeline.ingest import ParsedExport, StockUpdate, ValidatedExport, ValidationSummary, land, parse_pending, update_stock, validate_parsed
from dms_pipelines.pipeline.publish import Published, publish_stage
from dms_pipelines.sources.landing import LandingReport
from dms_pipelines.stock.store import StockView

log = logging.getLogger(__name__)


@dataclass
class Landed:
    """The landing stage: the files landed, duplicated or failed, held exports released, and how old the newest export is."""

    report: LandingReport
    released: int = 0
    hours_since_last_export: float | None = None


@dataclass(frozen=True)
class ParseSummary:
    """The parse stage without its rows: files read, those that could not be, records, and each file's encoding."""

    files: int
    unreadable: dict[str, str]  # file name -> why it could not be read
    records: int
    encodings: dict[str, str]

    @classmethod
    def of(cls, parsed: list[ParsedExport]) -> "ParseSummary":
        return cls(
            len(parsed),
            {p.file_name: p.error for p in parsed if p.error},
            sum(p.result.records_total for p in parsed if p.result),
            {p.file_name: p.result.encoding for p in parsed if p.result},
        )


def land_stage(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str, release_held: bool = False, logger=log) -> Landed:
    """Release the dealer's held exports when asked (an operator's choice), then land every ready new export."""
    released = release_held_files(engine, dealer.id, released_by=f"run {run_id}") if release_held else 0
    if released:
        logger.warning(f"{released} held export(s) of {dealer.id} released by this run")
    report = land(dealer, paths, engine, run_id=run_id)
    for failure in report.failed:
        logger.error(failure)
    return Landed(report, released, hours_since_last_export(engine, dealer.id))


def parse_stage(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, logger=log) -> list[ParsedExport]:
    """The dealer's landed files through its mapping profile, oldest first; what cannot be read is logged and marked failed."""
    parsed = parse_pending(dealer, paths, engine, settings.rules_for(dealer.id).max_uncompressed_mb)
    for item in parsed:
        if item.error:
            logger.error(item.error)
        elif item.result is not None:
            for warning in item.result.warnings:
                logger.warning(warning)
    return parsed


def validate_stage(
    parsed: list[ParsedExport],
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    price_reference: pd.DataFrame | None = None,
) -> tuple[list[ValidatedExport], list[ValidationSummary]]:
    """Row rules on every parsed export, errors quarantined with reasons; with each file's summary for checks and metadata."""
    validated = validate_parsed(parsed, settings, paths, engine, price_reference=price_reference)
    return validated, [ValidationSummary.of(v) for v in validated]


def rows_conserved(summaries: list[ValidationSummary]) -> dict[str, str]:
    """Files whose rows do not add up (every input row ends in stock or in quarantine): file name -> the figures."""
    return {v.file_name: f"{v.records_total} records, {v.accepted_rows} accepted, {v.quarantined_rows} quarantined" for v in summaries if v.accepted_rows + v.quarantined_rows != v.records_total}


def stock_stage(dealer: Dealer, validated: list[ValidatedExport], settings: Settings, paths: DataPaths, engine: Engine, run_id: str, logger=log) -> StockUpdate:
    """Full exports replace the stock, deltas patch it; a held export leaves it as it was, and says why."""
    update = update_stock(dealer, validated, settings, paths, engine, run_id=run_id)
    for name, reason in update.held.items():
        logger.error(f"{name} held: {reason}")
    return update


@dataclass
class DealerRun:
    """Everything one dealer's run did, stage by stage, as the outcomes the assets report (the rows themselves are not kept)."""

    dealer_id: str
    landed: Landed
    parsed: ParseSummary
    validated: list[ValidationSummary]
    stock: StockUpdate
    feeds: dict[str, FeedOutcome]  # by marketplace
    published: Published
    images: ImageRun | None = None

    @property
    def problems(self) -> list:
        return self.published.problems

    @property
    def ok(self) -> bool:
        return not self.problems


def sync_dealer(
    dealer_id: str,
    settings: Settings,
    specs: list[MarketplaceSpec],
    paths: DataPaths,
    engine: Engine,
    run_id: str,
    trigger: str,
    release_held: bool = False,
    logger=log,
    price_reference: pd.DataFrame | None = None,
) -> DealerRun:
    """Every stage for one dealer in the order the per-dealer assets run them, over the marketplaces in `specs`.

    `price_reference`: the group's stock for the price-outlier warning, when the caller already read it (see validate_parsed).
    """
    dealer = settings.dealer(dealer_id)
    landed = land_stage(dealer, settings, paths, engine, run_id, release_held, logger)
    parsed = parse_stage(dealer, settings, paths, engine, logger)
    parse_summary = ParseSummary.of(parsed)
    validated, summaries = validate_stage(parsed, settings, paths, engine, price_reference)
    del parsed  # the rows live on in `validated`; holding both would double the peak for a big export
    update = stock_stage(dealer, validated, settings, paths, engine, run_id, logger)
    del validated
    stock = StockView(paths.state, dealer.id, update.whole)  # after deltas alone the whole stock is read only if a feed needs it
    images = image_stage(dealer, settings, paths, engine, stock, run_id, logger, trigger)
    seen = change_seen_at(engine, run_id)  # when the run's change was received: every feed's latency is timed from it
    feeds = {spec.name: publish_feed(spec, dealer, stock, settings, paths, engine, run_id, trigger, seen, logger) for spec in specs}
    published = publish_stage(settings, specs, paths, engine, dealer.id, run_id, trigger, logger)
    if images.error is not None:  # alerted by the stage; a problem of this run, so that it does not end ok
        published.problems.append(Problem(dealer.id, "images_failed", "", f"the image stage failed: {images.error}"))
    return DealerRun(dealer.id, landed, parse_summary, summaries, update, feeds, published, images)
