"""`appliance run` for real: redis, gunicorn over TLS, media, workers, scheduler.

Starts the supervisor on a demo data dir and a free port, waits for
/healthz = ok through the box's own CA, kills a worker to see it restarted,
then stops everything with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.datadir import unexpected_entries
from appliance.keys import unseal
from appliance.queue import connect
from appliance.supervisor import process_table_path
from tests.conftest import settings_for

ENV = {**os.environ, "ENCLAVE_CONFIG": "", "ENCLAVE_DEMO": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(data_dir: Path, port: int) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(data_dir / "certs" / "ca.pem"))
    with urllib.request.urlopen(
        f"https://localhost:{port}/healthz", context=context, timeout=5
    ) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def _wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s; last: {last!r}")


def _table(data_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(process_table_path(settings_for(data_dir)).read_text())
    return result


@pytest.fixture
def running_box(short_tmp: Path) -> Iterator[tuple[Path, int, subprocess.Popen[bytes]]]:
    data_dir = short_tmp / "data"
    # A relative --data-dir, as `make run` passes it: the children run in another folder.
    init = subprocess.run(
        [sys.executable, "-m", "appliance", "init", "--demo", "--data-dir", "data"],
        env=ENV,
        capture_output=True,
        timeout=120,
        cwd=short_tmp,
    )
    assert init.returncode == 0, init.stderr
    port = _free_port()
    log = (short_tmp / "run.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "run",
            "--data-dir",
            "data",
            "--port",
            str(port),
        ],
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=short_tmp,
    )
    try:
        yield data_dir, port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_run_reaches_healthz_ok_restarts_children_and_stops_cleanly(running_box: Any) -> None:
    """The whole box comes up to /healthz ok over TLS, a killed worker is restarted, `status`
    agrees, redis listens on no TCP port, and SIGTERM stops every child."""
    data_dir, port, proc = running_box
    health = _wait_until(
        lambda: _health(data_dir, port)["status"] == "ok" and _health(data_dir, port),
        90,
        "/healthz did not say ok",
    )
    assert health["checks"]["database"]["ok"] and health["checks"]["redis"]["ok"]
    assert set(health["checks"]["workers"]["queues"]) == {
        "realtime",
        "analysis",
        "documents",
        "outbox",
        "maintenance",
    }

    status = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--data-dir", str(data_dir)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert '"status": "ok"' in status.stdout

    settings = settings_for(data_dir)
    redis = connect(data_dir, unseal(data_dir, key_file=settings.unseal_key_file))
    assert redis.config_get("port") == {"port": "0"}
    assert redis.config_get("appendonly") == {"appendonly": "yes"}

    victim = _table(data_dir)["children"]["worker-outbox"]["pid"]
    os.kill(victim, signal.SIGKILL)
    restarted = _wait_until(
        lambda: (
            _table(data_dir)["children"]["worker-outbox"]["pid"] not in (None, victim)
            and _table(data_dir)["children"]["worker-outbox"]
        ),
        30,
        "the killed worker was not restarted",
    )
    assert restarted["restarts"] >= 1 and restarted["last_exit"] == -signal.SIGKILL
    children = [c["pid"] for c in _table(data_dir)["children"].values()]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not [pid for pid in children if pid and _alive(pid)]
    assert not process_table_path(settings).exists()
    assert unexpected_entries(data_dir) == []
