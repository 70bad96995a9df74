"""Python objects written to one file with their DataFrames as Arrow IPC, which are memory-mapped (not copied) when read back."""

import io
import os
import pickle
import struct
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

MAGIC = b"DMS-FRAMES-1\n"
ALIGNMENT = 64  # Arrow's own buffer alignment: a frame read from the mapped file is used where it lies
TRAILER = struct.Struct("<Q")  # where the pickle of the object (with the frames as references) starts


def write_frames_file(value: Any, path: Path) -> None:
    """Write `value` to `path` (replaced atomically): pickled, except that every DataFrame Arrow can hold exactly is stored
    beside the pickle as an Arrow IPC stream, so reading it back costs a memory map instead of unpickling its rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with pa.OSFile(str(temporary), "wb") as handle:
            handle.write(MAGIC)
            pickled = io.BytesIO()
            _FramePickler(pickled, handle).dump(value)
            start = _pad(handle)
            handle.write(pickled.getbuffer())
            handle.write(TRAILER.pack(start))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
        isinstance(frame.index, pd.RangeIndex) and frame.columns.is_unique and all(isinstance(name, str) for name in frame.columns)
        and not any(dtype == object for dtype in frame.dtypes)
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
