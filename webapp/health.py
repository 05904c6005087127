"""`GET /healthz`: what a load balancer, `appliance status` and Ansible's verify step read.

"down" when the database does not answer (nothing works without it),
"degraded" when redis or a queue's workers are missing (pages work, jobs wait),
"ok" otherwise. No personal data, no authentication: it reveals only health.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify
from rq import Worker

from appliance.queue import WORKER_TTL
from appliance.settings import Settings
from webapp.extensions import appliance_store

bp = Blueprint("health", __name__)


def _database() -> dict[str, Any]:
    try:
        appliance_store.store.ping()
    except Exception as exc:  # any failure means "down", reported by kind
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _redis() -> dict[str, Any]:
    try:
        appliance_store.redis.ping()
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _workers(redis_ok: bool) -> dict[str, Any]:
    settings: Settings = current_app.config["SETTINGS"]
    wanted = settings.workers.queues
    if not redis_ok:
        return {"ok": False, "error": "redis unavailable", "queues": {}}
    counts = dict.fromkeys(wanted, 0)
    fresh_after = datetime.now(UTC) - timedelta(seconds=2 * WORKER_TTL)
    for worker in Worker.all(connection=appliance_store.redis):
        beat = worker.last_heartbeat
        if beat is None or beat.replace(tzinfo=UTC) < fresh_after:
            continue  # registered, but silent: crashed or hung
        for name in worker.queue_names():
            if name in counts:
                counts[name] += 1
    missing = sorted(q for q, n in counts.items() if n == 0)
    result: dict[str, Any] = {"ok": not missing, "queues": counts}
    if missing:
        result["missing"] = missing
    return result


@bp.get("/healthz")
def healthz() -> Any:
    checks = {"database": _database(), "redis": _redis()}
    checks["workers"] = _workers(checks["redis"]["ok"])
    if not checks["database"]["ok"]:
        status = "down"
    elif not (checks["redis"]["ok"] and checks["workers"]["ok"]):
        status = "degraded"
    else:
        status = "ok"
    response = jsonify({"status": status, "checks": checks})
    response.status_code = 503 if status == "down" else 200
    response.headers["Cache-Control"] = "no-store"
    return response
