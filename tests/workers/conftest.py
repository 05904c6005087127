"""Worker tests: the shared real box (tests/conftest.py) with a clean queue per test."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import delete

from appliance.records import JobRun
from appliance.settings import WorkerSettings
from tests.conftest import Box
from workers import runtime


@pytest.fixture
def box(redis_box: Box) -> Iterator[Box]:
    """The shared box with an empty queue and no job runs; the worker's store closed after."""
    redis_box.redis.flushdb()
    with redis_box.store.transaction() as session:
        session.execute(delete(JobRun))
    yield redis_box
    runtime.close_store()


@pytest.fixture
def burst_worker(box: Box) -> Callable[..., None]:
    """Run a burst worker in this process, as `run_worker` does in production.

    rq installs SIGINT/SIGTERM handlers for its worker; they are put back after,
    so Ctrl-C still stops pytest.
    """

    def work(queues: tuple[str, ...] = ("analysis",), max_jobs: int | None = None) -> None:
        settings = box.settings
        if max_jobs is not None:
            settings = settings.model_copy(update={"workers": WorkerSettings(max_jobs=max_jobs)})
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            runtime.run_worker(settings, queues, burst=True)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    return work
