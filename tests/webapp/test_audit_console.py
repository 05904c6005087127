"""The auditor console: auditors and the audit admin search, verify and export the log;
HR gets 403, nobody signed in gets 401; forms carry the CSRF token; the export download
verifies offline and leaves no temp folder behind."""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from appliance.records import AuditEvent
from appliance.store import Store
from compliance import audit, signing
from compliance.actors import Actor
from tests.compliance.test_audit_export import run_verify

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)")  # scripts come from /static only

Login = Callable[[str], FlaskClient]
JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def _stop_gpg_agent(demo_app: Flask) -> Iterator[None]:
    yield
    signing.stop_agent(signing.gnupg_home(demo_app.config["SETTINGS"].data_dir))


@pytest.fixture
def seeded(demo_store: Store) -> Store:
    for i in range(8):
        audit.record(
            demo_store,
            Actor.system(f"job{i % 2}"),
            "candidate.read",
            f"candidates:{i}",
            "screening",
            result="denied" if i == 5 else "allowed",
            subject_ids=[f"subject-{i}"],
            fields=["phone"],
        )
    return demo_store


def browser(login_as: Login, username: str) -> tuple[FlaskClient, str]:
    """A signed-in client that, like a browser, only has the CSRF token the page gave it."""
    client = login_as(username)
    client.environ_base.pop("HTTP_X_CSRF_TOKEN", None)
    page = client.get("/audit/")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, "the console's forms must carry the CSRF token"
    return client, found.group(1)


def rows(html: str) -> list[str]:
    return re.findall(r"<tr class=\"result-\w+\">\s*<td>(\d+)</td>", html)


def test_auditor_searches_by_actor_subject_action_and_result(
    seeded: Store, login_as: Login
) -> None:
    client = login_as("auditor")
    page = client.get("/audit/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "审计日志" in html and not INLINE_SCRIPT.search(html) and "style=" not in html
    assert "candidates:7" in html
    by_actor = client.get("/audit/", query_string={"actor": "job:job1"}).get_data(as_text=True)
    seqs = {json_seq for json_seq in rows(by_actor)}
    with seeded.session() as session:
        expected = {
            str(e.seq)
            for e in session.scalars(select(AuditEvent).where(AuditEvent.actor == "job:job1"))
        }
    assert seqs == expected and len(seqs) == 4
    by_subject = client.get("/audit/", query_string={"subject": "subject-3"}).get_data(as_text=True)
    assert len(rows(by_subject)) == 1 and "candidates:3" in by_subject
    denied = client.get("/audit/", query_string={"result": "denied", "action": "candidate.read"})
    assert "candidates:5" in denied.get_data(as_text=True)
    assert len(rows(denied.get_data(as_text=True))) == 1
    window = client.get(
        "/audit/", query_string={"from": "2000-01-01T00:00", "to": "2000-01-02T00:00"}
    ).get_data(as_text=True)
    assert rows(window) == []
    assert client.get("/audit/", query_string={"from": "yesterday"}).status_code == 400
    # The auditor's own searches are in the log too.
    with seeded.session() as session:
        mine = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.search")).all()
    assert {e.actor for e in mine} == {"auditor"} and len(mine) >= 5
    assert any(e.fields == ["actor"] for e in mine)


def test_the_console_pages_through_older_events(seeded: Store, login_as: Login) -> None:
    for i in range(120):
        audit.record(seeded, Actor.system("bulk"), "candidate.read", f"bulk:{i}", "screening")
    client = login_as("auditor")
    first = client.get("/audit/", query_string={"actor": "job:bulk"}).get_data(as_text=True)
    assert len(rows(first)) == 100
    older = re.search(r'href="(/audit/\?[^"]*before=\d+[^"]*)"', first)
    assert older, "a full page links to the older events"
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert len(rows(second)) == 20
    assert set(rows(first)).isdisjoint(rows(second))


def test_auditor_verifies_integrity_with_one_click(seeded: Store, login_as: Login) -> None:
    client, csrf = browser(login_as, "auditor")
    assert client.post("/audit/verify").status_code == 400  # no CSRF token: refused
    assert client.post("/audit/verify", data={"csrf_token": "forged"}).status_code == 400
    done = client.post("/audit/verify", data={"csrf_token": csrf})
    assert done.status_code == 200
    html = done.get_data(as_text=True)
    assert "校验通过 Verified: ok:" in html
    with seeded.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET purpose = 'curiosity' WHERE seq = 3"))
    failed = client.post("/audit/verify", data={"csrf_token": csrf}).get_data(as_text=True)
    assert "Verification FAILED: event 3: content does not match its leaf hash" in failed


def _enclave_temp_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("enclave-audit-*")}


def test_auditor_exports_a_range_as_a_zip_that_verifies_offline(
    seeded: Store, login_as: Login, short_tmp: Path
) -> None:
    client, csrf = browser(login_as, "auditadmin")
    before = _enclave_temp_dirs()
    response = client.post("/audit/export", data={"csrf_token": csrf, "from": "", "to": ""})
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    response.close()
    assert _enclave_temp_dirs() == before  # the temp folder went with the download
    archive.extractall(short_tmp / "download")
    (folder,) = list((short_tmp / "download").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == [
        "box-public-key.asc",
        "checkpoints.jsonl",
        "events.jsonl",
        "manifest.json",
        "manifest.json.asc",
        "proofs.jsonl",
    ]
    done = run_verify(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    exported = (folder / "events.jsonl").read_text()
    assert '"action":"audit.export","actor":"auditadmin"' in exported
    # A range: here one in the future, which holds no events but still a signed checkpoint.
    later = client.post(
        "/audit/export", data={"csrf_token": csrf, "from": "2999-01-01T00:00", "to": ""}
    )
    assert later.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(later.get_data())).namelist()
    later.close()
    assert len(names) == 6 and any(name.endswith("/checkpoints.jsonl") for name in names)
    assert client.post("/audit/export", data={"csrf_token": csrf, "from": "soon"}).status_code == (
        400
    )


def test_hr_and_other_roles_get_403(seeded: Store, login_as: Login) -> None:
    for username in ("hr.east", "hradmin", "interviewer", "sysadmin", "secadmin", "dpo"):
        client = login_as(username)
        assert client.get("/audit/").status_code == 403, username
        assert client.post("/audit/verify").status_code == 403, username
        assert client.post("/audit/export").status_code == 403, username


def test_nobody_signed_in_gets_401(demo_app: Flask) -> None:
    client = demo_app.test_client()
    assert client.get("/audit/", headers=JSON).status_code == 401
    # A browser is sent to sign in (the 401 handler), and comes back here after.
    page = client.get("/audit/", headers={"Accept": "text/html"})
    assert page.status_code == 302 and "/auth/login" in page.headers["Location"]
    with client.session_transaction() as session:
        session["csrf"] = "t"
    for path in ("/audit/verify", "/audit/export"):
        assert client.post(path, data={"csrf_token": "t"}, headers=JSON).status_code == 401
