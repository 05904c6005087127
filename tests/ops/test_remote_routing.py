# ruff: noqa: F811 (the fixtures of test_remote_worker are imported, then requested by name)
"""Routing answers to the scale-out worker hosts (issue 9, item 3): with `[workers]
transcription = "remote"` the box hands each answer's transcription to the worker hosts
(`analysis-remote`, ids only), a real `workers.remote` process without the data dir
transcribes it through the internal API, and the box finishes the analysis and the score
from that transcript without running ASR itself; with "box" nothing goes to the hosts.

Real parts: the encrypted store, the box's redis-server (unix socket and its TLS port), the
mTLS internal API, the remote worker as its own process and the box's rq worker.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from sqlalchemy import select

from appliance.queue import redis_worker_password
from appliance.records import AnswerAnalysis, InterviewSession, JobRun, ScoreReport
from appliance.settings import Settings, WorkerSettings
from appliance.store import Store
from certs.authority import WorkerCredentials, issue_worker_certificate
from tests.conftest import Box
from tests.ops.test_remote_worker import (  # noqa: F401 (fixtures used by name)
    CLIP,
    InternalApi,
    ScaleOutRedis,
    _transcript,
    _without_data_dir,
    internal_api,
    scaleout_redis,
    worker_home,
)
from tests.workers.test_analysis_pipeline import (  # noqa: F401 (autouse fixture)
    approve_assessments,
    give_consents,
    make_interview,
    own_profile_and_settings,
)
from workers import runtime
from workers.analysis import asr
from workers.analysis import jobs as analysis
from workers.jobs import SERIALIZER, queue_for
from workers.remote import REMOTE_QUEUE, BoxRefused, InternalApiClient, WorkerIdentity

SECOND_CLIP = CLIP.parent / "zh_01_nurse_complaint.wav"
WORKER = "gpu-1"
# Consents without face analysis: the clips are audio only, and faces are not routed.
CONSENTS = {"recording": True, "ai_scoring": True}


def _routed(settings: Settings, transcription: str) -> Settings:
    workers = WorkerSettings(transcription=transcription)
    return settings.model_copy(update={"workers": workers})


@pytest.fixture
def remote(settings: Settings) -> Settings:
    """The box's settings with transcription on the worker hosts, used by its jobs."""
    routed = _routed(settings, "remote")
    analysis.configure(routed)
    return routed


