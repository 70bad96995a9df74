"""Feed files written to local disk piece by piece and hashed on the way, so a large feed is never whole in memory."""

import glob
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dms_pipelines.kernels.atomic import sync_file, temporary_sibling

HASH_BLOCK = 1 << 20
STALE_SECONDS = 6 * 3600  # a staged file this old was left by a run that died while writing it


@dataclass(frozen=True)
class StagedFile:
    """A complete feed file on local disk (fsynced: durable, to be moved or linked into place as it is), with its SHA-256
    and size, waiting for delivery."""

    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def stage(folder: Path, name: str, pieces: Iterable) -> StagedFile:
    """Write the pieces (bytes or buffers) in order to a new hidden file under `folder` and fsync it (the first half of
    kernels.atomic's policy: the destination renames or links it into place); nothing is left behind if building them fails."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder, name)
    target = temporary_sibling(folder / name, ".staged")
    digest, size = hashlib.sha256(), 0
    try:
        # Each piece is hashed on a second thread while it is written (both let go of the GIL): a rebuilt file copied from
        # the last one costs the larger of the two, not their sum.
        with target.open("wb") as handle, ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-hash") as hasher:
            hashed = None
            for piece in pieces:
                if hashed is not None:
                    hashed.result()
                hashed = hasher.submit(digest.update, piece)
                handle.write(piece)
                size += memoryview(piece).nbytes
            if hashed is not None:
                hashed.result()
            sync_file(handle)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return StagedFile(target, digest.hexdigest(), size)


def _remove_stale(folder: Path, name: str) -> None:
    cutoff = time.time() - STALE_SECONDS
    for leftover in folder.glob(f".{glob.escape(name)}.*.staged"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
