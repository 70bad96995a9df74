"""Real, reproducible sample photographs for any image URL path: good ones mostly, and planted defects chosen by a stated rule."""

import hashlib
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from functools import lru_cache

from PIL import Image

from dms_pipelines.devtools.image_server import Served

TRUTHS = ("ok", "small", "broken", "not_an_image")
# Planted by the last segment of the path, whatever its hash says.
NAMED_DEFECTS = {"broken.jpg": "broken", "small.jpg": "small", "page.html": "not_an_image"}
# Otherwise by the path's hash: out of 1000 paths about this many of each defect (the rest are good).
DEFECTS_PER_THOUSAND = {"broken": 5, "not_an_image": 5, "small": 30}
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Template:
    name: str
    truth: str  # what a check of it should find: TRUTHS
    format: str | None  # Pillow's format name, None when it is no image
    width: int | None
    height: int | None
    content_type: str
    body: bytes
    digest: str  # sha256 of the body


# name, truth, format, width, height
PICTURES = (
    ("front_1600x1200.jpg", "ok", "JPEG", 1600, 1200),
    ("side_1280x960.jpg", "ok", "JPEG", 1280, 960),
    ("rear_1024x768.jpg", "ok", "JPEG", 1024, 768),
    ("interior_1600x1200.webp", "ok", "WEBP", 1600, 1200),
    ("dash_1024x768.png", "ok", "PNG", 1024, 768),
    ("wheel_800x600.webp", "ok", "WEBP", 800, 600),
    ("boot_800x600.gif", "ok", "GIF", 800, 600),
    ("banner_1200x300.jpg", "ok", "JPEG", 1200, 300),  # not 4:3: a marketplace's aspect rule may refuse it
    ("thumb_320x240.jpg", "small", "JPEG", 320, 240),
    ("still_640x360.png", "small", "PNG", 640, 360),
)
GOOD_WEIGHTS = {"front_1600x1200.jpg": 12, "side_1280x960.jpg": 12, "rear_1024x768.jpg": 12, "dash_1024x768.png": 2}  # the rest: 1
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
SAVE_OPTIONS = {"JPEG": {"quality": 85}, "PNG": {"compress_level": 1}, "WEBP": {"quality": 80, "method": 0}, "GIF": {}}
HTML = b"<!doctype html><html><head><title>Photo gallery</title></head><body><p>This photograph has moved. Please sign in to see it.</p></body></html>\n"


def _picture(width: int, height: int, seed: int) -> Image.Image:
    """Colour fields from a tiny random grid scaled up, with a fine grain so that files are as large as photographs
    (a 1600x1200 JPEG about 300 KB, larger than the range a check reads): deterministic, and quick to make."""
    rng = random.Random(seed)
    fields = Image.frombytes("RGB", (16, 12), rng.randbytes(16 * 12 * 3)).resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.frombytes("L", (width // 2, height // 2), rng.randbytes((width // 2) * (height // 2))).resize((width, height)).convert("RGB")
    return Image.blend(fields, grain, 0.08)


def _encoded(picture: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "GIF":
        picture = picture.quantize(64)
    picture.save(buffer, image_format, **SAVE_OPTIONS[image_format])
    return buffer.getvalue()


def _template(name: str, truth: str, image_format: str | None, width: int | None, height: int | None, content_type: str, body: bytes) -> Template:
    return Template(name, truth, image_format, width, height, content_type, body, hashlib.sha256(body).hexdigest())


@lru_cache(maxsize=1)
def templates() -> tuple[Template, ...]:
    """Every template, made once per process (well under a second)."""
    made = [_template(name, truth, fmt, width, height, CONTENT_TYPES[fmt], _encoded(_picture(width, height, index + 1), fmt)) for index, (name, truth, fmt, width, height) in enumerate(PICTURES)]
    jpeg = next(template.body for template in made if template.format == "JPEG")
    # Cut before the frame header (SOF): no reader can tell the picture's size, as with an upload that stopped early.
    made.append(_template("cut_short.jpg", "broken", None, None, None, "image/jpeg", jpeg[: jpeg.find(b"\xff\xc0")]))
    made.append(_template("page.html", "not_an_image", None, None, None, "text/html; charset=utf-8", HTML))
    return tuple(made)


class SampleImages:
    """Maps any URL path to one template, the same every run: the last segment names a defect (broken.jpg, small.jpg,
    page.html), else the path's hash picks a defect for about 4% of paths and a good picture for the rest."""

    def __init__(self) -> None:
        self.templates = templates()
        # as photo services deliver them: mostly JPEG at 4:3, now and then a PNG, a WebP, a GIF or a banner
        self._by_truth = {truth: [t for t in self.templates if t.truth == truth for _ in range(GOOD_WEIGHTS.get(t.name, 1) if truth == "ok" else 1)] for truth in TRUTHS}

    @staticmethod
    def _hash(path: str) -> int:
        return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big")

    def template(self, path: str) -> Template:
        number = self._hash(path)
        truth = NAMED_DEFECTS.get(path.rsplit("/", 1)[-1])
        if truth is None:
            share = number % 1000
            truth = "ok"
            for defect, per_thousand in DEFECTS_PER_THOUSAND.items():
                if share < per_thousand:
                    truth = defect
                    break
                share -= per_thousand
        choices = self._by_truth[truth]
        return choices[(number >> 16) % len(choices)]

    def truth(self, path: str) -> str:
        """What a check of the path's image should find: ok, small (a good image below the group's size), broken, not_an_image."""
        return self.template(path).truth

    def resolve(self, path: str) -> Served:
        """The path's answer for ImageServer: its template's bytes, an ETag from the path and those bytes, a Last-Modified from the path."""
        template = self.template(path)
        tag = hashlib.sha256(f"{path}\n{template.digest}".encode("utf-8")).hexdigest()[:20]
        modified = EPOCH + timedelta(minutes=self._hash(path) % (60 * 24 * 300))
        return Served(template.body, template.content_type, f'"{tag}"', format_datetime(modified, usegmt=True))
