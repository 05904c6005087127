"""The DPO's console (/privacy): DPO only; requests with their deadlines; a refusal without a
written reason is rejected over HTTP too; the bias audit page and its CSV export; the
record of processing; the signed audit pack as a zip that verifies offline."""

from __future__ import annotations

import io
import secrets
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.records import DataRequest, RequestStatus, User
from appliance.settings import Settings
from appliance.store import Store
from compliance import requests
from compliance.actors import Actor
from compliance.signing import stop_agent
from tests.privacy.privacy_helpers import add_person
from webapp import create_app

VERIFIER = Path(__file__).resolve().parents[2] / "compliance" / "verify_privacy.py"


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app({"SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["enclave.store"].close()
    stop_agent(settings.data_dir / "gnupg")


@pytest.fixture
def login(app: Flask) -> Callable[[str], FlaskClient]:
    """A client signed in as a demo account (the session a completed sign-in leaves)."""

    def client_for(username: str) -> FlaskClient:
        client = app.test_client()
        store: Store = app.extensions["enclave.store"]
        with store.session() as db:
            uid = db.scalars(select(User.id).where(User.username == username)).one()
        csrf, now = secrets.token_urlsafe(16), time.time()
        with client.session_transaction() as sess:
            sess.update({"uid": uid, "mfa": True, "seen": now, "start": now, "csrf": csrf})
        client.environ_base["HTTP_X_CSRF_TOKEN"] = csrf
        return client

    return client_for


def test_the_dpo_console(
    app: Flask, login: Callable[[str], FlaskClient], settings: Settings, tmp_path: Path
) -> None:
    store: Store = app.extensions["enclave.store"]
    person = add_person(store, "Web")
    request = requests.receive(
        store, settings, Actor(kind="system", name="kiosk"), person.subject_id, "delete", "kiosk"
    )
    for username in ("hradmin", "auditor", "interviewer"):
        assert login(username).get("/privacy/").status_code == 403
    dpo = login("dpo")
    page = dpo.get("/privacy/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"<td>{request.id}</td>" in text and "15 working days" in text
    assert person.values["candidates.name"] not in text

    refused = dpo.post(f"/privacy/requests/{request.id}/refuse", data={"reason": ""})
    assert refused.status_code == 400 and "written reason" in refused.get_data(as_text=True)
    with store.session() as db:
        row = db.get(DataRequest, request.id)
        assert row is not None and row.status is RequestStatus.RECEIVED
    ground = "the law requires keeping the file during the labour dispute (PIPL Art. 47)"
    assert (
        dpo.post(f"/privacy/requests/{request.id}/refuse", data={"reason": ground}).status_code
        == 303
    )
    with store.session() as db:
        row = db.get(DataRequest, request.id)
        assert row is not None and row.status is RequestStatus.REFUSED

    ran = dpo.post("/privacy/bias", data={})
    assert ran.status_code == 303
    page = dpo.get(ran.headers["Location"])
    assert page.status_code == 200 and "Impact ratio" in page.get_data(as_text=True)
    export = dpo.get(ran.headers["Location"] + ".csv")
    assert export.mimetype == "text/csv"
    assert export.get_data(as_text=True).startswith("category,measure,group")

    record = dpo.get("/privacy/record")
    assert "Record of processing activities" in record.get_data(as_text=True)

    pack = dpo.post("/privacy/audit-pack")
    assert pack.status_code == 200 and pack.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(pack.get_data())) as archive:
        archive.extractall(tmp_path)
    folder = next(tmp_path.iterdir())
    checked = subprocess.run(
        [sys.executable, str(VERIFIER), str(folder)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout
