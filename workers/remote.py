"""The worker-host side of scale-out (issue #9): analysis without the database or its keys.

A worker host holds the code, the model weights and its own client certificate
(`appliance certs worker NAME` on the box), nothing else: no data dir, no master
key, no database. For each answer it asks the box's internal API (`webapp.internal`,
mTLS) for the job's parameters and the recording, which the box decrypts for that
request only; the bytes stay in this process's memory (PyAV decodes from memory, no
temp file), and the transcript goes back to the box, which writes it through the
permission gate. Losing the host loses no personal data at rest.

No egress (issue 9, item 6): the process installs the same guard as the box's processes
(`appliance.egress`) before it loads anything, allowing loopback, the box's internal API
host (`--box`) and Redis TLS host (`--redis`), and nothing else; it reads no
appliance.toml (a worker host has none it may read), so its policy comes from its
command line alone (`--egress-allow` for further hosts, such as a log collector).

Jobs reach the host through the box's Redis on its TLS port (`appliance.queue.
redis_tls_config`: client certificate required, and the host's own ACL user), on the
`analysis-remote` queue: the box enqueues `enqueue_transcription(redis, answer_id)`
(ids only; `workers.analysis.jobs.enqueue_answer` does, with `[workers] transcription =
"remote"`), and `python -m workers.remote --redis HOST:PORT ...` works the queue. rq
keeps the job's state; the box's records change only through the internal API.

    python -m workers.remote --box https://box.internal:8444 \\
        --cert /etc/enclave/worker/gpu-1.pem --key /etc/enclave/worker/gpu-1.key \\
        --ca /etc/enclave/worker/ca.pem \\
        (--redis box.internal:6380 --redis-password-file /etc/enclave/worker/redis-password
         | ANSWER_ID [ANSWER_ID ...])
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker, get_current_job
from rq.job import Job

from appliance import egress, logs
from appliance.queue import check_payload
from appliance.settings import AiSettings, EgressSettings, Settings, WebSettings
from workers.jobs import DAY, SERIALIZER

log = logging.getLogger("enclave.remote")
TIMEOUT_S = 120.0
REMOTE_QUEUE = "analysis-remote"
"""Jobs for worker hosts: they run `remote_transcribe`, which needs no store."""


class BoxRefused(RuntimeError):
    """The box's internal API refused the request or could not be reached (the message says
    which: a missing or foreign certificate fails the TLS handshake)."""


@dataclass(frozen=True)
class WorkerIdentity:
    """The files `appliance certs worker NAME` wrote, copied to this host."""

    cert: Path
    key: Path
    ca: Path

    def tls(self) -> ssl.SSLContext:
        """Trust only the box's CA (not the system's), and present our certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


