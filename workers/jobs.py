"""Every background job goes through here: one decorator, one runner, one logger.

Following redash's `redash/worker.py` and microblog's `launch_task`:

- `@job(queue=...)` declares a job once: its queue, timeout, retries with
  backoff and how long rq keeps its failure and result. The function is
  registered by its dotted name and gets `.enqueue(store, redis, *ids)`.
- Job arguments are record ids only (`appliance.queue.check_payload`): Redis
  holds the queue, never personal data, so a job reads its records through
  the store. rq stores the payload as JSON, not pickle, so what is in Redis
  can be read by an auditor and cannot smuggle objects in.
- Every job runs through `run_job`, which keeps the `JobRun` row (what a
  person waits for: status, progress, attempts, error) in the database; Redis
  only drives the queue. A job returns nothing to Redis: its results are
  records it writes.
- Job code raises errors whose messages name ids and counts only ("candidate
  42 has no resume blob"), never names, numbers or text from a record: the
  message is stored in `job_runs.error`, in rq's failed-job record and in the
  worker log.

Enqueue after the transaction that wrote the records a job reads has
committed; the worker may start it at once.
"""

from __future__ import annotations

import functools
import importlib
import logging
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from appliance.queue import QUEUES, check_payload
from appliance.records import JobRun, RunStatus, utcnow
from appliance.store import Store

log = logging.getLogger(__name__)

SERIALIZER = "json"
"""rq's JSON serializer, for queues and workers alike (see the module docstring)."""
ERROR_LIMIT = 500
DAY = 24 * 3600
# Only modules of this package are imported on a job name read from Redis; jobs
# defined elsewhere (tests) must be imported by the worker process beforehand.
_IMPORTABLE_PREFIX = "workers."


class UnknownJob(LookupError):
    """A job name in Redis that no registered job answers to (code and queue out of step)."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    function: Callable[..., object]
    queue: str
    timeout: int
    retries: int
    backoff: tuple[int, ...]
    failure_ttl: int
    result_ttl: int

    def retry(self) -> Retry | None:
        """rq's Retry with one wait per retry: rq aligns a shorter or longer interval list
        to the *last* retries (`Job.get_retry_interval`), so give it exactly `retries`."""
        if not self.retries:
            return None
        last = len(self.backoff) - 1
        waits = [self.backoff[min(i, last)] for i in range(self.retries)]
        return Retry(max=self.retries, interval=waits)


REGISTRY: dict[str, JobSpec] = {}


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds `job_id` to every record; the worker's log format prints it (`WORKER_LOG_FORMAT`)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        job_id = (self.extra or {}).get("job_id") or _current_rq_job_id() or "-"
        kwargs["extra"] = {**kwargs.get("extra", {}), "job_id": job_id}
        return msg, kwargs


def get_job_logger(name: str, job_id: str | None = None) -> JobLogger:
    """A logger whose lines carry the rq job id: the one given, else the job running now."""
    return JobLogger(logging.getLogger(name), {"job_id": job_id} if job_id else {})


def _current_rq_job_id() -> str | None:
    current = get_current_job()
    return current.id if current is not None else None


@dataclass(frozen=True)
class JobContext:
    """What a job gets besides its ids: the process-wide store and its own bookkeeping."""

    store: Store
    run_id: int
    rq_job_id: str
    logger: JobLogger = field(repr=False)

    def progress(self, fraction: float) -> None:
        """Record progress (0.0 to 1.0) in its own short transaction, so a reader sees it now."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        with self.store.write_transaction() as session:
            run = session.get(JobRun, self.run_id)
            if run is not None:
                run.progress = fraction


