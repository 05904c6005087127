"""/healthz tells ok, degraded and down apart from real database, redis and worker state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from appliance.database import database_path
from appliance.settings import Settings
from appliance.store import Store
from tests.conftest import Box
from webapp import create_app
from workers.runtime import ApplianceWorker


def _app(settings: Settings) -> Flask:
    return create_app({"SETTINGS": settings, "TESTING": True})


@pytest.fixture
def client(redis_box: Box) -> Iterator[FlaskClient]:
    redis_box.redis.flushdb()
    app = _app(redis_box.settings)
    yield app.test_client()
    app.extensions["enclave.store"].close()


def _get(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    body: dict[str, Any] = response.get_json()
    return response.status_code, body


def test_without_workers_the_box_is_degraded_and_names_the_queues(client: FlaskClient) -> None:
    """Database and redis answer, no worker listens: degraded, with every queue missing."""
    code, body = _get(client)
    assert code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["redis"] == {"ok": True}
    assert body["checks"]["workers"]["missing"] == [
        "analysis",
        "documents",
        "maintenance",
        "outbox",
        "realtime",
    ]


def test_with_a_live_worker_on_every_queue_it_is_ok(client: FlaskClient, redis_box: Box) -> None:
    """A registered worker with a fresh heartbeat on each queue makes the status ok."""
    worker = ApplianceWorker(list(redis_box.settings.workers.queues), connection=redis_box.redis)
    worker.register_birth()
    worker.heartbeat()
    try:
        code, body = _get(client)
    finally:
        worker.register_death()
    assert code == 200 and body["status"] == "ok", body
    assert all(n == 1 for n in body["checks"]["workers"]["queues"].values())


def test_a_silent_worker_does_not_count(client: FlaskClient, redis_box: Box) -> None:
    """A worker whose heartbeat is older than twice its TTL (crashed or hung) is not counted."""
    from datetime import UTC, datetime, timedelta

    worker = ApplianceWorker(list(redis_box.settings.workers.queues), connection=redis_box.redis)
    worker.register_birth()
    worker.last_heartbeat = datetime.now(UTC) - timedelta(minutes=5)
    redis_box.redis.hset(
        worker.key, "last_heartbeat", worker.last_heartbeat.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    try:
        _code, body = _get(client)
    finally:
        worker.register_death()
    assert body["status"] == "degraded"


def test_redis_down_is_degraded_not_down(
    client: FlaskClient, redis_box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages still work without the queue: redis unreachable reports degraded, 200."""
    from appliance import queue

    broken = queue.Redis(
        unix_socket_path=str(redis_box.settings.data_dir / "no.sock"), socket_connect_timeout=1
    )
    client.application.extensions["enclave.redis"] = broken
    code, body = _get(client)
    assert code == 200 and body["status"] == "degraded"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["workers"]["ok"] is False


def test_database_down_is_down_with_503(short_tmp: Any) -> None:
    """A database that no longer opens (file replaced) answers 503 and status down."""
    from appliance.datadir import init_data_dir
    from tests.conftest import settings_for

    settings = settings_for(short_tmp / "data")
    init_data_dir(settings, "P").store.close()
    app = _app(settings)
    store: Store = app.extensions["enclave.store"]
    store.engine.dispose()
    path = database_path(settings.data_dir)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(os.urandom(8192))
    code, body = _get(app.test_client())
    assert code == 503 and body["status"] == "down"
    assert body["checks"]["database"] == {"ok": False, "error": "DatabaseKeyError"}
    store.close()


def test_pages_carry_a_strict_content_security_policy(client: FlaskClient) -> None:
    """Every answer forbids inline script and other origins."""
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
