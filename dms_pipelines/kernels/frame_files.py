"""DataFrames in files, replaced atomically: Parquet tables, and Python objects with their DataFrames as Arrow IPC (memory-mapped, not copied, when read back)."""

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dms_pipelines.kernels.atomic import replace_with

MAGIC = b"DMS-FRAMES-1\n"
ALIGNMENT = 64  # Arrow's own buffer alignment: a frame read from the mapped file is used where it lies
TRAILER = struct.Struct("<Q")  # where the pickle of the object (with the frames as references) starts
# Row groups are what Arrow and DuckDB read in parallel: a big dealer's stock in one group of a million rows was read on
# one thread (2.5 s at 1,000,000 vehicles, 0.7 s in groups of this size).
ROW_GROUP_ROWS = 131_072


def write_parquet_atomically(frame: pd.DataFrame, path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write `frame` (without its index) as Parquet through a temporary name, so a reader sees the old file or the new
    one (kernels.atomic's policy); `metadata` goes into the file's footer."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    replace_with(path, lambda temporary: pq.write_table(table, temporary, row_group_size=ROW_GROUP_ROWS))


def write_frames_file(value: Any, path: Path) -> None:
    """Write `value` to `path` (replaced atomically): pickled, except that every DataFrame Arrow can hold exactly is stored
    beside the pickle as an Arrow IPC stream, so reading it back costs a memory map instead of unpickling its rows."""

    def write(temporary: Path) -> None:
        with pa.OSFile(str(temporary), "wb") as handle:
            handle.write(MAGIC)
            pickled = io.BytesIO()
            _FramePickler(pickled, handle).dump(value)
            start = _pad(handle)
            handle.write(pickled.getbuffer())
            handle.write(TRAILER.pack(start))

    replace_with(path, write)


def read_frames_file(path: Path) -> Any:
    """The value `write_frames_file` wrote; a file written by plain pickle (Dagster's own file IO manager) is read as such."""
    with path.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            handle.seek(0)
            return pickle.load(handle)
    mapped = pa.memory_map(str(path))
    size = mapped.size()
    (start,) = TRAILER.unpack(mapped.read_at(TRAILER.size, size - TRAILER.size))
    pickled = mapped.read_at(size - TRAILER.size - start, start)
    return _FrameUnpickler(io.BytesIO(pickled), mapped).load()


def _pad(handle) -> int:
    position = handle.tell()
    padding = -position % ALIGNMENT
    handle.write(bytes(padding))
    return position + padding


def _storable(frame: pd.DataFrame) -> bool:
    """Whether the frame comes back exactly from Arrow: unique text column names, a plain row index, no Python objects."""
    return (
        isinstance(frame.index, pd.RangeIndex)
        and frame.columns.is_unique
        and all(isinstance(name, str) for name in frame.columns)
        and not any(pd.api.types.is_object_dtype(dtype) for dtype in frame.dtypes)
    )


def _column(values: pa.ChunkedArray, dtype) -> pd.api.extensions.ExtensionArray | object:
    """A column read back as the pandas dtype it was written from, without copying what Arrow already holds."""
    if isinstance(dtype, pd.ArrowDtype):
        return pd.arrays.ArrowExtensionArray(values)
    if hasattr(dtype, "__from_arrow__"):
        return dtype.__from_arrow__(values)
    return values.to_pandas().astype(dtype, copy=False).to_numpy()


class _FramePickler(pickle.Pickler):
    def __init__(self, pickled: io.BytesIO, frames):
        super().__init__(pickled, protocol=pickle.HIGHEST_PROTOCOL)
        self._frames = frames

    def persistent_id(self, value):
        if not isinstance(value, pd.DataFrame) or not _storable(value):
            return None
        table = pa.Table.from_pandas(value, preserve_index=False).replace_schema_metadata(None)
        start = _pad(self._frames)
        with pa.ipc.new_stream(self._frames, table.schema) as writer:
            writer.write_table(table)
        index = value.index
        return ("frame", start, self._frames.tell() - start, list(value.dtypes), value.columns, (index.start, index.stop, index.step, index.name))


class _FrameUnpickler(pickle.Unpickler):
    def __init__(self, pickled: io.BytesIO, mapped: pa.MemoryMappedFile):
        super().__init__(pickled)
        self._mapped = mapped

    def persistent_load(self, reference):
        kind, start, length, dtypes, columns, (first, stop, step, name) = reference
        if kind != "frame":
            raise pickle.UnpicklingError(f"unknown reference {kind!r} in a frames file")
        self._mapped.seek(start)
        table = pa.ipc.open_stream(self._mapped.read_buffer(length)).read_all()  # a zero-copy view of the mapped file
        index = pd.RangeIndex(first, stop, step, name=name)
        frame = pd.DataFrame({position: _column(table.column(position), dtype) for position, dtype in enumerate(dtypes)}, index=index, copy=False)
        frame.columns = columns
        return frame