class JobFunction:
    """A registered job: call it directly (tests) or `.enqueue(store, redis, *ids)`."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        functools.update_wrapper(self, spec.function)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, ctx: JobContext, *ids: int | str) -> object:
        return self.spec.function(ctx, *ids)

    def enqueue(self, store: Store, redis: Redis, *ids: int | str) -> JobRun:
        """Check the ids, record a queued `JobRun`, then hand the job to rq under the same id.

        The row comes first so a job never runs without one; if Redis refuses the
        job, the row is marked failed and the error raised.
        """
        check_payload(ids)
        spec = self.spec
        run = JobRun(
            rq_job_id=uuid.uuid4().hex,
            name=spec.name,
            queue=spec.queue,
            status=RunStatus.QUEUED,
            progress=0.0,
            attempts=0,
        )
        with store.transaction() as session:
            session.add(run)
        try:
            queue_for(spec.queue, redis).enqueue_call(
                func=run_job,
                args=(spec.name, *ids),
                job_id=run.rq_job_id,
                description=f"{spec.name}({', '.join(str(i) for i in ids)})",
                timeout=spec.timeout,
                result_ttl=spec.result_ttl,
                failure_ttl=spec.failure_ttl,
                retry=spec.retry(),
            )
        except Exception as exc:
            _finish(store, run.id, RunStatus.FAILED, error=_describe(exc))
            raise
        return run


def job(
    queue: str,
    timeout: int = 600,
    retries: int = 3,
    backoff: Sequence[int] = (10, 60, 300),
    failure_ttl: int = 7 * DAY,
    result_ttl: int = DAY,
) -> Callable[[Callable[..., object]], JobFunction]:
    """Declare a job: `fn(ctx: JobContext, *ids)` on `queue`, retried `retries` times.

    `backoff[i]` is the wait in seconds before retry i+1; the last wait repeats
    when there are more retries than waits. `retries=0` means no retry.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {list(QUEUES)}")
    if retries < 0 or any(wait < 0 for wait in backoff) or (retries and not backoff):
        raise ValueError("retries must be >= 0 and backoff non-empty, non-negative seconds")

    def register(function: Callable[..., object]) -> JobFunction:
        spec = JobSpec(
            name=f"{function.__module__}.{function.__qualname__}",
            function=function,
            queue=queue,
            timeout=timeout,
            retries=retries,
            backoff=tuple(backoff),
            failure_ttl=failure_ttl,
            result_ttl=result_ttl,
        )
        REGISTRY[spec.name] = spec
        return JobFunction(spec)

    return register


def queue_for(name: str, redis: Redis) -> Queue:
    return Queue(name, connection=redis, serializer=SERIALIZER)


def job_spec(name: str) -> JobSpec:
    """The registered job `name`, importing its module if it lives in this package."""
    if name not in REGISTRY and name.startswith(_IMPORTABLE_PREFIX):
        module = name.rsplit(".", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownJob(
            f"no job named {name!r} is registered in this worker; is its module imported "
            "and is the worker running the same code version as the enqueuer?"
        ) from None


def run_job(name: str, *ids: int | str) -> None:
    """The one function rq calls: keep the `JobRun` row in step around the job itself.

    On failure the row says `retrying` if rq has a retry left for this job, else
    `failed`; the exception goes back to rq, which schedules the retry or moves
    the job to its failed registry.
    """
    from workers.runtime import current_store

    current = get_current_job()
    if current is None:
        raise RuntimeError("run_job runs inside an rq worker; call the job function directly")
    spec = job_spec(name)
    store = current_store()
    with store.write_transaction() as session:
        run = session.scalars(select(JobRun).where(JobRun.rq_job_id == current.id)).one_or_none()
        if run is None:  # put on the queue without .enqueue (e.g. `rq requeue`)
            run = JobRun(rq_job_id=current.id, name=name, queue=current.origin, attempts=0)
            session.add(run)
        run.status = RunStatus.RUNNING
        run.started_at = utcnow()
        run.ended_at = None
        run.attempts = (run.attempts or 0) + 1
        session.flush()
        run_id = run.id
    ctx = JobContext(
        store=store,
        run_id=run_id,
        rq_job_id=current.id,
        logger=get_job_logger(spec.function.__module__, current.id),
    )
    try:
        spec.function(ctx, *ids)
    except BaseException as exc:
        # rq retries while retries_left (from Retry(max=retries)) is above zero and only
        # decrements it after this returns: ask it rather than recount from attempts.
        status = RunStatus.RETRYING if current.retries_left else RunStatus.FAILED
        _finish(store, run_id, status, error=_describe(exc))
        raise
    _finish(store, run_id, RunStatus.SUCCEEDED, error=None)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]


