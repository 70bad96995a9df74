"""The atomic writer: a file is whole under its final name or not there, durable (fsynced, then its folder) before the call returns."""

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dms_pipelines.kernels import atomic
from dms_pipelines.kernels.atomic import (
    atomic_write,
    fsync_counts,
    link_into_place,
    rename_into_place,
    replace_with,
    temporary_sibling,
    write_bytes_atomically,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def events(monkeypatch) -> list[tuple]:
    """Every fsync (of a file's data or of a folder, with the inode synced) and every rename, in order; the real calls still happen."""
    recorded: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        status = os.fstat(descriptor)
        recorded.append(("fsync", "directory" if stat.S_ISDIR(status.st_mode) else "file", status.st_ino))
        real_fsync(descriptor)

    def replace(source, target):
        recorded.append(("replace", Path(source).name, Path(target).name))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return recorded


def test_bytes_replace_the_file_and_nothing_else_is_left(tmp_path):
    path = tmp_path / "deep" / "feed.csv"
    write_bytes_atomically(path, b"first")
    write_bytes_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert _leftovers(path.parent) == []


def test_temporary_names_are_hidden_unique_siblings(tmp_path):
    path = tmp_path / "feed.csv"
    names = {temporary_sibling(path) for _ in range(100)}
    assert len(names) == 100
    assert all(n.parent == tmp_path and n.name.startswith(".feed.csv.") and n.name.endswith(".tmp") for n in names)
    assert temporary_sibling(path, ".staged").name.endswith(".staged")


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "feed.csv"
    write_bytes_atomically(path, b"old contents")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(path) as handle:
            handle.write(b"new contents, half")
            handle.flush()
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_an_interrupt_mid_write_is_cleaned_up_too(tmp_path):
    path = tmp_path / "feed.csv"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as handle:
            handle.write(b"partial")
            raise KeyboardInterrupt
    assert not path.exists()
    assert _leftovers(tmp_path) == []


def test_a_writer_by_path_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "stock.parquet"
    write_bytes_atomically(path, b"old")

    def writer(temporary: Path) -> None:
        temporary.write_bytes(b"half a parquet file")
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        replace_with(path, writer)
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_replace_with_puts_what_the_writer_wrote_in_place(tmp_path):
    path = tmp_path / "index.arrow"
    replace_with(path, lambda temporary: temporary.write_bytes(b"written by path"))
    assert path.read_bytes() == b"written by path"
    assert _leftovers(tmp_path) == []


def test_text_mode_and_only_write_modes(tmp_path):
    path = tmp_path / "marker.json"
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write('{"generation": 3}')
    assert path.read_text(encoding="utf-8") == '{"generation": 3}'
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "ab"):
            pass
    assert path.read_text(encoding="utf-8") == '{"generation": 3}'


def test_data_is_synced_before_the_rename_and_the_folder_after(tmp_path, events):
    path = tmp_path / "feed.csv"
    before = fsync_counts()
    write_bytes_atomically(path, b"rows")

    assert [e[:2] for e in events] == [("fsync", "file"), ("replace",) + events[1][1:2], ("fsync", "directory")]
    _, temporary_name, final_name = events[1]
    assert temporary_name.startswith(".feed.csv.") and final_name == "feed.csv"
    assert events[0][2] == path.stat().st_ino  # the data synced was the file now under the final name
    assert events[2][2] == tmp_path.stat().st_ino  # the folder synced was the file's own
    after = fsync_counts()
    assert (after["file"] - before["file"], after["directory"] - before["directory"]) == (1, 1)


def test_a_writer_by_path_is_synced_in_the_same_order(tmp_path, events):
    path = tmp_path / "stock.parquet"
    replace_with(path, lambda temporary: temporary.write_bytes(b"parquet"))
    assert [e[0] + ":" + e[1] if e[0] == "fsync" else e[0] for e in events] == ["fsync:file", "replace", "fsync:directory"]
    assert events[0][2] == path.stat().st_ino


