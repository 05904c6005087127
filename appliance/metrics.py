"""Prometheus metrics on the internal port (issue 9, item 5).

`appliance metrics` serves `GET /metrics` in the Prometheus text format (0.0.4) from
a small stdlib HTTP server of its own, bound to `metrics.host:metrics.port`
(127.0.0.1:9464 by default: the firewall role never opens it; a Prometheus on
another host scrapes through an SSH tunnel or a node exporter's proxy). A separate
process rather than a Flask route: the web app's port faces browsers, and a scrape
must work while gunicorn is busy or down. `prometheus-client` is not a dependency;
the format is simple enough to write here.

What is exported, ids and counts only (no personal data, no labels from records'
contents): queue depths and failed jobs per rq queue, live workers per queue, job
runs by name and status and their durations (from `JobRun` rows: the database, not
Redis, survives restarts), interview sessions by status and by analysis status, and
whether the database and Redis answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from sqlalchemy import func, select

from appliance.queue import QUEUES, WORKER_TTL
from appliance.store import Store

log = logging.getLogger("enclave.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
"""Seconds: a resume parse takes about a second, an answer's analysis minutes."""
RECENT_RUNS = 5000
"""Durations come from the newest finished runs only, so a scrape stays cheap."""


@dataclass
class Metric:
    name: str
    kind: str  # gauge, counter, histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((suffix, labels, value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition format: HELP, TYPE, then one line per sample."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for suffix, labels, value in metric.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            braces = f"{{{label_text}}}" if label_text else ""
            lines.append(f"{metric.name}{suffix}{braces} {_number(value)}")
    return "\n".join(lines) + "\n"


# --- collection ---------------------------------------------------------------------------


def queue_metrics(redis: Any, queues: Sequence[str] = QUEUES) -> list[Metric]:
    from rq import Queue, Worker
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    depth = Metric("enclave_queue_depth", "gauge", "Jobs waiting in the rq queue.")
    started = Metric("enclave_queue_started_jobs", "gauge", "Jobs running now.")
    failed = Metric("enclave_queue_failed_jobs", "gauge", "Jobs in rq's failed registry.")
    workers = Metric("enclave_queue_workers", "gauge", "Workers with a fresh heartbeat.")
    counts = dict.fromkeys(queues, 0)
    fresh_after = datetime.now(UTC) - timedelta(seconds=2 * WORKER_TTL)
    for worker in Worker.all(connection=redis):
        beat = worker.last_heartbeat
        if beat is not None and beat.replace(tzinfo=UTC) >= fresh_after:
            for name in worker.queue_names():
                counts[name] = counts.get(name, 0) + 1
    for name in queues:
        queue = Queue(name, connection=redis)
        depth.add(queue.count, queue=name)
        started.add(StartedJobRegistry(queue=queue).count, queue=name)
        failed.add(FailedJobRegistry(queue=queue).count, queue=name)
        workers.add(counts.get(name, 0), queue=name)
    return [depth, started, failed, workers]


def job_run_metrics(store: Store) -> list[Metric]:
    from appliance.records import JobRun

    runs = Metric("enclave_job_runs", "gauge", "Job runs recorded in the database, by status.")
    with store.session() as db:
        rows = db.execute(
            select(JobRun.name, JobRun.queue, JobRun.status, func.count()).group_by(
                JobRun.name, JobRun.queue, JobRun.status
            )
        ).all()
        finished = db.execute(
            select(JobRun.name, JobRun.started_at, JobRun.ended_at)
            .where(JobRun.started_at.is_not(None), JobRun.ended_at.is_not(None))
            .order_by(JobRun.id.desc())
            .limit(RECENT_RUNS)
        ).all()
    for name, queue, status, count in rows:
        runs.add(count, job=name, queue=queue, status=str(status.value))
    return [runs, duration_histogram(finished)]


def duration_histogram(finished: Sequence[Any]) -> Metric:
    histogram = Metric(
        "enclave_job_duration_seconds", "histogram", "Run time of finished jobs (recent runs)."
    )
    per_job: dict[str, list[float]] = {}
    for name, started_at, ended_at in finished:
        per_job.setdefault(name, []).append(max(0.0, (ended_at - started_at).total_seconds()))
    for name, seconds in sorted(per_job.items()):
        for bound in (*DURATION_BUCKETS, float("inf")):
            histogram.add(
                sum(1 for s in seconds if s <= bound), "_bucket", job=name, le=_number(bound)
            )
        histogram.add(sum(seconds), "_sum", job=name)
        histogram.add(len(seconds), "_count", job=name)
    return histogram


def interview_metrics(store: Store) -> list[Metric]:
    from appliance.records import InterviewSession

    sessions = Metric("enclave_interviews", "gauge", "Interview sessions by status.")
    analysed = Metric("enclave_interview_analyses", "gauge", "Interview sessions by analysis.")
    with store.session() as db:
        by_status = db.execute(
            select(InterviewSession.status, func.count()).group_by(InterviewSession.status)
        ).all()
        by_analysis = db.execute(
            select(InterviewSession.analysis_status, func.count()).group_by(
                InterviewSession.analysis_status
            )
        ).all()
    for status, count in by_status:
        sessions.add(count, status=str(status.value))
    for analysis, count in by_analysis:
        analysed.add(count, status=analysis or "not_analysed")
    return [sessions, analysed]


def collect(store: Store, redis: Any) -> list[Metric]:
    """Every metric; a component that does not answer shows as `enclave_up 0`, not an error."""
    up = Metric("enclave_up", "gauge", "Whether the component answers (1) or not (0).")
    out: list[Metric] = [up]
    for component, gather in (
        ("database", lambda: [*job_run_metrics(store), *interview_metrics(store)]),
        ("redis", lambda: queue_metrics(redis)),
    ):
        try:
            out.extend(gather())
            up.add(1, component=component)
        except Exception as exc:  # a scrape reports health, it must not fail
            log.warning("metrics: %s unavailable (%s)", component, type(exc).__name__)
            up.add(0, component=component)
    return out


# --- the server ---------------------------------------------------------------------------


def make_server(store: Store, redis: Any, host: str, port: int) -> HTTPServer:
    """An HTTP server answering `GET /metrics` (and nothing else) on `host:port`."""

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = render(collect(store, redis)).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("scrape from %s", self.client_address[0])

    return HTTPServer((host, port), MetricsHandler)
