"""Prometheus metrics (issue 9, item 5): queue depths, job runs and durations from the
database, interviews by status, component health; in the text format, over HTTP, with
counts and ids only."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import delete

from appliance.metrics import collect, make_server, render
from appliance.records import JobRun, RunStatus
from appliance.records.base import utcnow
from tests.conftest import Box
from tests.workers.test_analysis_pipeline import make_interview

SAMPLE = re.compile(
    r'^[a-z_]+(\{([a-z_]+="[^"\\]*",?)*\})? -?[0-9.e+]+$|^[a-z_]+\{.*le="\+Inf".*\} \d+$'
)


@pytest.fixture
def box(redis_box: Box) -> Iterator[Box]:
    redis_box.redis.flushdb()
    with redis_box.store.transaction() as db:
        db.execute(delete(JobRun))
    yield redis_box
    redis_box.redis.flushdb()


def add_runs(box: Box) -> None:
    """Two finished runs of one job (3 s and 100 s) and one failed run of another."""
    now = utcnow()
    with box.store.transaction() as db:
        for i, (name, seconds, status) in enumerate(
            [
                ("metrics.probe", 3, "succeeded"),
                ("metrics.probe", 100, "succeeded"),
                ("metrics.other", 20, "failed"),
            ]
        ):
            db.add(
                JobRun(
                    rq_job_id=f"metrics-{i}",
                    name=name,
                    queue="analysis",
                    status=RunStatus(status),
                    started_at=now - timedelta(seconds=seconds),
                    ended_at=now,
                )
            )


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def scrape(box: Box, path: str = "/metrics") -> tuple[int, str, str]:
    server = make_server(box.store, box.redis, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310  (loopback)
                return resp.status, resp.headers["Content-Type"], resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, "", ""
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_endpoint_reports_queues_jobs_and_interviews(box: Box) -> None:
    """Over HTTP: queue depth per queue, job runs per status, a duration histogram from
    the JobRun rows, interviews by status, both components up; valid text format."""
    Queue("maintenance", connection=box.redis).enqueue("os.getpid")
    add_runs(box)
    make_interview(box.store, [b"not a video, never analysed"])

    status, content_type, body = scrape(box)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    values = samples(body)
    assert values['enclave_queue_depth{queue="maintenance"}'] == 1
    assert values['enclave_queue_depth{queue="analysis"}'] == 0
    assert values['enclave_queue_workers{queue="analysis"}'] == 0
    assert values['enclave_job_runs{job="metrics.probe",queue="analysis",status="succeeded"}'] == 2
    assert values['enclave_job_runs{job="metrics.other",queue="analysis",status="failed"}'] == 1
    bucket = 'enclave_job_duration_seconds_bucket{{job="metrics.probe",le="{}"}}'
    assert values[bucket.format("1")] == 0
    assert values[bucket.format("5")] == 1
    assert values[bucket.format("300")] == 2
    assert values[bucket.format("+Inf")] == 2
    assert values['enclave_job_duration_seconds_count{job="metrics.probe"}'] == 2
    assert values['enclave_job_duration_seconds_sum{job="metrics.probe"}'] == pytest.approx(103)
    assert values['enclave_interviews{status="completed"}'] >= 1
    assert values['enclave_interview_analyses{status="not_analysed"}'] >= 1
    assert (
        values['enclave_up{component="database"}'] == values['enclave_up{component="redis"}'] == 1
    )
    for line in body.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert "测试" not in body  # the candidate's and the unit's names never appear


def test_only_the_metrics_path_is_served(box: Box) -> None:
    assert scrape(box, "/")[0] == 404
    assert scrape(box, "/healthz")[0] == 404


def test_a_component_that_does_not_answer_is_reported_not_raised(box: Box) -> None:
    """Redis gone: the scrape still answers, with enclave_up{component="redis"} 0."""
    dead = Redis(unix_socket_path=str(box.settings.data_dir / "no-such.sock"))
    values = samples(render(collect(box.store, dead)))
    assert values['enclave_up{component="redis"}'] == 0
    assert values['enclave_up{component="database"}'] == 1