def test_a_failed_write_syncs_and_renames_nothing(tmp_path, events):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "feed.csv") as handle:
            handle.write(b"x")
            raise RuntimeError("stop")
    assert events == []


def test_a_durable_file_moved_into_place_syncs_only_the_folder(tmp_path, events):
    staged = tmp_path / ".feed.csv.abc.staged"
    staged.write_bytes(b"staged")
    rename_into_place(staged, tmp_path / "feed.csv", durable=True)
    assert [e[:2] for e in events] == [("replace", staged.name), ("fsync", "directory")]
    assert (tmp_path / "feed.csv").read_bytes() == b"staged" and not staged.exists()


def test_a_file_not_known_durable_is_synced_before_it_is_moved(tmp_path, events):
    fetched = tmp_path / ".incoming.abc.part"
    fetched.write_bytes(b"export")
    rename_into_place(fetched, tmp_path / "export.csv")
    assert [e[:2] for e in events] == [("fsync", "file"), ("replace", fetched.name), ("fsync", "directory")]


def test_a_link_puts_the_same_file_in_place_and_keeps_the_source(tmp_path, events):
    source = tmp_path / "kept" / "feed.csv"
    source.parent.mkdir()
    source.write_bytes(b"feed")
    target = tmp_path / "outbox" / "feed.csv"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link_into_place(source, target)
    assert os.path.samefile(source, target) and source.read_bytes() == b"feed"
    assert [e[:2] for e in events] == [("replace", events[0][1]), ("fsync", "directory")]
    assert events[1][2] == target.parent.stat().st_ino
    assert _leftovers(target.parent) == []


def test_a_link_that_cannot_be_made_leaves_nothing_behind(tmp_path):
    target = tmp_path / "feed.csv"
    target.write_bytes(b"old")
    with pytest.raises(OSError):
        link_into_place(tmp_path / "missing.csv", target)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    """Writers replace the file over and over with different whole contents, written in small pieces; a reader polling it
    only ever sees one writer's whole contents."""
    path = tmp_path / "feed.csv"
    size, pieces = 256 << 10, 64
    contents = {bytes([65 + writer]) * size for writer in range(4)}
    write_bytes_atomically(path, next(iter(contents)))
    stop = threading.Event()
    seen: list[bytes] = []
    errors: list[BaseException] = []

    def write(content: bytes) -> None:
        try:
            for _ in range(15):
                with atomic_write(path) as handle:
                    for start in range(0, size, size // pieces):
                        handle.write(content[start : start + size // pieces])
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def read() -> None:
        while not stop.is_set():
            seen.append(path.read_bytes())

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(content,)) for content in contents]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()

    assert not errors
    assert seen and all(content in contents for content in seen)
    assert path.read_bytes() in contents
    assert _leftovers(tmp_path) == []


CHILD = """
import sys, time
from pathlib import Path
from dms_pipelines.kernels.atomic import atomic_write
with atomic_write(Path(sys.argv[1])) as handle:
    handle.write(b"new, but only the first half")
    handle.flush()
    print("written", flush=True)
    time.sleep(60)
    handle.write(b" and the second half")
"""


def test_a_crash_mid_write_never_leaves_a_partial_file_under_the_final_name(tmp_path):
    path = tmp_path / "feed.csv"
    write_bytes_atomically(path, b"old and whole")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"written\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert path.read_bytes() == b"old and whole"
    left = _leftovers(tmp_path)
    assert len(left) == 1 and left[0].startswith(".feed.csv.") and left[0].endswith(".tmp")  # hidden: no listing takes it


def test_fsyncs_are_counted_in_one_place(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(atomic, "_fsync", lambda descriptor, kind: calls.append(kind))
    write_bytes_atomically(tmp_path / "a", b"a")
    replace_with(tmp_path / "b", lambda temporary: temporary.write_bytes(b"b"))
    assert calls == ["file", "directory", "file", "directory"]