def _finish(store: Store, run_id: int, status: RunStatus, error: str | None) -> None:
    with store.write_transaction() as session:
        run = session.get(JobRun, run_id)
        if run is None:
            return
        run.status = status
        run.error = error
        if status is RunStatus.SUCCEEDED:
            run.progress = 1.0
        if status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            run.ended_at = utcnow()


@dataclass(frozen=True)
class PeriodicJob:
    """A job enqueued by the supervisor once its last run is `every_s` seconds old."""

    name: str
    every_s: int


# The one list of periodic jobs; names (not imports) so this module stays importable
# by the job modules themselves.
PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob("workers.maintenance.checkpoint_database", every_s=3600),
    PeriodicJob("workers.maintenance.seal_audit_log", every_s=300),
    PeriodicJob("workers.privacy.apply_retention", every_s=24 * 3600),
    PeriodicJob("workers.privacy.remind_request_deadlines", every_s=4 * 3600),
    PeriodicJob("workers.invitations.send_reminders", every_s=900),
    PeriodicJob("workers.maintenance.reconcile_remote_transcriptions", every_s=600),
)

_PENDING = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING)
_RQ_DONE = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
# A row is written just before its rq job: leave young rows alone.
_SETTLE_AFTER = timedelta(minutes=1)


def schedule_periodic(
    store: Store, redis: Redis, periodic: Sequence[PeriodicJob] = PERIODIC_JOBS
) -> list[JobRun]:
    """Enqueue each periodic job whose last run was created `every_s` seconds ago or more.

    Called by the supervisor every minute; calling it again changes nothing. It
    first settles abandoned runs (`settle_abandoned_runs`), so a run whose worker
    died holds its job back for a minute at most; a run still pending in rq is
    never doubled, however old.
    """
    settle_abandoned_runs(store, redis)
    enqueued = []
    now = utcnow()
    for entry in periodic:
        spec = job_spec(entry.name)
        with store.session() as session:
            last = session.scalars(
                select(JobRun)
                .where(JobRun.name == spec.name)
                .order_by(JobRun.created_at.desc(), JobRun.id.desc())
                .limit(1)
            ).one_or_none()
        if last is not None and (
            last.status in _PENDING or now - last.created_at < timedelta(seconds=entry.every_s)
        ):
            continue
        enqueued.append(JobFunction(spec).enqueue(store, redis))
        log.info("enqueued periodic job %s", spec.name)
    return enqueued


def settle_abandoned_runs(store: Store, redis: Redis) -> int:
    """Mark failed the pending runs that rq has given up on or lost; return how many.

    A worker killed mid-job (OOM, SIGKILL, power) never reports back, so its row
    would say `running` for ever; rq has by then failed the job, or forgotten it
    once its TTLs passed.
    """
    cutoff = utcnow() - _SETTLE_AFTER
    with store.session() as session:
        pending = session.execute(
            select(JobRun.id, JobRun.rq_job_id).where(
                JobRun.status.in_(_PENDING), JobRun.created_at < cutoff
            )
        ).all()
    settled = 0
    for run_id, rq_job_id in pending:
        rq_status = _rq_status(redis, rq_job_id)
        if rq_status is not None and rq_status not in _RQ_DONE:
            continue
        with store.transaction() as session:
            run = session.get(JobRun, run_id)
            if run is None or run.status not in _PENDING:
                continue  # it reported back meanwhile
            run.status = RunStatus.FAILED
            run.ended_at = utcnow()
            run.error = (
                f"JobAbandoned: rq reports the job {rq_status or 'gone'} and it never reported "
                "back (worker stopped mid-job?)"
            )
        settled += 1
    if settled:
        log.warning("marked %d abandoned job run(s) failed", settled)
    return settled


def _rq_status(redis: Redis, rq_job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(rq_job_id, connection=redis, serializer=SERIALIZER).get_status()
    except (NoSuchJobError, InvalidJobOperation):
        return None