class InternalApiClient:
    """Fetch a job's inputs from the box and post its results; nothing is stored here."""

    def __init__(self, box_url: str, tls: ssl.SSLContext) -> None:
        self.base = box_url.rstrip("/") + "/internal/v1"
        self.tls = tls

    def task(self, answer_id: int) -> dict[str, Any]:
        body = self._call("GET", f"/answers/{int(answer_id)}/task")
        result: dict[str, Any] = json.loads(body)
        return result

    def recording(self, answer_id: int) -> bytes:
        return self._call("GET", f"/answers/{int(answer_id)}/recording")

    def post_transcript(
        self, answer_id: int, stored: dict[str, Any], job_id: str | None = None
    ) -> None:
        body: dict[str, Any] = {"transcript": stored}
        if job_id is not None:
            body["job_id"] = job_id  # the box closes its JobRun of this job
        payload = json.dumps(body, ensure_ascii=False).encode()
        self._call("POST", f"/answers/{int(answer_id)}/transcript", payload)

    def post_failure(self, answer_id: int, error: str, job_id: str | None = None) -> None:
        """Tell the box the answer could not be transcribed (the reason names no content)."""
        body: dict[str, Any] = {"error": error}
        if job_id is not None:
            body["job_id"] = job_id
        self._call("POST", f"/answers/{int(answer_id)}/failure", json.dumps(body).encode())

    def _call(self, method: str, path: str, payload: bytes | None = None) -> bytes:
        request = urllib.request.Request(  # noqa: S310 (https only: the context is TLS)
            self.base + path, data=payload, method=method
        )
        if payload is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=self.tls, timeout=TIMEOUT_S
            ) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            raise BoxRefused(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, ssl.SSLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BoxRefused(
                f"{method} {path}: the box refused the connection ({reason})"
            ) from None


def transcribe_answer(
    client: InternalApiClient, ai: AiSettings, answer_id: int, job_id: str | None = None
) -> str:
    """Transcribe one answer as `workers.analysis.jobs` would, on this host; returns the
    detected or given language (no content: this goes to the log)."""
    from workers.analysis.asr import transcriber
    from workers.analysis.audio import load_audio

    task = client.task(answer_id)
    media = client.recording(answer_id)
    audio = load_audio(media)
    del media  # only the samples are needed from here on
    result = transcriber(ai).transcribe(audio, task.get("language"), task.get("prompt"))
    client.post_transcript(answer_id, result.stored(), job_id)
    return result.language


# --- the queue ----------------------------------------------------------------------------

_configured: tuple[InternalApiClient, AiSettings] | None = None


def configure(client: InternalApiClient, ai: AiSettings) -> None:
    """What `remote_transcribe` uses in this process (set once by `main`)."""
    global _configured
    _configured = (client, ai)


def remote_transcribe(answer_id: int) -> None:
    """The rq job of a worker host: one answer, through the internal API. If it fails, the
    box hears it (`POST .../failure`), so the answer's analysis says failed at step asr
    instead of waiting for ever; the error still goes to rq's failed registry."""
    if _configured is None:
        raise RuntimeError("workers.remote.configure() was not called in this worker process")
    client, ai = _configured
    current = get_current_job()
    job_id = current.id if current is not None else None
    try:
        transcribe_answer(client, ai, answer_id, job_id)
    except Exception as exc:
        _report_failure(client, answer_id, exc, job_id)
        raise


def _report_failure(
    client: InternalApiClient, answer_id: int, exc: Exception, job_id: str | None
) -> None:
    message = " ".join(str(exc).split())[:200]
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    try:
        client.post_failure(answer_id, reason, job_id)
    except BoxRefused as refused:  # the box's reconcile_remote closes it from rq's registry
        log.error("answer %d: the failure could not be reported: %s", answer_id, refused)


def enqueue_transcription(redis: Redis, answer_id: int, job_id: str | None = None) -> Job:
    """On the box: hand an answer to the worker hosts (its id only, like every job);
    `job_id` is the box's `JobRun.rq_job_id` (`workers.analysis.jobs.enqueue_answer`)."""
    check_payload((answer_id,))
    queue = Queue(REMOTE_QUEUE, connection=redis, serializer=SERIALIZER)
    return queue.enqueue(
        remote_transcribe,
        answer_id,
        job_id=job_id,
        job_timeout=3600,
        result_ttl=DAY,
        failure_ttl=7 * DAY,
    )


def connect_over_tls(address: str, user: str, password: str, identity: WorkerIdentity) -> Redis:
    """The box's Redis on its TLS port, as this worker host's ACL user, with its certificate."""
    host, _, port = address.rpartition(":")
    return Redis(
        host=host,
        port=int(port),
        username=user,
        password=password,
        ssl=True,
        ssl_certfile=str(identity.cert),
        ssl_keyfile=str(identity.key),
        ssl_ca_certs=str(identity.ca),
        ssl_cert_reqs="required",
        socket_timeout=30,
        socket_connect_timeout=5,
    )


def work(redis: Redis, name: str, burst: bool) -> None:
    """rq's in-process worker (the model stays loaded across jobs) on the remote queue."""
    worker = SimpleWorker([REMOTE_QUEUE], connection=redis, serializer=SERIALIZER, name=name)
    worker.work(burst=burst)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers.remote", description=__doc__)
    parser.add_argument("--box", required=True, help="the internal API, https://HOST:PORT")
    parser.add_argument("--cert", type=Path, help="this worker's certificate (PEM)")
    parser.add_argument("--key", type=Path, help="this worker's private key (PEM)")
    parser.add_argument("--ca", type=Path, required=True, help="the box's CA (ca.pem)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--redis", help="the box's Redis TLS port, HOST:PORT (queue mode)")
    parser.add_argument("--redis-password-file", type=Path)
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    parser.add_argument(
        "--egress-allow",
        action="append",
        default=[],
        metavar="HOST",
        help="a further host, IP or CIDR network this process may connect to",
    )
    parser.add_argument("answer_ids", type=int, nargs="*", help="transcribe these and stop")
    args = parser.parse_args(argv)
    if bool(args.answer_ids) == bool(args.redis):
        parser.error("give either answer ids or --redis HOST:PORT")
    if args.redis and not (args.cert and args.key and args.redis_password_file):
        parser.error("--redis needs --cert, --key and --redis-password-file")
    return args


def _context(args: argparse.Namespace) -> ssl.SSLContext:
    if args.cert is None or args.key is None:
        # Allowed so IT can see the refusal for themselves; the box will not answer.
        context = ssl.create_default_context(cafile=str(args.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
    return WorkerIdentity(args.cert, args.key, args.ca).tls()


def egress_settings(args: argparse.Namespace) -> Settings:
    """The guard's view of a worker host: the box's internal API and Redis TLS hosts, and
    `--egress-allow`. No appliance.toml: the unit makes /etc/enclave inaccessible."""
    hosts = [urllib.parse.urlsplit(args.box).hostname or ""]
    if args.redis:
        hosts.append(args.redis.rpartition(":")[0].strip("[]"))
    allowed = tuple(dict.fromkeys(host for host in [*hosts, *args.egress_allow] if host))
    return Settings(web=WebSettings(hostnames=()), egress=EgressSettings(allow_hosts=allowed))


def main(argv: Sequence[str] | None = None) -> int:
    if not logs.configure("remote-worker"):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    args = _arguments(argv)
    # Before models load or anything connects: a library that phones home is refused.
    egress.install(egress_settings(args), "remote-worker")
    client = InternalApiClient(args.box, _context(args))
    ai = AiSettings(models_dir=args.models_dir, device=args.device)
    if args.redis:
        return _work_queue(args, client, ai)
    for answer_id in args.answer_ids:
        try:
            language = transcribe_answer(client, ai, answer_id)
        except BoxRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        log.info("answer %d transcribed (%s)", answer_id, language)
    return 0


def _work_queue(args: argparse.Namespace, client: InternalApiClient, ai: AiSettings) -> int:
    # Under `python -m` this module is __main__; rq imports `workers.remote` anew by name.
    from workers import remote

    remote.configure(client, ai)
    identity = WorkerIdentity(args.cert, args.key, args.ca)
    # The worker's name is the one its certificate names: the box issued it.
    name = args.cert.stem
    password = args.redis_password_file.read_text().strip()
    redis = connect_over_tls(args.redis, name, password, identity)
    work(redis, f"{name}.{uuid.uuid4().hex[:6]}", args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
