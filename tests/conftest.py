"""Shared fixtures: a real data dir (SQLCipher file, keyring, blobs) in a short temp path.

Unix socket paths (redis) may not exceed 107 bytes, and pytest's tmp_path can be
long, so data dirs live under a short mkdtemp folder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from appliance.datadir import init_data_dir
from appliance.queue import connect, redis_config, socket_path
from appliance.settings import Settings, load_settings
from appliance.store import Store
from compliance.signing import stop_agent

PASSPHRASE = "TEST-PASS-PHRASE-0001"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="enc"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def settings_for(data_dir: Path) -> Settings:
    """Settings that ignore the machine's /etc/enclave and environment."""
    return load_settings(
        config=None, secrets=Path("/nonexistent/secrets.toml"), environ={}, data_dir=data_dir
    )


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    return settings_for(short_tmp / "data")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = init_data_dir(settings, PASSPHRASE).store
    yield store
    store.close()
    stop_agent(settings.data_dir / "gnupg")  # signing may have started one; CI leaves none


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
    settings = settings_for(data_dir)
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
        stop_agent(data_dir / "gnupg")
        shutil.rmtree(root, ignore_errors=True)
