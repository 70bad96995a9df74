"""The image check benchmark: N images checked the first time (empty cache) and again (all unchanged: 304s), through the store on SQLite."""

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

from dms_pipelines.config import ImageSettings
from dms_pipelines.devtools.image_server import ImageServer
from dms_pipelines.devtools.sample.images import SampleImages
from dms_pipelines.images.probe import ImageCheck, changed_checks, probe_images
from dms_pipelines.operations.db import engine_for
from dms_pipelines.operations.image_store import cached_checks, save_checks

STORE_CHUNK = 10_000  # URLs read from and saved to the store at a time: its rows as dicts are larger than the checks
GOALS = {"first": 60.0, "recheck": 10.0, "trusted": 10.0}  # seconds for 100,000 images on a 2-core machine (issue 24)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    """The resident set now (Linux /proc), 0 where there is none."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 1024 / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


def image_urls(base_url: str, count: int, per_vehicle: int = 20) -> list[str]:
    """URLs shaped like a dealer's photographs: /<dealer>/<stock id>/<nn>.jpg, 20 to a vehicle."""
    return [f"{base_url}/leeds/LS{index // per_vehicle:06d}/{index % per_vehicle + 1:02d}.jpg" for index in range(count)]


def _serve_in_process(ready, stop, counters) -> None:
    """A server process of its own (--server-process): the port out on `ready`, then the counters out on `counters` once `stop` is set."""
    server = ImageServer(SampleImages().resolve).start()
    ready.put(server.port)
    stop.wait()
    counters.put({"requests": server.requests, "not_modified": server.not_modified})
    server.stop()


class _Server:
    """The sample image server, in a thread of this process or in a process of its own."""

    def __init__(self, own_process: bool) -> None:
        self.own_process = own_process

    def __enter__(self) -> "_Server":
        if self.own_process:
            context = multiprocessing.get_context("spawn")
            ready, self._stop, self._counters = context.Queue(), context.Event(), context.Queue()
            self._process = context.Process(target=_serve_in_process, args=(ready, self._stop, self._counters), daemon=True)
            self._process.start()
            self.base_url = f"http://127.0.0.1:{ready.get(timeout=60)}"
        else:
            self._server = ImageServer(SampleImages().resolve).start()
            self.base_url = self._server.base_url
        return self

    def counters(self) -> dict:
        if self.own_process:
            self._stop.set()
            return self._counters.get(timeout=60)
        return {"requests": self._server.requests, "not_modified": self._server.not_modified}

    def __exit__(self, *exc) -> None:
        if self.own_process:
            self._stop.set()
            self._process.join(30)
        else:
            self._server.stop()


def _phase(name: str, urls: list[str], settings: ImageSettings, engine) -> dict:
    """One check of every URL as a nightly run does it: the cache read from the store, the probe, the checks saved."""
    started = time.perf_counter()
    cached = {}
    for start in range(0, len(urls), STORE_CHUNK):
        cached.update((url, ImageCheck.from_row(row)) for url, row in cached_checks(engine, urls[start : start + STORE_CHUNK]).items())
    loaded = time.perf_counter()
    rss = {"before": _rss_mb()}
    rss["during"] = rss["before"]

    def sample(done: int, total: int) -> None:
        rss["during"] = max(rss["during"], _rss_mb())

    run = probe_images(urls, settings, cached=cached, progress=sample)
    probed = time.perf_counter()
    cached_count = len(cached)
    checks = changed_checks(cached, run.checks)  # as the image stage does: a 304 is not written back
    del cached
    saved = sum(save_checks(engine, [check.as_row() for check in checks[start : start + STORE_CHUNK]]) for start in range(0, len(checks), STORE_CHUNK))
    finished = time.perf_counter()
    seconds = finished - started
    return {
        "phase": name,
        "images": len(urls),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(urls) / seconds),
        "cache_read_seconds": round(loaded - started, 2),
        "probe_seconds": round(probed - loaded, 2),
        "save_seconds": round(finished - probed, 2),
        "cached": cached_count,
        "saved": saved,
        "requests": run.requested,
        "not_modified": run.not_modified,
        "trusted": run.trusted,
        "statuses": run.statuses,
        "failed_hosts": len(run.failed_hosts),
        "probe_rss_growth_mb": round(rss["during"] - rss["before"], 1),  # sampled every 1000 images: the checks kept, and what is in flight
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def bench_size(count: int, server_process: bool = True) -> dict:
    """Both phases for `count` images on a fresh SQLite file; run in a process of its own so its peak RSS is its own."""
    settings = ImageSettings(allowed_private_hosts=["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="image_bench_") as folder, _Server(server_process) as server:
        engine = engine_for(f"sqlite:///{Path(folder) / 'operations.sqlite'}")
        urls = image_urls(server.base_url, count)
        phases = [_phase("first", urls, settings, engine), _phase("recheck", urls, settings, engine)]
        # revalidate_after_hours: checks younger than that are trusted without a request (a run soon after another)
        phases.append(_phase("trusted", urls, settings.model_copy(update={"revalidate_after_hours": 24.0}), engine))
        engine.dispose()
        return {"images": count, "phases": phases, "server": server.counters(), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _bench_size_into(queue, count: int, server_process: bool) -> None:
    queue.put(bench_size(count, server_process))


def _in_fresh_process(count: int, server_process: bool) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_bench_size_into, args=(queue, count, server_process))
    process.start()
    figures = queue.get()
    process.join()
    return figures


def run_image_bench(count: int = 100_000, server_process: bool = True, echo=print) -> dict:
    """The benchmark at N/10 then N images, each size in a fresh process; one line per phase, and the figures as a dict."""
    sizes = [max(1, count // 10), count]
    results = {size: _in_fresh_process(size, server_process) for size in sizes}
    for size in sizes:
        for phase in results[size]["phases"]:
            goal = GOALS[phase["phase"]] * size / 100_000
            echo(
                f"{phase['phase']:>7} {size:>7} images: {phase['seconds']:6.2f} s ({phase['images_per_second']} images/s; probe {phase['probe_seconds']} s, "
                f"cache read {phase['cache_read_seconds']} s, save {phase['save_seconds']} s), {phase['requests']} requests, {phase['not_modified']} not modified, "
                f"RSS +{phase['probe_rss_growth_mb']} MB during the probe, peak RSS {phase['peak_rss_mb']} MB; goal {goal:.1f} s: {'met' if phase['seconds'] <= goal else 'MISSED'}"
            )
    echo(f"peak RSS: {results[sizes[0]]['peak_rss_mb']} MB at {sizes[0]} images, {results[count]['peak_rss_mb']} MB at {count} images")
    figures = {
        "images": count,
        "server_process": server_process,
        "first_seconds": results[count]["phases"][0]["seconds"],
        "recheck_seconds": results[count]["phases"][1]["seconds"],
        "peak_rss_mb": {str(size): results[size]["peak_rss_mb"] for size in sizes},
        "runs": {str(size): results[size] for size in sizes},
    }
    echo(json.dumps(figures, indent=2))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dms_pipelines.devtools.image_bench", description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--server-thread", action="store_true", help="run the image server in a thread of the bench's process (default: a process of its own, as a remote host would be)")
    args = parser.parse_args(argv)
    run_image_bench(args.images, not args.server_thread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
