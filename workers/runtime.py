"""The worker process: one store and one set of loaded models for many jobs.

rq's default worker forks a child per job, so whatever a job loads (an ASR
model, face detectors, the store's SQLCipher pool) dies with the child and is
loaded again for the next (rq issue #1088). `ApplianceWorker` is rq's
`SimpleWorker`: jobs run in the worker process itself, so what it loads stays.
To bound the memory that models leak, a worker exits after
`settings.workers.max_jobs` jobs and the supervisor (systemd in production,
`appliance run` in development) starts a fresh one.

The worker's own log lines and its jobs' lines carry `job_id=` (redash's job
log format). rq logs a job's description, which is the job name and its ids
(payloads hold ids only), and rq's exception log shows the ids too.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from typing import TextIO

from rq import SimpleWorker, get_current_job

from appliance import logs
from appliance.queue import QUEUES, WORKER_TTL, connect
from appliance.settings import Settings, load_settings
from appliance.store import Store
from compliance import audit
from workers.jobs import SERIALIZER

log = logging.getLogger(__name__)

WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] job_id=%(job_id)s %(message)s"

_store: Store | None = None


def open_store(settings: Settings) -> Store:
    """The process-wide store for `settings.data_dir`, opened on first use and then reused."""
    global _store
    if _store is not None and _store.data_dir == settings.data_dir:
        return _store
    close_store()
    _store = Store.open(settings)
    audit.configure(_store, settings)  # checkpoint cadence from the settings
    return _store


def current_store() -> Store:
    """The store jobs use: the one `run_worker` opened, else one from the environment
    (`ENCLAVE_CONFIG`, `ENCLAVE_DATA_DIR`, ...), opened once per process."""
    if _store is not None:
        return _store
    return open_store(load_settings())


def close_store() -> None:
    global _store
    if _store is not None:
        _store.close()
        _store = None


class JobIdFilter(logging.Filter):
    """Gives every record a `job_id`: the one a job logger set, the running job's, or '-'."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "job_id", None):
            current = get_current_job()
            record.job_id = current.id if current is not None else "-"
        return True


def log_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler writing the worker log format (to stderr unless `stream` is given)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(WORKER_LOG_FORMAT))
    handler.addFilter(JobIdFilter())
    return handler


def configure_logging(level: int = logging.INFO, process_name: str = "worker") -> None:
    """Set up the worker log format, unless the process already logs somewhere.

    JSON lines (`appliance.logs`, issue 9) with `job_id`, or the text format with
    ENCLAVE_LOG_FORMAT=text. With a handler on the root logger, rq adds none of its
    own, so rq's lines take this format too.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    if logs.wants_json():
        handler = logs.json_handler(process_name)
        handler.addFilter(JobIdFilter())
    else:
        handler = log_handler()
    root.addHandler(handler)
    root.setLevel(level)


class ApplianceWorker(SimpleWorker):
    """rq's in-process worker with the box's serializer: one process, many jobs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("serializer", SERIALIZER)
        # A short TTL makes an idle worker heartbeat every 15 s, so /healthz sees a
        # crashed one within a minute instead of rq's default seven.
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def worker_name(queues: Sequence[str]) -> str:
    """Unique among live workers (rq refuses a duplicate), readable in `rq info`."""
    return f"{'+'.join(queues)}@{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def run_worker(settings: Settings, queues: Sequence[str], burst: bool = False) -> None:
    """Work `queues` until `settings.workers.max_jobs` jobs are done (or, with `burst`,
    until they are empty), then return so the supervisor starts a fresh worker.

    The scheduler runs alongside (`with_scheduler`), so retries waiting out their
    backoff are put back on their queue; in burst mode it moves the ones due once,
    at the start.
    """
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise ValueError(f"unknown queue(s) {unknown}; known: {list(QUEUES)}")
    process_name = f"worker-{'+'.join(queues)}"
    configure_logging(process_name=process_name)
    store = open_store(settings)
    # The scheduler is a forked process: hand it no pooled SQLite connections.
    store.engine.dispose()
    redis = connect(settings.data_dir, store.keys)
    worker = ApplianceWorker(list(queues), connection=redis, name=worker_name(queues))
    worker.work(burst=burst, max_jobs=settings.workers.max_jobs, with_scheduler=True)
