"""The job machinery against a real redis-server and a real SQLCipher store."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from sqlalchemy import select

from appliance.records import (
    Candidate,
    JobRun,
    OrgKind,
    OrgUnit,
    RunStatus,
    SubjectKind,
    utcnow,
)
from appliance.store import Store
from workers import runtime
from workers.jobs import (
    PERIODIC_JOBS,
    REGISTRY,
    SERIALIZER,
    JobContext,
    get_job_logger,
    job,
    queue_for,
    schedule_periodic,
    settle_abandoned_runs,
)
from workers.maintenance import checkpoint_database, verify_blobs

NAME = "吴子涵"
PHONE = "13800138000"
EMAIL = "wu.zihan@example.com"

SEEN: list[tuple[int, Store, tuple[object, ...]]] = []
READ: list[str] = []


@job(queue="analysis", retries=0)
def note_call(ctx: JobContext, *ids: int | str) -> None:
    SEEN.append((os.getpid(), ctx.store, ids))
    ctx.progress(0.5)


@job(queue="analysis", retries=1, backoff=(0,))
def always_fails(ctx: JobContext, record_id: int) -> None:
    raise LookupError(f"record {record_id} is missing")


@job(queue="analysis", retries=1, backoff=(1,))
def fails_with_backoff(ctx: JobContext, record_id: int) -> None:
    raise LookupError(f"record {record_id} is missing")


@job(queue="analysis", retries=0)
def logs_lines(ctx: JobContext, record_id: int) -> None:
    ctx.logger.info("checking record %d", record_id)
    logging.getLogger(__name__ + ".plain").info("a plain module logger, record %d", record_id)
    ctx.logger.warning("record %d checked", record_id)


@job(queue="documents", retries=0)
def read_candidate(ctx: JobContext, candidate_id: int, subject_id: str) -> None:
    with ctx.store.session() as session:
        candidate = session.get(Candidate, candidate_id)
        assert candidate is not None and candidate.subject_id == subject_id
        READ.append(candidate.name)
    ctx.logger.info("read candidate %d", candidate_id)


@pytest.fixture(autouse=True)
def _clear_seen() -> Iterator[None]:
    SEEN.clear()
    READ.clear()
    yield


def run_of(store: Store, rq_job_id: str) -> JobRun:
    with store.session() as session:
        return session.scalars(select(JobRun).where(JobRun.rq_job_id == rq_job_id)).one()


def all_runs(store: Store) -> list[JobRun]:
    with store.session() as session:
        return list(session.scalars(select(JobRun).order_by(JobRun.id)))


def redis_values(redis: Redis) -> Iterator[bytes]:
    """Every value stored under every key, decompressed where rq compressed it."""
    for key in redis.scan_iter():
        kind = redis.type(key).decode()
        if kind == "hash":
            values = list(redis.hgetall(key).values())
        elif kind == "list":
            values = redis.lrange(key, 0, -1)
        elif kind == "zset":
            values = redis.zrange(key, 0, -1)
        elif kind == "set":
            values = list(redis.smembers(key))
        elif kind == "stream":
            values = [v for _, fields in redis.xrange(key) for v in fields.values()]
        else:
            values = [redis.get(key) or b""]
        for value in [key, *values]:
            yield value
            try:
                yield zlib.decompress(value)
            except zlib.error:
                pass


def test_enqueued_job_runs_in_a_burst_worker_and_succeeds(box, burst_worker) -> None:
    """An enqueued job runs once with its ids; its JobRun ends succeeded, progress 1.0, timed."""
    subject_id = uuid.uuid4().hex
    run = note_call.enqueue(box.store, box.redis, 7, subject_id)
    assert run_of(box.store, run.rq_job_id).status is RunStatus.QUEUED

    burst_worker()

    assert [ids for _, _, ids in SEEN] == [(7, subject_id)]
    done = run_of(box.store, run.rq_job_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.name == "test_jobs.note_call" and done.queue == "analysis"
    assert done.progress == 1.0
    assert done.attempts == 1
    assert done.error is None
    assert done.started_at is not None and done.ended_at is not None
    assert done.created_at <= done.started_at <= done.ended_at


def test_failing_job_is_retried_then_recorded_failed(box, burst_worker) -> None:
    """A job that raises runs retries+1 times and its JobRun ends failed with the error."""
    run = always_fails.enqueue(box.store, box.redis, 7)

    burst_worker()

    failed = run_of(box.store, run.rq_job_id)
    assert failed.status is RunStatus.FAILED
    assert failed.attempts == 2
    assert failed.error == "LookupError: record 7 is missing"
    assert failed.ended_at is not None
    rq_job = Job.fetch(run.rq_job_id, connection=box.redis, serializer=SERIALIZER)
    assert rq_job.get_status() is JobStatus.FAILED


def test_retry_waits_out_its_backoff_through_the_scheduler(box, burst_worker) -> None:
    """A failed attempt is `retrying` during its backoff; the scheduler requeues it after."""
    run = fails_with_backoff.enqueue(box.store, box.redis, 9)

    burst_worker()
    waiting = run_of(box.store, run.rq_job_id)
    assert waiting.status is RunStatus.RETRYING
    assert waiting.attempts == 1
    assert waiting.error == "LookupError: record 9 is missing"
    assert waiting.ended_at is None
    rq_job = Job.fetch(run.rq_job_id, connection=box.redis, serializer=SERIALIZER)
    assert rq_job.get_status() is JobStatus.SCHEDULED

    deadline = time.monotonic() + 10
    while run_of(box.store, run.rq_job_id).status is RunStatus.RETRYING:
        assert time.monotonic() < deadline, "the retry was never requeued"
        time.sleep(0.3)
        burst_worker()  # with_scheduler: moves due retries to the queue, then works it

    failed = run_of(box.store, run.rq_job_id)
    assert failed.status is RunStatus.FAILED
    assert failed.attempts == 2


@pytest.mark.parametrize("personal", [NAME, EMAIL, PHONE, 42.0, None, b"\x00" * 16, True])
def test_enqueue_with_anything_but_ids_writes_nothing(box, personal: object) -> None:
    """A non-id argument raises TypeError before a JobRun is written or a job is queued."""
    with pytest.raises(TypeError, match="record ids"):
        note_call.enqueue(box.store, box.redis, 7, personal)

    assert all_runs(box.store) == []
    assert queue_for("analysis", box.redis).count == 0
    assert list(box.redis.scan_iter("rq:job:*")) == []


def test_redis_holds_ids_only_before_and_after_the_job(box, burst_worker) -> None:
    """The job hash in Redis carries the job name and ids; the name, phone and e-mail never
    reach Redis, though the job reads them through the store."""
    with box.store.transaction() as session:
        unit = OrgUnit(kind=OrgKind.HQ, name="总院", code=f"hq-{uuid.uuid4().hex[:8]}")
        session.add(unit)
        session.flush()
        unit.place_under(None)
        subject = box.store.new_subject(session, SubjectKind.CANDIDATE)
        candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="test")
        session.add(candidate)
        candidate.name, candidate.phone, candidate.email = NAME, PHONE, EMAIL
        session.flush()
        ids = (candidate.id, subject.id)

    run = read_candidate.enqueue(box.store, box.redis, *ids)

    job_hash = box.redis.hgetall(f"rq:job:{run.rq_job_id}")
    func, _instance, args, kwargs = json.loads(zlib.decompress(job_hash[b"data"]))
    assert func == "workers.jobs.run_job"
    assert args == ["test_jobs.read_candidate", *ids]
    assert kwargs == {}
    assert job_hash[b"description"].decode() == f"test_jobs.read_candidate({ids[0]}, {ids[1]})"
    personal = [NAME.encode(), PHONE.encode(), EMAIL.encode(), b"wu.zihan"]
    for value in redis_values(box.redis):
        assert not any(p in value for p in personal)

    burst_worker(queues=("documents",))

    assert READ == [NAME]
    assert run_of(box.store, run.rq_job_id).status is RunStatus.SUCCEEDED
    for value in redis_values(box.redis):
        assert not any(p in value for p in personal)


def test_job_logger_stamps_the_job_id_on_each_line(box, burst_worker, caplog) -> None:
    """Every line a job logs carries its rq job id, in the record and in the worker format."""
    run = logs_lines.enqueue(box.store, box.redis, 5)
    stream = io.StringIO()
    handler = runtime.log_handler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            burst_worker()
    finally:
        logging.getLogger().removeHandler(handler)

    job_records = [r for r in caplog.records if r.name.startswith("test_jobs")]
    assert len(job_records) == 3
    for record in job_records:
        assert getattr(record, "job_id", None) == run.rq_job_id
    lines = stream.getvalue().splitlines()
    job_lines = [line for line in lines if re.search(r" test_jobs(\.plain)? \[", line)]
    assert len(job_lines) == 3
    for line in job_lines:
        assert f"job_id={run.rq_job_id} " in line
    # rq's own lines use the same format; outside a job they say job_id=-.
    assert any(
        "rq.worker" in line and "job_id=-" in line for line in stream.getvalue().splitlines()
    )


def test_job_logger_outside_a_job_says_so() -> None:
    """A job logger with no bound id and no running job stamps job_id=-."""
    logger = get_job_logger("test_jobs.outside")
    _msg, kwargs = logger.process("x", {})
    assert kwargs["extra"]["job_id"] == "-"


def test_worker_runs_several_jobs_in_one_process_with_one_store(box, burst_worker) -> None:
    """SimpleWorker: two jobs run in this very process and share the process-wide store."""
    note_call.enqueue(box.store, box.redis, 1)
    note_call.enqueue(box.store, box.redis, 2)

    burst_worker()

    assert [ids for _, _, ids in SEEN] == [(1,), (2,)]
    (pid_a, store_a, _), (pid_b, store_b, _) = SEEN
    assert pid_a == pid_b == os.getpid()
    assert store_a is store_b is runtime.current_store()


def test_max_jobs_makes_the_worker_exit_after_that_many_jobs(box, burst_worker) -> None:
    """With max_jobs=2 the worker returns after two jobs and leaves the third queued."""
    runs = [note_call.enqueue(box.store, box.redis, n) for n in (1, 2, 3)]

    burst_worker(max_jobs=2)

    assert [ids for _, _, ids in SEEN] == [(1,), (2,)]
    statuses = [run_of(box.store, r.rq_job_id).status for r in runs]
    assert statuses == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.QUEUED]
    assert queue_for("analysis", box.redis).count == 1


def test_schedule_periodic_enqueues_the_maintenance_job_once_per_interval(
    box, burst_worker
) -> None:
    """The hourly checkpoint is enqueued once, not again within the hour, and again after."""
    hourly = tuple(p for p in PERIODIC_JOBS if p.name.endswith("checkpoint_database"))
    assert [p.every_s for p in hourly] == [3600]
    first = schedule_periodic(box.store, box.redis, hourly)
    assert [r.name for r in first] == ["workers.maintenance.checkpoint_database"]
    assert first[0].queue == "maintenance"
    assert schedule_periodic(box.store, box.redis, hourly) == []  # still queued
    assert queue_for("maintenance", box.redis).count == 1

    burst_worker(queues=("maintenance",))
    assert run_of(box.store, first[0].rq_job_id).status is RunStatus.SUCCEEDED
    assert schedule_periodic(box.store, box.redis, hourly) == []  # ran within the hour

    with box.store.transaction() as session:
        session.get(JobRun, first[0].id).created_at = utcnow() - timedelta(seconds=3601)
    again = schedule_periodic(box.store, box.redis, hourly)
    assert [r.name for r in again] == ["workers.maintenance.checkpoint_database"]
    assert len(all_runs(box.store)) == 2


def test_the_audit_log_is_sealed_periodically(store) -> None:
    """Every 5 minutes the maintenance job seals events that no checkpoint covers yet,
    once they are older than `audit.checkpoint_minutes` (a quiet box still gets sealed)."""
    from appliance.settings import AuditSettings
    from compliance import audit
    from compliance.actors import Actor
    from workers.maintenance import seal_audit_log

    assert [p.every_s for p in PERIODIC_JOBS if p.name.endswith("seal_audit_log")] == [300]
    audit.configure(store, AuditSettings())  # 1000 events or 10 minutes
    audit.record(store, Actor.system("test"), "read", "candidates:1", "processing")
    assert audit.latest_checkpoint(store) is None  # not due when it was recorded
    ctx = JobContext(store=store, run_id=0, rq_job_id="t", logger=get_job_logger("t", "t"))
    seal_audit_log(ctx)
    assert audit.latest_checkpoint(store) is None  # still not due
    # As if the 10 minutes had passed: a zero-minute cadence makes any unsealed event due.
    audit.configure(
        store,
        AuditSettings.model_construct(
            checkpoint_every=1000, checkpoint_minutes=0, retention_days=184
        ),
    )
    seal_audit_log(ctx)
    sealed = audit.latest_checkpoint(store)
    assert sealed is not None and sealed.size == 1
    assert audit.verify_live(store).ok


def test_abandoned_runs_are_marked_failed(box) -> None:
    """A run left `running` by a dead worker, whose rq job is gone, is settled as failed;
    a run just enqueued is left alone."""
    with box.store.transaction() as session:
        old = JobRun(
            rq_job_id=uuid.uuid4().hex,
            name="test_jobs.note_call",
            queue="analysis",
            status=RunStatus.RUNNING,
            created_at=utcnow() - timedelta(minutes=5),
        )
        young = JobRun(
            rq_job_id=uuid.uuid4().hex,
            name="test_jobs.note_call",
            queue="analysis",
            status=RunStatus.QUEUED,
        )
        session.add_all([old, young])

    assert settle_abandoned_runs(box.store, box.redis) == 1

    settled = run_of(box.store, old.rq_job_id)
    assert settled.status is RunStatus.FAILED
    assert settled.error is not None and settled.error.startswith("JobAbandoned:")
    assert run_of(box.store, young.rq_job_id).status is RunStatus.QUEUED


def test_job_functions_can_be_called_directly(box) -> None:
    """The decorated function still runs as a plain call, given a context."""
    ctx = JobContext(
        store=box.store, run_id=0, rq_job_id="direct", logger=get_job_logger("t", "direct")
    )
    checkpoint_database(ctx)
    note_call(ctx, 3)
    assert [ids for _, _, ids in SEEN] == [(3,)]


def test_verify_blobs_fails_naming_only_the_damaged_blob(box, burst_worker) -> None:
    """verify_blobs passes good blobs and shredded ones, and fails with the damaged blob's id."""
    with box.store.transaction() as session:
        subject = box.store.new_subject(session, SubjectKind.CANDIDATE)
        gone = box.store.new_subject(session, SubjectKind.CANDIDATE)
    good = box.store.blobs.put(subject.id, [b"resume " * 1000])
    damaged = box.store.blobs.put(subject.id, [b"recording " * 1000])
    box.store.blobs.put(gone.id, [b"shredded"])
    box.store.keyring.destroy(gone.id)
    path = box.store.blobs.root / damaged[:2] / damaged
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))
    try:
        run = verify_blobs.enqueue(box.store, box.redis)
        burst_worker(queues=("maintenance",))
        failed = run_of(box.store, run.rq_job_id)
        assert failed.status is RunStatus.FAILED
        assert failed.attempts == 1  # retries=0
        assert failed.error == f"BlobsDamaged: 1 blob(s) failed authentication: {damaged}"
        assert good not in failed.error
    finally:
        for blob_id in list(box.store.blobs.blob_ids()):
            box.store.blobs.delete(blob_id)


@pytest.mark.parametrize(
    ("retries", "backoff", "waits"),
    [(3, (10, 60, 300), [10, 60, 300]), (1, (10, 60, 300), [10]), (4, (5, 30), [5, 30, 30, 30])],
)
def test_backoff_gives_the_first_retry_the_first_wait(redis_box, retries, backoff, waits) -> None:
    """backoff[i] is the wait before retry i+1, whatever rq's own alignment of intervals."""
    fn = job(queue="analysis", retries=retries, backoff=backoff)(lambda ctx: None)
    REGISTRY.pop(fn.name)
    retry = fn.spec.retry()
    assert retry is not None and retry.max == retries and retry.intervals == waits
    rq_job = Job.create(func="workers.jobs.run_job", connection=redis_box.redis, retry=retry)
    seen = []
    for _ in range(retries):
        seen.append(rq_job.get_retry_interval())
        rq_job.retries_left -= 1
    assert seen == waits


def test_decorator_refuses_an_unknown_queue() -> None:
    """Jobs go on one of the box's five queues, checked when the job is declared."""
    with pytest.raises(ValueError, match="unknown queue"):
        job(queue="default")
    assert "test_jobs.note_call" in REGISTRY
