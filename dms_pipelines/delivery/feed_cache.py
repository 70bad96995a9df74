"""The last file built for each dealer's feed (with where each row lies in it) or the last generation sent to an API, so the next
delta rebuilds or sends only what changed."""

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from dms_pipelines.delivery.staging import StagedFile
from dms_pipelines.kernels.atomic import rename_into_place, replace_with, write_bytes_atomically
from dms_pipelines.marketplaces.row_files import RowIndex

# The modules whose code decides a feed's bytes: a file built by other code is never spliced into.
RENDERING_PACKAGES = ("marketplaces", "formats")


@lru_cache(maxsize=1)
def rendering_code_digest() -> str:
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in RENDERING_PACKAGES:
        for source in sorted((root / package).glob("*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def fingerprint(*settings) -> str:
    """What, besides the stock, decides a file's bytes: the settings given (models or plain values) and the rendering code."""
    plain = [value.model_dump(mode="json") if hasattr(value, "model_dump") else value for value in settings]
    return hashlib.sha256((json.dumps(plain, sort_keys=True, default=str) + rendering_code_digest()).encode()).hexdigest()


@dataclass(frozen=True)
class CachedFile:
    """The file as last built, where its rows lie, and the stock generation it shows."""

    path: Path
    index: RowIndex
    generation: int
    sha256: str


def _folder(state_dir: Path, marketplace: str, dealer_id: str) -> Path:
    return state_dir / "feeds" / marketplace / dealer_id


def _index_path(file: Path) -> Path:
    """Arrow IPC: written and memory-mapped at the speed of the disk (a million rows' index took 0.6 s to write as Parquet)."""
    return file.with_name(f"{file.name}.index.arrow")


def _identity(path: Path) -> dict:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "inode": status.st_ino}


def kept_path(state_dir: Path, marketplace: str, dealer_id: str, name: str) -> Path:
    return _folder(state_dir, marketplace, dealer_id) / name


def load(state_dir: Path, marketplace: str, dealer_id: str, name: str, expected_fingerprint: str | None) -> CachedFile | None:
    """The kept file, if it was built with these settings and code (any, when `expected_fingerprint` is None) and nothing
    has touched it since; else None."""
    file = kept_path(state_dir, marketplace, dealer_id, name)
    index_file = _index_path(file)
    if not (file.exists() and index_file.exists()):
        return None
    table = pa.ipc.open_file(pa.memory_map(str(index_file))).read_all()
    facts = json.loads((table.schema.metadata or {}).get(b"dms_pipelines.feed_cache", b"{}"))
    if expected_fingerprint is not None and facts.get("fingerprint") != expected_fingerprint:
        return None
    if facts.get("identity") != _identity(file) or "sha256" not in facts:
        return None
    return CachedFile(file, RowIndex(facts["head_length"], facts["width"], table.replace_schema_metadata(None)), facts["generation"], facts["sha256"])


def keep(state_dir: Path, marketplace: str, dealer_id: str, name: str, staged: StagedFile, index: RowIndex | None, generation: int, file_fingerprint: str) -> None:
    """Keep the staged file and its index as the base of the next rebuild (a file without an index is kept, but the next
    build is whole)."""
    file = kept_path(state_dir, marketplace, dealer_id, name)
    index_file = _index_path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    index_file.unlink(missing_ok=True)  # first: an index must never describe another file's bytes
    file.with_name(f"{file.name}.index.parquet").unlink(missing_ok=True)  # where earlier versions kept it
    identity = _identity(staged.path)  # before the move (which keeps inode and mtime): another run's file moved in later does not match
    rename_into_place(staged.path, file, durable=True)
    if index is None:
        return
    facts = {"fingerprint": file_fingerprint, "generation": generation, "sha256": staged.sha256, "head_length": index.head_length, "width": index.width, "identity": identity}
    table = index.table.replace_schema_metadata({b"dms_pipelines.feed_cache": json.dumps(facts).encode()})

    def write(temporary: Path) -> None:
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    replace_with(index_file, write)


def open_kept(state_dir: Path, marketplace: str, dealer_id: str, name: str, attempts: int = 3) -> tuple[BinaryIO, RowIndex | None] | None:
    """The kept file opened for reading, with the index of that very file (None when it has none that matches); None when
    nothing is kept. A run that replaces the file meanwhile is waited out by opening again."""
    file = kept_path(state_dir, marketplace, dealer_id, name)
    for _ in range(attempts):
        try:
            handle = file.open("rb")
        except FileNotFoundError:
            return None
        status = os.fstat(handle.fileno())
        kept = load(state_dir, marketplace, dealer_id, name, None)
        if kept is not None and _identity(kept.path) == {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "inode": status.st_ino}:
            return handle, kept.index
        handle.close()
    return file.open("rb"), None


def _marker(state_dir: Path, marketplace: str, dealer_id: str) -> Path:
    return _folder(state_dir, marketplace, dealer_id) / "delivered.json"


def delivered_generation(state_dir: Path, marketplace: str, dealer_id: str, expected_fingerprint: str) -> int | None:
    """For a marketplace fed item by item (an API), the stock generation last delivered with these settings and code."""
    marker = _marker(state_dir, marketplace, dealer_id)
    if not marker.exists():
        return None
    facts = json.loads(marker.read_text())
    return facts["generation"] if facts.get("fingerprint") == expected_fingerprint else None


def record_delivered(state_dir: Path, marketplace: str, dealer_id: str, generation: int, file_fingerprint: str) -> None:
    marker = _marker(state_dir, marketplace, dealer_id)
    write_bytes_atomically(marker, json.dumps({"generation": generation, "fingerprint": file_fingerprint}).encode())


def forget(state_dir: Path, marketplace: str, dealer_id: str) -> None:
    """Drop every kept file of the dealer's feed (it no longer publishes there)."""
    folder = _folder(state_dir, marketplace, dealer_id)
    if folder.exists():
        for file in folder.iterdir():
            file.unlink(missing_ok=True)
        folder.rmdir()
