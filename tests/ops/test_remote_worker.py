"""Scale-out (issue #9, item 3): a worker host with no data dir transcribes an answer through
the box's internal API with its client certificate; without one it is refused.

Real parts: the real store, the box's internal CA, the mTLS listener on a real port, and
the worker as a separate process in its own mount namespace, where the box's data dir is
an empty tmpfs: no database, no keys, no blobs.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError
from rq.job import Job, JobStatus

from appliance.queue import (
    connect,
    redis_config,
    redis_tls_config,
    redis_worker_password,
    socket_path,
)
from appliance.records import Answer
from appliance.settings import Settings
from appliance.store import Store
from certs.authority import (
    CertificateError,
    WorkerCredentials,
    ensure_server_certificate,
    issue_worker_certificate,
    worker_name_of,
)
from compliance.actors import Actor
from compliance.gate import Gate
from tests.conftest import REDIS_SERVER, _wait_for_redis
from tests.workers.test_analysis_pipeline import give_consents, make_interview
from webapp import create_app, create_internal_app
from webapp.internal import internal_server
from workers.jobs import SERIALIZER
from workers.remote import (
    BoxRefused,
    InternalApiClient,
    WorkerIdentity,
    connect_over_tls,
    enqueue_transcription,
)

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO.parent / "shared" / "fixtures" / "speech" / "zh_04_resident_why.wav"
REFERENCE = "我选择贵院，是因为贵院的心血管专科在全省都很有影响力。"


@dataclass(frozen=True)
class InternalApi:
    url: str
    certs_dir: Path


@pytest.fixture
def internal_api(store: Store, settings: Settings) -> Iterator[InternalApi]:
    """The box's mTLS listener for worker hosts, serving from a thread of this process."""
    certs_dir = settings.data_dir / "certs"
    ensure_server_certificate(certs_dir, ["localhost"])
    # TESTING: the served app installs the egress audit hook, which would outlive the test.
    app = create_internal_app({"SETTINGS": settings, "TESTING": True})
    server = internal_server(app, "127.0.0.1", 0, certs_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield InternalApi(f"https://127.0.0.1:{server.server_port}", certs_dir)
    server.shutdown()
    thread.join()
    app.extensions["enclave.store"].close()


@pytest.fixture
def worker_home() -> Iterator[Path]:
    """The worker host's own folder: its certificate files and HOME, owned by nobody."""
    home = Path(tempfile.mkdtemp(prefix="encw"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


# The worker's own mount namespace, where the box's data dir is an empty tmpfs.
# (Running it as another user would do too, but the venv's interpreter lives under /root.)
HIDE_DATA_DIR = 'mount -t tmpfs -o mode=000 none "$1" && shift && exec "$@"'


def _without_data_dir(data_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed programs, our own arguments)
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            HIDE_DATA_DIR,
            "sh",
            str(data_dir),
            *command,
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )


def _run_worker(
    api: InternalApi, data_dir: Path, creds: WorkerCredentials | None, *ids: int
) -> subprocess.CompletedProcess[str]:
    """`python -m workers.remote` in a process that cannot see the box's data dir."""
    identity = ["--cert", str(creds.cert_path), "--key", str(creds.key_path)] if creds else []
    ca = creds.ca_path if creds else api.certs_dir.parent.parent / "worker-ca.pem"
    command = [sys.executable, "-m", "workers.remote", "--box", api.url, "--ca", str(ca)]
    return _without_data_dir(data_dir, *command, *identity, "--device", "cpu", *map(str, ids))


def _transcript(store: Store, answer_id: int) -> dict[str, object] | None:
    with store.session() as db:
        answer = db.get(Answer, answer_id)
        shown = Gate(store).view_many(Actor.system("test-read"), [answer], "processing")
    value = shown[0]["transcript"]
    return json.loads(value) if value else None


def test_worker_host_without_the_data_dir_transcribes_through_the_internal_api(
    store: Store, settings: Settings, internal_api: InternalApi, worker_home: Path
) -> None:
    """No access to the data dir, only the client certificate: the answer is transcribed and
    the transcript lands in the box's store through the gate; without it, nothing happens."""
    interview = make_interview(store, videos=[CLIP.read_bytes()])
    answer_id = interview.answer_ids[0]
    creds = issue_worker_certificate(internal_api.certs_dir, "gpu-1", worker_home / "tls")
    shutil.copy(creds.ca_path, internal_api.certs_dir.parent.parent / "worker-ca.pem")
    listing = _without_data_dir(settings.data_dir, "ls", "-A", str(settings.data_dir))
    assert (listing.returncode, listing.stdout) == (0, ""), "the worker sees an empty data dir"

    refused = _run_worker(internal_api, settings.data_dir, None, answer_id)
    assert refused.returncode == 3, refused.stderr
    assert "refused the connection" in refused.stderr
    assert _transcript(store, answer_id) is None

    done = _run_worker(internal_api, settings.data_dir, creds, answer_id)
    assert done.returncode == 0, done.stderr
    transcript = _transcript(store, answer_id)
    assert transcript is not None
    assert transcript["language"] == "zh"
    text = str(transcript["text"])
    assert sum(ch in text for ch in "心血管专科全省影响力") >= 7
    assert sorted(p.name for p in worker_home.rglob("*")) == [
        "ca.pem",
        "gpu-1.key",
        "gpu-1.pem",
        "tls",
    ]


def test_a_certificate_that_is_not_a_workers_is_refused(
    store: Store, internal_api: InternalApi, worker_home: Path
) -> None:
    """The box's own server certificate (same CA, serverAuth only) opens nothing."""
    server = WorkerIdentity(
        internal_api.certs_dir / "server.pem",
        internal_api.certs_dir / "server.key",
        internal_api.certs_dir / "ca.pem",
    )
    client = InternalApiClient(internal_api.url, server.tls())
    with pytest.raises(BoxRefused):
        client.task(1)


def test_a_certificate_from_another_ca_is_refused(
    store: Store, internal_api: InternalApi, worker_home: Path
) -> None:
    other = issue_worker_certificate(worker_home / "other-ca", "gpu-1", worker_home / "other")
    context = ssl.create_default_context(cafile=str(internal_api.certs_dir / "ca.pem"))
    context.load_cert_chain(str(other.cert_path), str(other.key_path))
    with pytest.raises(BoxRefused, match="refused the connection"):
        InternalApiClient(internal_api.url, context).task(1)


def test_a_worker_certificate_reads_the_task(
    store: Store, internal_api: InternalApi, worker_home: Path
) -> None:
    """The worker gets the job's parameters (ids, language, vocabulary), not the person."""
    interview = make_interview(store, videos=[CLIP.read_bytes()])
    creds = issue_worker_certificate(internal_api.certs_dir, "cpu-2", worker_home / "tls")
    client = InternalApiClient(internal_api.url, WorkerIdentity(*_paths(creds)).tls())
    task = client.task(interview.answer_ids[0])
    assert task["answer_id"] == interview.answer_ids[0]
    assert task["language"] == "zh"
    assert "测试候选人" not in json.dumps(task, ensure_ascii=False)
    assert client.recording(interview.answer_ids[0]) == CLIP.read_bytes()
    with pytest.raises(BoxRefused, match="HTTP 404"):
        client.task(interview.answer_ids[0] + 1000)


def test_the_box_refuses_bad_results_and_answers_without_consent(
    store: Store, internal_api: InternalApi, worker_home: Path
) -> None:
    """A result that is not a transcript is refused; after the candidate withdraws the
    recording consent the worker gets neither the task nor the recording (PIPL Art. 15)."""
    interview = make_interview(store, videos=[CLIP.read_bytes()])
    answer_id = interview.answer_ids[0]
    creds = issue_worker_certificate(internal_api.certs_dir, "cpu-3", worker_home / "tls")
    client = InternalApiClient(internal_api.url, WorkerIdentity(*_paths(creds)).tls())
    with pytest.raises(BoxRefused, match="HTTP 400"):
        client.post_transcript(answer_id, {"text": "no segments"})
    give_consents(store, interview.subject_id, {"recording": False})
    for fetch in (client.task, client.recording):
        with pytest.raises(BoxRefused, match="HTTP 409"):
            fetch(answer_id)
    assert _transcript(store, answer_id) is None


def test_the_internal_api_is_on_its_own_listener_only(store: Store, settings: Settings) -> None:
    """The portal's app has no internal endpoint, and the internal app refuses a request
    that did not come through mTLS (no peer certificate), wherever it were served."""
    portal = create_app({"SETTINGS": settings, "TESTING": True})
    internal = create_internal_app({"SETTINGS": settings, "TESTING": True})
    try:
        assert portal.test_client().get("/internal/v1/answers/1/task").status_code == 404
        refused = internal.test_client().get("/internal/v1/answers/1/task")
        assert refused.status_code == 403
        assert "worker client certificate" in refused.get_json()["message"]
    finally:
        portal.extensions["enclave.store"].close()
        internal.extensions["enclave.store"].close()


def _paths(creds: WorkerCredentials) -> tuple[Path, Path, Path]:
    return creds.cert_path, creds.key_path, creds.ca_path


# --- jobs over Redis's TLS port ------------------------------------------------------------


@dataclass(frozen=True)
class ScaleOutRedis:
    address: str
    box: Redis


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def scaleout_redis(
    store: Store, settings: Settings, internal_api: InternalApi
) -> Iterator[ScaleOutRedis]:
    """The box's redis-server: its unix socket, and the TLS port for worker `gpu-1`."""
    data_dir, port = settings.data_dir, _free_port()
    conf = data_dir / "redis" / "redis.conf"
    tls = redis_tls_config(store.keys, internal_api.certs_dir, "127.0.0.1", port, ("gpu-1",))
    conf.write_text(redis_config(data_dir, store.keys) + tls)
    conf.chmod(0o600)
    proc = subprocess.Popen(  # noqa: S603
        [REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    box = connect(data_dir, store.keys)
    try:
        _wait_for_redis(box, proc, socket_path(data_dir))
        yield ScaleOutRedis(f"127.0.0.1:{port}", box)
    finally:
        box.close()
        proc.terminate()
        proc.wait()


def test_a_worker_host_takes_the_job_from_redis_over_tls(
    store: Store,
    settings: Settings,
    internal_api: InternalApi,
    scaleout_redis: ScaleOutRedis,
    worker_home: Path,
) -> None:
    """The box enqueues the answer's id; the worker host, with no data dir, takes it from
    Redis's TLS port as its own ACL user and posts the transcript through the API."""
    interview = make_interview(store, videos=[CLIP.read_bytes()])
    answer_id = interview.answer_ids[0]
    creds = issue_worker_certificate(internal_api.certs_dir, "gpu-1", worker_home / "tls")
    password = worker_home / "tls" / "redis-password"
    password.write_text(redis_worker_password(store.keys, "gpu-1"))
    job = enqueue_transcription(scaleout_redis.box, answer_id)

    done = _without_data_dir(
        settings.data_dir, sys.executable, "-m", "workers.remote", "--box", internal_api.url,
        "--ca", str(creds.ca_path), "--cert", str(creds.cert_path), "--key", str(creds.key_path),
        "--redis", scaleout_redis.address, "--redis-password-file", str(password), "--burst",
        "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fetched = Job.fetch(job.id, connection=scaleout_redis.box, serializer=SERIALIZER)
    assert fetched.get_status() == JobStatus.FINISHED, done.stderr
    transcript = _transcript(store, answer_id)
    assert transcript is not None and transcript["language"] == "zh"


def test_redis_tls_needs_the_certificate_and_keeps_workers_to_the_queue(
    store: Store, internal_api: InternalApi, scaleout_redis: ScaleOutRedis, worker_home: Path
) -> None:
    creds = issue_worker_certificate(internal_api.certs_dir, "gpu-1", worker_home / "tls")
    password = redis_worker_password(store.keys, "gpu-1")
    worker = connect_over_tls(
        scaleout_redis.address, "gpu-1", password, WorkerIdentity(*_paths(creds))
    )
    assert worker.ping()
    scaleout_redis.box.set("enclave:not-a-queue-key", b"1")
    with pytest.raises(NoPermissionError):
        worker.get("enclave:not-a-queue-key")
    with pytest.raises(NoPermissionError):
        worker.config_get("requirepass")
    worker.close()
    no_cert = Redis(
        host="127.0.0.1",
        port=int(scaleout_redis.address.rsplit(":", 1)[1]),
        username="gpu-1",
        password=password,
        ssl=True,
        ssl_ca_certs=str(creds.ca_path),
        socket_timeout=5,
    )
    with pytest.raises(RedisConnectionError):
        no_cert.ping()


# --- issuing a worker's credentials -----------------------------------------------------------


def test_certs_worker_writes_the_hosts_four_files(
    store: Store, settings: Settings, worker_home: Path
) -> None:
    """`appliance certs worker NAME`: certificate, private key (0600), the CA and the
    host's own Redis password (0600), nothing else."""
    out = worker_home / "gpu-3"
    made = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "appliance", "certs", "worker", "gpu-3"]
        + ["--data-dir", str(settings.data_dir), "--out", str(out)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(worker_home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    files = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert files == {
        "gpu-3.pem": 0o644,
        "gpu-3.key": 0o600,
        "ca.pem": 0o644,
        "redis-password": 0o600,
    }
    assert (out / "redis-password").read_text().strip() == redis_worker_password(
        store.keys, "gpu-3"
    )
    assert worker_name_of((out / "gpu-3.pem").read_text()) == "gpu-3"
    server = ensure_server_certificate(settings.data_dir / "certs", ["localhost"])
    assert worker_name_of(server.cert_path.read_text()) is None


def test_a_worker_name_is_one_host_label(settings: Settings, worker_home: Path) -> None:
    with pytest.raises(CertificateError, match="one label"):
        issue_worker_certificate(settings.data_dir / "certs", "gpu.1", worker_home)
    with pytest.raises(CertificateError):
        issue_worker_certificate(settings.data_dir / "certs", "gpu 1", worker_home)
