"""A real box for worker tests: an initialised data dir and redis-server on its unix socket."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import delete

from appliance.datadir import init_data_dir
from appliance.queue import connect, redis_config, socket_path
from appliance.records import JobRun
from appliance.settings import Settings, WorkerSettings, load_settings
from appliance.store import Store
from workers import runtime

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass(frozen=True)
class Box:
    settings: Settings
    store: Store
    redis: Redis


def _wait_for_redis(redis: Redis, proc: subprocess.Popen[bytes], sock: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}; see its log")
        if sock.exists():
            try:
                redis.ping()
                return
            except RedisConnectionError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on {sock} within 10 s")


@pytest.fixture(scope="session")
def redis_box() -> Iterator[Box]:
    # Not pytest's tmp_path: a unix socket path must fit in ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="enc"))
    data_dir = root / "data"
    settings = load_settings(environ={}, data_dir=data_dir)
    store = init_data_dir(settings, "test-passphrase").store
    conf = data_dir / "redis" / "redis.conf"
    conf.write_text(redis_config(data_dir, store.keys))
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    redis = connect(data_dir, store.keys)
    try:
        _wait_for_redis(redis, proc, socket_path(data_dir))
        yield Box(settings, store, redis)
    finally:
        redis.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        store.close()
        shutil.rmtree(root, ignore_errors=True)


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
