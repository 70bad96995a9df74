"""Images, the stage after stock: choose each vehicle's photographs, look at every one, judge them per marketplace, and hand the feeds what each may show."""

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, LocalInboxSource, Settings
from dms_pipelines.formats.reader import MappingError
from dms_pipelines.images.matching import choose_images
from dms_pipelines.images.probe import ImageCheck, changed_checks, host_key, probe_images
from dms_pipelines.images.rules import DEFAULT_FORMATS, DEFAULT_MAX_BYTES, MARKETPLACE_IMAGE_REQUIREMENTS, ImageRequirements, judge_images
from dms_pipelines.images.sources import latest_imaging_feed, read_imaging_feed
from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.marketplaces.base import KEY, MarketplaceSpec
from dms_pipelines.operations import image_store
from dms_pipelines.operations.alerts import notify
from dms_pipelines.paths import DataPaths
from dms_pipelines.stock.schema import LIST_SEPARATOR
from dms_pipelines.stock.store import StockView
from dms_pipelines.warehouse.tables import ensure_catalog, publish

log = logging.getLogger(__name__)

VERDICT_COLUMNS = ["marketplace", "stock_id", "image_urls", "held_reason"]
CHECK_COLUMNS = ["status", "format", "width", "height", "byte_size", "reason"]
IMAGE_TABLES = ("vehicle_images", "vehicle_image_sources", "image_flags", "marketplace_images")
FEED_PROBLEMS_LOGGED = 20  # an imaging feed's problems logged one by one; the rest counted
# Runs that must be quick (a sale, a delta) trust what was last seen of an image and fetch only images never seen; the
# nightly run (and one started by hand) asks every image's server whether it changed.
TRUST_HOURS = 24 * 366.0  # "trusted": any check the store keeps
TRUSTING_TRIGGERS = ("delta_sensor", "file_sensor", "sold_fast_path", "hourly")
NOT_LISTED = ("sold",)  # vehicles in these states are not looked at: no marketplace shows them
# The group's own standard counts every image that is there and is an image, whatever a marketplace's own limits.
GROUP_STANDARD = ImageRequirements("the group", 1, 1, ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"), 0, None, None, documented=False)


def requirements_for(marketplace: str) -> ImageRequirements:
    """A marketplace's documented image requirements; one the pipelines know only by its feed profile gets the stated default."""
    return MARKETPLACE_IMAGE_REQUIREMENTS.get(marketplace) or ImageRequirements(marketplace, 800, 600, DEFAULT_FORMATS, 1, None, DEFAULT_MAX_BYTES, documented=False)


@dataclass
class ImageRun:
    """What one dealer's image stage did: the sources chosen, what the checks found, and what each marketplace is held back."""

    dealer_id: str
    checked: bool  # False: the dealer's images are not judged (no images: section in its configuration)
    vehicles: int = 0
    images: int = 0
    by_source: dict[str, int] = field(default_factory=dict)  # vehicles per chosen source (imaging, dms, none)
    by_status: dict[str, int] = field(default_factory=dict)  # images per check status
    flags: dict[str, int] = field(default_factory=dict)  # photos_of_another_vehicle, shared_image_url
    held: dict[str, int] = field(default_factory=dict)  # per marketplace: vehicles held back for their images
    left_out: dict[str, int] = field(default_factory=dict)  # per marketplace: images left out of listings
    meeting_standard: int = 0  # vehicles with at least settings.images.min_good_images good images
    requested: int = 0
    not_modified: int = 0
    trusted: int = 0
    failed_hosts: dict[str, str] = field(default_factory=dict)  # host -> why (reported once per host)
    feed_file: str | None = None
    feed_problems: list[str] = field(default_factory=list)  # the imaging feed's rows left out, with file, row and field
    seconds: float = 0.0
    error: str | None = None  # the stage failed: why (the feeds went out on the last verdict)


def verdict_path(state: Path, dealer_id: str) -> Path:
    return state / "images" / f"{dealer_id}.parquet"


def _feed_folder(dealer: Dealer, paths: DataPaths) -> Path:
    source = dealer.images.source
    if source is None:
        return paths.image_inbox / dealer.id
    if isinstance(source, LocalInboxSource):
        return paths.root / source.path if source.path else paths.image_inbox / dealer.id
    raise NotImplementedError(f"dealers.{dealer.id}.images.source: only a local inbox is read for imaging feeds so far")


def _checks_frame(checks: dict[str, ImageCheck]) -> pd.DataFrame:
    rows = [{"url": url, **{name: getattr(check, name) for name in CHECK_COLUMNS}} for url, check in checks.items()]
    frame = pd.DataFrame(rows, columns=["url", *CHECK_COLUMNS])
    return frame.set_index("url")


def image_stage(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, stock: StockView, run_id: str | None, logger=log, trigger: str = "manual") -> ImageRun:
    """The image stage (judge_dealer_images), never in the feeds' way: when it fails, the error is logged and alerted
    once, the run says so (ImageRun.error: a failing check, a problem of the dealer's run), and the feeds go out on the
    last verdict, so that a sold car still leaves every marketplace."""
    try:
        return judge_dealer_images(dealer, settings, paths, engine, stock, run_id, logger, trusting=trigger in TRUSTING_TRIGGERS)
    except Exception as error:  # reported, not raised: see above
        message = f"{dealer.id}: the image stage failed, the feeds use the last verdict: {type(error).__name__}: {error}"
        logger.exception(message)
        notify(settings, "image_stage_failed", message, logger)
        return ImageRun(dealer.id, checked=dealer.images is not None, error=f"{type(error).__name__}: {error}")


def judge_dealer_images(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, stock: StockView, run_id: str | None, logger=log, trusting: bool = False) -> ImageRun:
    """Choose each listed vehicle's images (the imaging service's set or the DMS's, as configured), look at every image
    (only new or changed ones are fetched again), judge them against each marketplace's requirements and the group's
    standard, keep the verdict for the feeds and publish the warehouse rows. A host that cannot be reached is reported once
    and judged on what was last seen of its images (nothing seen: shown unjudged), so an outage never delists a dealer.
    `trusting` (a quick run: a sale, a delta): what was last seen of an image is trusted and only images never seen are fetched."""
    started = time.monotonic()
    target = verdict_path(paths.state, dealer.id)
    if dealer.images is None:
        if target.exists():  # images were judged before: the feeds go back to the DMS's lists, the warehouse rows go
            target.unlink()
            publish(paths, dealer.id, dict.fromkeys(IMAGE_TABLES, pd.DataFrame()))
        return ImageRun(dealer.id, checked=False)
    run = ImageRun(dealer.id, checked=True)
    cars = stock.whole()
    cars = cars[~cars["status"].isin(NOT_LISTED).fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
    feed = None
    if dealer.images.profile is not None:
        newest = latest_imaging_feed(_feed_folder(dealer, paths))
        if newest is not None:
            try:
                read = read_imaging_feed(newest, dealer.images.profile, dealer.id, paths.profile_dirs())
            except MappingError as error:  # the file as a whole cannot be read: the DMS's images stand in
                run.feed_file, run.feed_problems = newest.name, [str(error)]
            else:
                feed, run.feed_file = read.frame, newest.name
                run.feed_problems = [str(message) for message in read.issues["message"]]
            for problem in run.feed_problems[:FEED_PROBLEMS_LOGGED]:
                logger.warning(f"{dealer.id}: imaging feed {problem}")
            if len(run.feed_problems) > FEED_PROBLEMS_LOGGED:
                logger.warning(f"{dealer.id}: imaging feed: {len(run.feed_problems) - FEED_PROBLEMS_LOGGED} more problem(s) (the first 50 are in the vehicle_images materialisation)")
        else:
            logger.warning(f"{dealer.id}: no imaging feed in {_feed_folder(dealer, paths)}; the DMS's images are used")
    choice = choose_images(cars, feed, dealer.images.prefer)
    urls = list(dict.fromkeys(choice.images["url"].astype(str)))
    cached = {url: ImageCheck.from_row(row) for url, row in image_store.cached_checks(engine, urls).items()}
    checks = dict(cached)
    if dealer.images.check and urls:
        limits = settings.images.model_copy(update={"revalidate_after_hours": TRUST_HOURS}) if trusting else settings.images
        probed = probe_images(urls, limits, cached)
        run.requested, run.not_modified, run.trusted, run.failed_hosts = probed.requested, probed.not_modified, probed.trusted, dict(probed.failed_hosts)
        failed = set(run.failed_hosts)
        fresh = {url: check for url, check in probed.checks.items() if host_key(url) not in failed}
        # a check the server confirmed unchanged (304) is not written again: an unchanged night writes nothing
        image_store.save_checks(engine, [check.as_row() for check in changed_checks(cached, fresh)])
        checks = checks | fresh  # a failed host's images: as last seen
        for host, reason in sorted(run.failed_hosts.items()):
            logger.warning(f"{dealer.id}: image host {host} could not be reached ({reason}); its images are judged as last seen")
    checks_frame = _checks_frame(checks)  # the cache and the probe were asked for these URLs alone
    run.vehicles, run.images = len(cars), len(choice.images)
    run.by_source = {str(k): int(v) for k, v in choice.per_vehicle["source"].value_counts().sort_index().items()}
    statuses = choice.images[["url"]].merge(checks_frame[["status"]], left_on="url", right_index=True, how="left")["status"].fillna("not_checked")
    run.by_status = {str(k): int(v) for k, v in statuses.value_counts().sort_index().items()}
    run.flags = {str(k): int(v) for k, v in choice.flags["flag"].value_counts().sort_index().items()}

    verdicts, summaries = [], []
    ids = cars["stock_id"].astype(str)
    standard = judge_images(choice.images, checks_frame, GROUP_STANDARD, settings.images.min_good_images, unchecked_is_good=True, vehicles=ids)
    run.meeting_standard = int((standard.good_count.reindex(ids.to_numpy()).fillna(0) >= settings.images.min_good_images).sum())
    for name in sorted(set(dealer.marketplaces) & set(settings.marketplaces)):
        verdict = judge_images(choice.images, checks_frame, requirements_for(name), settings.images.min_good_images, unchecked_is_good=True, vehicles=ids)
        kept = verdict.kept.groupby("stock_id", sort=False)["url"].agg(LIST_SEPARATOR.join)
        held = verdict.held.set_index("stock_id")["reason"]
        verdicts.append(pd.DataFrame({"marketplace": name, "stock_id": ids, "image_urls": ids.map(kept).astype("string"), "held_reason": ids.map(held).astype("string")}))
        run.held[name], run.left_out[name] = len(verdict.held), len(verdict.left_out)
        summaries.append(_marketplace_rows(dealer.id, name, ids, verdict))
    frame = pd.concat(verdicts, ignore_index=True) if verdicts else pd.DataFrame(columns=VERDICT_COLUMNS)
    write_parquet_atomically(frame[VERDICT_COLUMNS].astype("string"), target)
    publish(paths, dealer.id, _warehouse_rows(dealer.id, choice, checks_frame, summaries))
    ensure_catalog(paths)
    run.seconds = time.monotonic() - started
    logger.info(
        f"{dealer.id}: images of {run.vehicles} vehicle(s): {run.images} image(s) {run.by_status}, sources {run.by_source}, flags {run.flags or 'none'}, "
        f"held back {run.held}; {run.requested} request(s), {run.not_modified} unchanged, in {run.seconds:.1f}s"
    )
    return run


def _marketplace_rows(dealer_id: str, marketplace: str, ids: pd.Series, verdict) -> pd.DataFrame:
    good = verdict.good_count.reindex(ids.to_numpy()).fillna(0).astype("Int64").to_numpy()
    held = verdict.held.set_index("stock_id")["reason"]
    left_out = verdict.left_out.groupby("stock_id")["reason"].agg(lambda reasons: "; ".join(dict.fromkeys(reasons)))
    counts = verdict.left_out.groupby("stock_id").size()
    return pd.DataFrame(
        {
            "dealer_id": dealer_id,
            "marketplace": marketplace,
            "stock_id": ids.to_numpy(),
            "good_images": good,
            "left_out": ids.map(counts).fillna(0).astype("Int64").to_numpy(),
            "left_out_reasons": ids.map(left_out).astype("string").to_numpy(),
            "held": ids.isin(set(held.index)).to_numpy(),
            "held_reason": ids.map(held).astype("string").to_numpy(),
        }
    )


def _warehouse_rows(dealer_id: str, choice, checks: pd.DataFrame, summaries: list[pd.DataFrame]) -> dict[str, pd.DataFrame]:
    images = choice.images.merge(checks, left_on="url", right_index=True, how="left")
    images = images.assign(dealer_id=dealer_id, status=images["status"].fillna("not_checked"))
    return {
        "vehicle_images": images[["dealer_id", "stock_id", "position", "url", "source", "status", "format", "width", "height", "byte_size", "reason"]],
        "vehicle_image_sources": choice.per_vehicle.assign(dealer_id=dealer_id),
        "image_flags": choice.flags.assign(dealer_id=dealer_id),
        "marketplace_images": pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(),
    }


@dataclass(frozen=True)
class ImageVerdict:
    """What the image stage decided for one dealer and marketplace: per vehicle, the images it may show, and why it is held back."""

    image_urls: dict[str, str | None]
    held: dict[str, str]
    digest: str


def load_verdict(state: Path, dealer_id: str, marketplace: str) -> ImageVerdict | None:
    """The last image stage's verdict for the dealer's feed to the marketplace (None: its images are not judged)."""
    path = verdict_path(state, dealer_id)
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    frame = frame[frame["marketplace"] == marketplace]
    if frame.empty:
        return None
    frame = frame.sort_values("stock_id", kind="stable")
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame[["stock_id", "image_urls", "held_reason"]], index=False).to_numpy().tobytes()).hexdigest()[:16]
    urls = dict(zip(frame["stock_id"], frame["image_urls"].astype(object).where(frame["image_urls"].notna(), None)))
    held = {stock_id: reason for stock_id, reason in zip(frame["stock_id"], frame["held_reason"]) if isinstance(reason, str)}
    return ImageVerdict(urls, held, digest)


