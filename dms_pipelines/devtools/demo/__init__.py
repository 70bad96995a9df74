"""The demo's sample configuration (package data beside this file), written into a data root that has none."""

import os
from pathlib import Path

from dms_pipelines.paths import CONFIG_ENV, DataPaths

SAMPLE_CONFIG = Path(__file__).resolve().parent / "dms_pipelines.yaml"


def ensure_sample_config(paths: DataPaths, environ: dict[str, str] | None = None) -> Path | None:
    """Copy the sample configuration to <data root>/config/dms_pipelines.yaml when that file is missing and
    DMS_PIPELINES_CONFIG names no other; returns the file written, or None when nothing was written (never overwrites)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return None
    target = paths.root / "config" / "dms_pipelines.yaml"
    if target.exists():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "xb") as out:  # exclusive: never replaces a file another process wrote meanwhile
            out.write(SAMPLE_CONFIG.read_bytes())
    except FileExistsError:
        return None
    return target
