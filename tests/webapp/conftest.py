"""Web tests: the demo hospital in a real data dir, the app, and a signed-in client per role."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.datadir import init_data_dir
from appliance.records import User
from appliance.store import Store
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


@pytest.fixture
def demo_store(demo_app: Flask) -> Store:
    store: Store = demo_app.extensions["enclave.store"]
    return store


@pytest.fixture
def login_as(demo_app: Flask) -> Callable[[str], FlaskClient]:
    """A client signed in as the demo account `username`, second factor done.

    Sign-in itself is tested in test_signin.py; here the session is set the way a
    completed sign-in leaves it (webapp/auth.py's session contract).
    """

    def login(username: str) -> FlaskClient:
        client = demo_app.test_client()
        store: Store = demo_app.extensions["enclave.store"]
        with store.session() as db:
            user = db.scalars(select(User).where(User.username == username)).one()
            uid = user.id
        with client.session_transaction() as sess:
            sess.update({"uid": uid, "mfa": True, "seen": time.time()})
        return client

    return login