@pytest.fixture
def no_box_asr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The box's own transcriber must not run: any use of it fails the answer's asr step."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the box ran its own ASR although a worker host transcribed")

    monkeypatch.setattr(asr, "transcriber", refuse)
    monkeypatch.setattr(analysis, "transcribe", refuse)


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """rq installs SIGINT/SIGTERM handlers for its workers; put pytest's back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    runtime.close_store()


def _remote_worker(
    api: InternalApi, store: Store, redis: ScaleOutRedis, creds: WorkerCredentials
) -> None:
    """`python -m workers.remote --redis ... --burst` in a process without the data dir."""
    password = creds.cert_path.parent / "redis-password"
    password.write_text(redis_worker_password(store.keys, creds.cert_path.stem))
    done = _without_data_dir(
        store.data_dir, sys.executable, "-m", "workers.remote", "--box", api.url,
        "--ca", str(creds.ca_path), "--cert", str(creds.cert_path), "--key", str(creds.key_path),
        "--redis", redis.address, "--redis-password-file", str(password), "--burst",
        "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _analyses(store: Store, answer_ids: list[int]) -> dict[int, AnswerAnalysis]:
    with store.session() as db:
        rows = db.scalars(select(AnswerAnalysis).where(AnswerAnalysis.answer_id.in_(answer_ids)))
        return {row.answer_id: row for row in rows}


def _runs(store: Store, queue: str) -> list[tuple[str, str]]:
    with store.session() as db:
        rows = db.scalars(select(JobRun).where(JobRun.queue == queue).order_by(JobRun.id))
        return [(row.name, row.status.value) for row in rows]


def _session(store: Store, session_id: int) -> tuple[str | None, str | None]:
    with store.session() as db:
        session = db.get(InterviewSession, session_id)
        assert session is not None
        return session.analysis_status, session.analysis_error


def test_remote_transcription_then_the_box_finishes_and_scores(
    store: Store,
    remote: Settings,
    internal_api: InternalApi,
    scaleout_redis: ScaleOutRedis,
    worker_home: Path,
    no_box_asr: None,
    restore_signals: None,
) -> None:
    """Both answers go to `analysis-remote` (ids only); the worker host transcribes them
    through the internal API; the box's analyse_answer uses those transcripts (its own
    transcriber is never called), and the session is scored once both are done."""
    approve_assessments(store, ("ai_scoring",))
    clips = [CLIP.read_bytes(), SECOND_CLIP.read_bytes()]
    interview = make_interview(store, videos=clips, consents=CONSENTS)
    box = scaleout_redis.box

    runs = analysis.enqueue_session(store, box, interview.session_id)
    remote_queue = Queue(REMOTE_QUEUE, connection=box, serializer=SERIALIZER)
    assert remote_queue.job_ids == [run.rq_job_id for run in runs]
    assert [list(job.args) for job in remote_queue.jobs] == [[i] for i in interview.answer_ids]
    assert queue_for("analysis", box).count == 0
    waiting = _analyses(store, interview.answer_ids)
    assert {(r.status.value, r.step) for r in waiting.values()} == {("queued", "asr")}
    assert _session(store, interview.session_id) == ("running", None)

    creds = issue_worker_certificate(internal_api.certs_dir, WORKER, worker_home / "tls")
    _remote_worker(internal_api, store, scaleout_redis, creds)

    assert _runs(store, REMOTE_QUEUE) == [(analysis.REMOTE_JOB_NAME, "succeeded")] * 2
    for run in runs:
        job = Job.fetch(run.rq_job_id, connection=box, serializer=SERIALIZER)
        assert job.get_status() == JobStatus.FINISHED
    analysis_queue = queue_for("analysis", box)
    assert [list(job.args) for job in analysis_queue.jobs] == [
        [analysis.analyse_answer.name, answer_id] for answer_id in interview.answer_ids
    ]
    worker_models = {i: str(_transcript(store, i)["model"]) for i in interview.answer_ids}  # type: ignore[index]

    runtime.run_worker(remote, ("analysis",), burst=True)

    done = _analyses(store, interview.answer_ids)
    for answer_id, row in done.items():
        assert (row.status.value, row.step, row.error) == ("done", None, None)
        assert row.model_versions[analysis.ASR_BY] == f"worker:{WORKER}"
        assert row.model_versions["asr"] == worker_models[answer_id]
        transcript = _transcript(store, answer_id)
        assert transcript is not None and transcript["language"] == "zh"
    assert _session(store, interview.session_id) == ("done", None)
    assert _runs(store, "analysis") == [
        (analysis.analyse_answer.name, "succeeded"),
        (analysis.analyse_answer.name, "succeeded"),
        (analysis.score_session.name, "succeeded"),
    ]
    with store.session() as db:
        report = db.scalars(
            select(ScoreReport).where(ScoreReport.session_id == interview.session_id)
        ).one()
        assert not set(report.model_versions) & analysis.ROUTING_KEYS
        assert report.model_versions["asr"] in worker_models.values()


def test_a_failing_remote_job_marks_the_answer_failed_at_asr(
    store: Store,
    remote: Settings,
    internal_api: InternalApi,
    scaleout_redis: ScaleOutRedis,
    worker_home: Path,
    restore_signals: None,
) -> None:
    """A recording the worker host cannot decode: it reports the failure to the box, and the
    answer's analysis and the session say failed at asr, naming the worker; nothing is
    queued on the box for it."""
    interview = make_interview(store, videos=[b"not a recording at all"], consents=CONSENTS)
    answer_id = interview.answer_ids[0]
    (run,) = analysis.enqueue_session(store, scaleout_redis.box, interview.session_id)

    creds = issue_worker_certificate(internal_api.certs_dir, WORKER, worker_home / "tls")
    _remote_worker(internal_api, store, scaleout_redis, creds)

    job = Job.fetch(run.rq_job_id, connection=scaleout_redis.box, serializer=SERIALIZER)
    assert job.get_status() == JobStatus.FAILED
    row = _analyses(store, [answer_id])[answer_id]
    assert (row.status.value, row.step) == ("failed", "asr")
    assert (row.error or "").startswith(f"transcription on worker {WORKER} failed: ")
    status, error = _session(store, interview.session_id)
    assert status == "failed"
    assert (error or "").startswith(f"answer {answer_id}: asr: transcription on worker {WORKER}")
    assert _runs(store, REMOTE_QUEUE) == [(analysis.REMOTE_JOB_NAME, "failed")]
    assert queue_for("analysis", scaleout_redis.box).count == 0
    assert analysis.reconcile_remote(store, scaleout_redis.box) == 0  # already closed


def test_a_withdrawn_consent_is_a_refusal_not_an_asr_fault(
    store: Store,
    remote: Settings,
    internal_api: InternalApi,
    scaleout_redis: ScaleOutRedis,
    worker_home: Path,
) -> None:
    """The candidate withdraws the recording consent while the answer waits for a worker
    host: the box refuses it the task, and its failure report leaves step `consent` on the
    answer (PIPL Art. 15), not an ASR fault. A report without a reason is refused."""
    interview = make_interview(store, videos=[CLIP.read_bytes()], consents=CONSENTS)
    answer_id = interview.answer_ids[0]
    (run,) = analysis.enqueue_session(store, scaleout_redis.box, interview.session_id)
    creds = issue_worker_certificate(internal_api.certs_dir, WORKER, worker_home / "tls")
    identity = WorkerIdentity(creds.cert_path, creds.key_path, creds.ca_path)
    client = InternalApiClient(internal_api.url, identity.tls())
    with pytest.raises(BoxRefused, match="HTTP 400"):
        client.post_failure(answer_id, "  ", run.rq_job_id)
    give_consents(store, interview.subject_id, {"recording": False})
    with pytest.raises(BoxRefused, match="HTTP 409") as refused:
        client.task(answer_id)

    client.post_failure(answer_id, f"BoxRefused: {refused.value}", run.rq_job_id)

    row = _analyses(store, [answer_id])[answer_id]
    assert (row.status.value, row.step, row.error) == (
        "failed",
        "consent",
        analysis.NO_RECORDING_CONSENT,
    )
    assert _runs(store, REMOTE_QUEUE) == [(analysis.REMOTE_JOB_NAME, "failed")]


def test_a_remote_job_that_could_not_report_is_closed_by_reconcile(
    store: Store, remote: Settings, scaleout_redis: ScaleOutRedis, restore_signals: None
) -> None:
    """A worker that fails without reaching the box (here: never configured) leaves the job
    in rq's failed registry; `reconcile_remote` closes the JobRun and the answer, once."""
    interview = make_interview(store, videos=[CLIP.read_bytes()], consents=CONSENTS)
    answer_id = interview.answer_ids[0]
    (run,) = analysis.enqueue_session(store, scaleout_redis.box, interview.session_id)
    worker = SimpleWorker([REMOTE_QUEUE], connection=scaleout_redis.box, serializer=SERIALIZER)
    worker.work(burst=True)
    assert _runs(store, REMOTE_QUEUE) == [(analysis.REMOTE_JOB_NAME, "queued")]

    assert analysis.reconcile_remote(store, scaleout_redis.box) == 1
    assert analysis.reconcile_remote(store, scaleout_redis.box) == 0
    row = _analyses(store, [answer_id])[answer_id]
    assert (row.status.value, row.step) == ("failed", "asr")
    assert row.error == "transcription remote failed: the worker host's job failed"
    assert _runs(store, REMOTE_QUEUE) == [(analysis.REMOTE_JOB_NAME, "failed")]
    assert run.rq_job_id in set(
        Queue(REMOTE_QUEUE, connection=scaleout_redis.box).failed_job_registry.get_job_ids()
    )


def test_box_transcription_sends_nothing_to_the_worker_hosts(redis_box: Box) -> None:
    """The default: the answer's analyse_answer is on the box's own `analysis` queue."""
    redis_box.redis.flushdb()
    settings = _routed(redis_box.settings, "box")
    analysis.configure(settings)
    assert redis_box.settings.workers.transcription == "box"  # the default
    interview = make_interview(redis_box.store, videos=[CLIP.read_bytes()], consents=CONSENTS)
    answer_id = interview.answer_ids[0]

    run = analysis.enqueue_answer(redis_box.store, redis_box.redis, answer_id)

    assert (run.name, run.queue) == (analysis.analyse_answer.name, "analysis")
    assert [list(job.args) for job in queue_for("analysis", redis_box.redis).jobs] == [
        [analysis.analyse_answer.name, answer_id]
    ]
    assert Queue(REMOTE_QUEUE, connection=redis_box.redis).count == 0
    assert not _remote_keys(redis_box.redis)
    redis_box.redis.flushdb()


def _remote_keys(redis: Redis) -> list[bytes]:
    return list(redis.scan_iter(match=f"rq:queue:{REMOTE_QUEUE}*"))
