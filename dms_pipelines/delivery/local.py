"""The local folder destination: write a feed file atomically, and only when its bytes changed."""

import errno
import hashlib
import os
import shutil
from pathlib import Path

from dms_pipelines.delivery.staging import StagedFile, file_sha256
from dms_pipelines.kernels.atomic import atomic_write, link_into_place


def write_if_changed(path: Path, content: bytes | StagedFile) -> bool:
    """Replace `path` with `content` through a temporary name (kernels.atomic); False (and no write) when the file already holds it.

    A staged file on the same filesystem is linked into place (it is already on disk, and stays where it is: it may be kept
    as the base of the next rebuild), which costs no write, so the file in place is not read to compare; otherwise the
    staged file is copied.
    """
    staged = isinstance(content, StagedFile)
    digest, size = (content.sha256, content.size) if staged else (hashlib.sha256(content).hexdigest(), len(content))
    path.parent.mkdir(parents=True, exist_ok=True)
    if staged:
        if path.exists() and os.path.samefile(path, content.path):
            return False
        try:
            link_into_place(content.path, path)
            return True
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
    if path.exists() and path.stat().st_size == size and file_sha256(path) == digest:
        return False
    with atomic_write(path) as handle:
        if staged:
            with content.path.open("rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)
        else:
            handle.write(content)
    return True
