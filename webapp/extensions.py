"""Extensions, created unbound here and bound by `create_app` (flaskr's pattern)."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from redis import Redis

from appliance import crypto, queue
from appliance.settings import Settings
from appliance.store import Store


class ApplianceStore:
    """One Store (and so one connection pool) per web worker process, shared by requests."""

    def init_app(self, app: Flask) -> None:
        settings: Settings = app.config["SETTINGS"]
        store = Store.open(settings)
        app.extensions["enclave.store"] = store
        # Session cookies are signed with a key derived from the box's signing key: the same in
        # every gunicorn worker, never written anywhere, and unchanged by a master-key rekey.
        app.secret_key = crypto.derive_key(store.keys.signing, b"enclave:web-session").hex()
        app.extensions["enclave.redis"] = queue.connect(settings.data_dir, store.keys)

    @property
    def store(self) -> Store:
        store: Store = current_app.extensions["enclave.store"]
        return store

    @property
    def redis(self) -> Redis:
        conn: Redis = current_app.extensions["enclave.redis"]
        return conn


appliance_store = ApplianceStore()


def security_headers(response: Any) -> Any:
    """Strict CSP and friends on every answer: no inline script, no other origin (MLPS-3)."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Strict-Transport-Security"] = "max-age=31536000"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(self), microphone=(self), geolocation=()"
    return response
