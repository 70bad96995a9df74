"""The local folder destination: write a feed file atomically, and only when its bytes changed."""

import hashlib
import os
import uuid
from pathlib import Path


def write_if_changed(path: Path, content: bytes) -> bool:
    """Replace `path` with `content` through a temporary name; False (and no write) when the file already holds it."""
    if path.exists() and path.stat().st_size == len(content):
        if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest():
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with temporary.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return True
