"""The IO manager for values passed between steps: Dagster's file layout, with DataFrames stored as memory-mapped Arrow."""

from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from dms_pipelines.kernels.frame_files import read_frames_file, write_frames_file


class FrameFilesIOManager(dg.UPathIOManager):
    """One file per asset (and partition) or op output under `base_dir`, as Dagster's filesystem IO manager lays them out;
    a big export's rows are read back through a memory map instead of being unpickled (frame_files)."""

    extension = ""  # the file names Dagster's own filesystem IO manager gives: its files are still read after an upgrade

    def __init__(self, base_dir: str):
        super().__init__(base_path=UPath(base_dir))

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        write_frames_file(obj, Path(path))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        return read_frames_file(Path(path))


class FrameFilesystemIOManager(dg.ConfigurableIOManagerFactory):
    """`FrameFilesIOManager` with its folder as configuration."""

    base_dir: str

    def create_io_manager(self, context) -> FrameFilesIOManager:
        return FrameFilesIOManager(self.base_dir)
