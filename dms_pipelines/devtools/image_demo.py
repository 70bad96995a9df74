"""The demo's photographs: a local image server for every image URL the sample files name, the imaging feeds, and the check that the planted defects were found."""

import errno
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from dms_pipelines.config import Settings
from dms_pipelines.devtools.image_server import ImageServer
from dms_pipelines.devtools.sample.images import SampleImages
from dms_pipelines.devtools.sample.imaging_feed import LAYOUTS, write_imaging_feed
from dms_pipelines.paths import DataPaths

DEMO_IMAGE_PORT = 8766  # the same port every demo if free: the sample exports name it, and a second demo must land the same bytes
DMS_IMAGE_PATH = "/dms"


@dataclass
class ImageDemo:
    """The demo's image server and what it planted."""

    server: ImageServer
    images: SampleImages
    planted_misfiled: dict[str, dict[str, str]] = field(default_factory=dict)  # dealer -> stock id -> whose photos it carries
    planted_shared: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # dealer -> URL -> the two vehicles carrying it

    @property
    def dms_image_base(self) -> str:
        return self.server.base_url + DMS_IMAGE_PATH

    def stop(self) -> None:
        self.server.stop()


def start_image_demo(settings: Settings) -> ImageDemo | None:
    """The demo's image server on DEMO_IMAGE_PORT (another free port when it is taken), when a dealer's images are judged."""
    if not any(dealer.images is not None for dealer in settings.dealers):
        return None
    images = SampleImages()
    try:
        server = ImageServer(images.resolve, port=DEMO_IMAGE_PORT).start()
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        server = ImageServer(images.resolve, port=0).start()
    host = urlsplit(server.base_url).hostname
    if host not in settings.images.allowed_private_hosts:
        print(f"   note: images.allowed_private_hosts does not name {host}: every image of the demo will be refused as on a private address")
    print(f"   image server of this demo on {server.base_url} (sample photographs, some planted too small, broken or not images)")
    return ImageDemo(server, images)


def write_imaging_feeds(demo: ImageDemo, settings: Settings, paths: DataPaths, fleets: dict) -> list[Path]:
    """Each dealer's imaging feed in its profile's layout, into image_inbox/<dealer>/, from its generated fleet."""
    written = []
    for dealer in settings.dealers:
        if dealer.images is None or dealer.images.profile not in LAYOUTS or dealer.id not in fleets:
            continue
        feed = write_imaging_feed(fleets[dealer.id], dealer.id, paths.image_inbox / dealer.id, demo.server.base_url, layouts=(dealer.images.profile,))
        demo.planted_misfiled[dealer.id] = dict(feed.photos_of_another_vehicle)
        demo.planted_shared[dealer.id] = dict(feed.shared_image_url)
        written += list(feed.paths.values())
    return written


def report_images(demo: ImageDemo, paths: DataPaths, echo=print) -> bool:
    """The warehouse's image tables against what was planted: every misfiled set and shared URL flagged, every planted
    broken, small or non-image photograph found; prints the vehicles held back per marketplace. True when all were found."""
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as connection:
        held = connection.execute("SELECT dealer_id, marketplace, count(*) FROM vehicles_held_for_images GROUP BY ALL ORDER BY ALL").fetchall()
        example = connection.execute("SELECT dealer_id, marketplace, stock_id, held_reason FROM vehicles_held_for_images ORDER BY dealer_id, marketplace, stock_id LIMIT 1").fetchone()
        images = connection.execute("SELECT dealer_id, stock_id, url, status, width, height FROM vehicle_images").fetchall()
        flags = connection.execute("SELECT dealer_id, stock_id, flag, url FROM image_flags").fetchall()
        left_out = connection.execute("SELECT dealer_id, marketplace, stock_id, left_out_reasons FROM marketplace_images WHERE left_out > 0").fetchall()
        judged = set(connection.execute("SELECT dealer_id, stock_id FROM vehicle_image_sources").fetchall())
    planted = {"broken": 0, "not_an_image": 0, "small": 0}
    found = dict.fromkeys(planted, 0)
    expected_status = {"broken": "broken", "not_an_image": "not_an_image"}
    for _, _, url, status, width, height in images:
        truth = demo.images.truth(urlsplit(url).path)
        if truth in planted:
            planted[truth] += 1
            if truth == "small":
                found[truth] += status == "ok" and width is not None and (width < 800 or height < 600)
            else:
                found[truth] += status == expected_status[truth]
    misfiled = {(dealer_id, stock_id) for dealer_id, stock_id, flag, _ in flags if flag == "photos_of_another_vehicle"}
    shared = {(dealer_id, url) for dealer_id, _, flag, url in flags if flag == "shared_image_url"}
    # only what the stage could see: both vehicles listed (a sold one is not looked at)
    planted_misfiled = {(d, a) for d, cases in demo.planted_misfiled.items() for a, b in cases.items() if {(d, a), (d, b)} <= judged}
    planted_shared = {(d, url) for d, cases in demo.planted_shared.items() for url, (a, b) in cases.items() if {(d, a), (d, b)} <= judged}
    echo(f"   photographs looked at: {len(images)}; vehicles held back for their images: " + (", ".join(f"{d}/{m} {n}" for d, m, n in held) or "none"))
    if example is not None:
        echo(f"   e.g. {example[0]} {example[2]} not sent to {example[1]}: {example[3]}")
    echo(
        "   planted and found: "
        + ", ".join(f"{name} {found[name]}/{planted[name]}" for name in planted)
        + f", photo sets of another vehicle {len(misfiled & planted_misfiled)}/{len(planted_misfiled)}, URLs on two vehicles {len(shared & planted_shared)}/{len(planted_shared)}"
        + f"; images left out of some listing: {sum(1 for _ in left_out)} vehicle-marketplace pairs"
    )
    return found == planted and planted_misfiled <= misfiled and planted_shared <= shared
