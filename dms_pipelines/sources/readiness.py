"""Is a listed file complete? A marker file, or size and mtime unchanged across listings a set interval apart."""

from dataclasses import dataclass

from dms_pipelines.sources.base import RemoteFile, is_in_progress_name


@dataclass(frozen=True)
class FileObservation:
    path: str
    size: int
    mtime: float
    first_seen: float  # when this size and mtime were first listed


def marker_name(file_name: str, marker_pattern: str) -> str:
    """'{name}.done' -> 'stock.csv.done'; '{stem}.ok' -> 'stock.ok'."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    return marker_pattern.replace("{name}", file_name).replace("{stem}", stem)


def ready_files(
    listing: list[RemoteFile],
    previous: dict[str, FileObservation],
    now: float,
    stability_seconds: float,
    marker_pattern: str | None = None,
    marker_names: set[str] | frozenset = frozenset(),
) -> tuple[list[RemoteFile], dict[str, FileObservation]]:
    """The files ready to take, and the observations to keep for the next listing (state per file, never a watermark)."""
    ready, observations = [], {}
    for remote in listing:
        if (remote.size == 0 and remote.problem is None) or is_in_progress_name(remote.name):
            continue  # an empty file a source refused (remote.problem) waits to be stable like any other, then is reported
        seen = previous.get(remote.path)
        unchanged = seen is not None and seen.size == remote.size and seen.mtime == remote.mtime
        first_seen = seen.first_seen if unchanged else now
        observations[remote.path] = FileObservation(remote.path, remote.size, remote.mtime, first_seen)
        if marker_pattern:
            if marker_name(remote.name, marker_pattern) in marker_names:
                ready.append(remote)
        elif stability_seconds <= 0 or (unchanged and now - first_seen >= stability_seconds):
            ready.append(remote)
    return ready, observations
