"""Web tests: the demo hospital in a real data dir, the app, and a signed-in client per role."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.datadir import init_data_dir
from appliance.records import Role, User
from appliance.store import Store
from compliance import tokens
from compliance.actors import Actor
from compliance.signing import stop_agent
from tests.conftest import settings_for
from webapp import create_app


@pytest.fixture
def demo_app(short_tmp: Path) -> Iterator[Flask]:
    """The app on a fresh demo data dir (demo hospital, one account per role)."""
    settings = settings_for(short_tmp / "data")
    init_data_dir(settings, "TEST-PASS", demo=True).store.close()
    app = create_app({"SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["enclave.store"].close()
    stop_agent(settings.data_dir / "gnupg")


@pytest.fixture
def demo_store(demo_app: Flask) -> Store:
    store: Store = demo_app.extensions["enclave.store"]
    return store


@pytest.fixture
def login_as(demo_app: Flask) -> Callable[[str], FlaskClient]:
    """A client signed in as the demo account `username`, second factor done.

    Sign-in itself is tested in test_signin.py; here the session is set the way a
    completed sign-in leaves it (webapp/auth.py's session contract), and the client
    sends the session's CSRF token as the X-CSRF-Token header on every request, so
    tests can POST without scraping a form. The integration account has no session
    (it may not sign in interactively): its client sends a fresh API token as
    `Authorization: Bearer` instead, which webapp.auth honours on /api/ paths only.
    """

    def login(username: str) -> FlaskClient:
        client = demo_app.test_client()
        store: Store = demo_app.extensions["enclave.store"]
        with store.session() as db:
            user = db.scalars(select(User).where(User.username == username)).one()
            uid = user.id
            integration = any(a.role == Role.INTEGRATION for a in user.roles)
        if integration:
            token = tokens.issue_api_token(store, uid, Actor(kind="system", name="system"))
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            return client
        csrf = secrets.token_urlsafe(16)
        now = time.time()
        with client.session_transaction() as sess:
            sess.update({"uid": uid, "mfa": True, "seen": now, "start": now, "csrf": csrf})
        client.environ_base["HTTP_X_CSRF_TOKEN"] = csrf
        return client

    return login
