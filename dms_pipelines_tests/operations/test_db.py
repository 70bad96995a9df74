"""The operational database: processes that start together on a new database all get their tables."""

import multiprocessing

from sqlalchemy import inspect

from dms_pipelines.operations.db import engine_for, metadata


def _open_when_told(url: str, start) -> None:
    start.wait(10)
    engine_for(url)


def test_processes_creating_the_tables_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_open_when_told, args=(url, start)) for _ in range(6)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(30)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert set(metadata.tables) <= set(inspect(engine_for(url)).get_table_names())