def judged(spec: MarketplaceSpec, dealer: Dealer, state: Path) -> MarketplaceSpec:
    """The marketplace as this dealer's feed to it is built once its images are judged: each vehicle shows only its good
    images (first the main one), a vehicle with too few is held back with the reason, and the files' fingerprint names
    the verdict, so a changed verdict rebuilds them. A vehicle the stage has not seen yet keeps the DMS's list."""
    verdict = load_verdict(state, dealer.id, spec.name) if dealer.images is not None else None
    if verdict is None:
        return spec
    render, extra_rules = spec.render, spec.extra_rules

    def render_judged(stock: pd.DataFrame, dealer: Dealer, account) -> pd.DataFrame:
        ids = stock["stock_id"].astype(str)
        chosen = ids.map(verdict.image_urls)
        seen = ids.isin(verdict.image_urls.keys()).to_numpy()
        images = stock["image_urls"].where(~seen, pd.Series(chosen.to_numpy(), index=stock.index).astype(stock["image_urls"].dtype))
        return render(stock.assign(image_urls=images), dealer, account)

    def rules_judged(items: pd.DataFrame) -> pd.Series:
        held = items[KEY].astype(str).map(verdict.held).fillna("").astype("string")
        if extra_rules is None:
            return held
        return (extra_rules(items).fillna("").astype("string") + "; " + held).str.strip("; ")

    return dataclasses.replace(spec, render=render_judged, extra_rules=rules_judged, fingerprint=f"{spec.fingerprint}|images:{verdict.digest}")
