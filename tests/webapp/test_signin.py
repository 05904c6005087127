"""Sign-in through the real app and a real demo data dir: the form, lockout, TOTP, CSRF,
session timeouts and cookie flags, 401 handling, and API bearer tokens."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask, jsonify, session
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from appliance.demo import DEMO_TOTP_CODE, demo_password
from appliance.records import AuditEvent, Candidate, Role, RoleAssignment, User, utcnow
from appliance.store import Store
from compliance import tokens
from compliance.actors import Actor
from webapp.auth import current_actor, load_actor, requires, sign_in_candidate

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)")  # scripts come from /static only

HTML = {"Accept": "text/html"}


@pytest.fixture
def app(demo_app: Flask) -> Flask:
    """The demo app with a few probe pages (added before its first request)."""

    @requires()
    def protected() -> Any:
        return f"hello {current_actor().name}"

    @requires(Role.HR)
    def hr_only() -> Any:
        return "hr"

    def api_whoami() -> Any:
        actor = current_actor()
        return jsonify({"name": actor.name, "roles": sorted(actor.roles)})

    def form_post() -> Any:
        return "posted"

    demo_app.add_url_rule("/_probe/protected", "probe_protected", protected)
    demo_app.add_url_rule("/_probe/hr", "probe_hr", hr_only)
    demo_app.add_url_rule("/_probe/form", "probe_form", form_post, methods=["POST"])
    demo_app.add_url_rule("/api/_probe/whoami", "probe_whoami", api_whoami, methods=["GET", "POST"])
    return demo_app


def _store(app: Flask) -> Store:
    store: Store = app.extensions["enclave.store"]
    return store


def _secret(app: Flask, username: str) -> str:
    with _store(app).session() as db:
        secret = db.scalars(select(User.totp_secret).where(User.username == username)).one()
    assert secret
    return secret


def _csrf(client: FlaskClient, path: str = "/auth/login") -> str:
    page = client.get(path, headers=HTML).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _login(
    app: Flask,
    client: FlaskClient,
    username: str,
    password: str | None = None,
    code: str | None = None,
    next_path: str | None = None,
) -> TestResponse:
    form = {
        "csrf_token": _csrf(client),
        "username": username,
        "password": demo_password(username) if password is None else password,
        "totp": _fresh_code(app, username) if code is None else code,
    }
    if next_path is not None:
        form["next"] = next_path
    return client.post("/auth/login", data=form, headers=HTML)


def _fresh_code(app: Flask, username: str) -> str:
    """The current code, as if its 30-second step had not been used yet: tests sign one
    account in many times within a step, where a person would wait for the next code."""
    with _store(app).transaction() as db:
        db.execute(update(User).where(User.username == username).values(totp_last_step=None))
    return pyotp.TOTP(_secret(app, username)).now()


def test_sign_out_ends_every_copy_of_the_session(app: Flask) -> None:
    """A cookie copied before sign-out (another PC, a stolen copy) is refused afterwards."""
    client = app.test_client()
    assert _login(app, client, "hr.east").status_code == 302
    copy = app.test_client()
    for cookie in client._cookies.values():
        copy.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    assert _signed_in(copy)
    with client.session_transaction() as sess:
        token = sess["csrf"]
    assert client.post("/auth/logout", data={"csrf_token": token}, headers=HTML).status_code == 302
    assert not _signed_in(client)
    assert not _signed_in(copy)


def _events(app: Flask, action: str) -> list[AuditEvent]:
    with _store(app).session() as db:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        return list(db.scalars(query).all())


def _signed_in(client: FlaskClient) -> bool:
    return client.get("/_probe/protected", headers=HTML).status_code == 200


# --- the form -----------------------------------------------------------------------------


def test_the_sign_in_page_is_bilingual_with_no_inline_script_or_style(app: Flask) -> None:
    response = app.test_client().get("/auth/login", headers=HTML)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "登录" in page and "Sign in" in page
    assert 'name="csrf_token"' in page and 'name="totp"' in page
    assert not INLINE_SCRIPT.search(page) and "style=" not in page and "<style" not in page
    assert response.headers["Cache-Control"] == "no-store"


def test_sign_in_with_password_and_code_opens_protected_pages(app: Flask) -> None:
    client = app.test_client()
    assert not _signed_in(client)
    response = _login(app, client, "hr.east", next_path="/_probe/protected")
    assert response.status_code == 302 and response.location == "/_probe/protected"
    page = client.get("/_probe/protected", headers=HTML)
    assert page.status_code == 200 and page.get_data(as_text=True) == "hello hr.east"
    (event,) = _events(app, "signin")
    assert event.actor == "hr.east" and event.role == "hr" and event.result == "allowed"


def test_the_session_cookie_is_secure_httponly_and_samesite_strict(app: Flask) -> None:
    response = _login(app, app.test_client(), "hr.east")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_signing_in_starts_a_new_session_and_csrf_token(app: Flask) -> None:
    """Session fixation: nothing set before sign-in survives it."""
    client = app.test_client()
    before = _csrf(client)
    with client.session_transaction() as sess:
        sess["planted"] = "by someone else"
    _login(app, client, "hr.east")
    with client.session_transaction() as sess:
        assert "planted" not in sess and sess["csrf"] != before and sess["mfa"] is True


def test_next_never_leaves_the_site(app: Flask) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        client = app.test_client()
        assert _login(app, client, "hr.east", next_path=target).location == "/"


# --- TOTP (MLPS check) ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["", "123", "not-a-code"])
def test_the_right_password_without_the_right_code_does_not_sign_in(app: Flask, code: str) -> None:
    client = app.test_client()
    secret = _secret(app, "hradmin")
    good = pyotp.TOTP(secret).now()
    wrong = code or f"{(int(good) + 1) % 1000000:06d}"
    for attempt in (code, wrong):
        response = _login(app, client, "hradmin", code=attempt)
        assert response.status_code == 401
        assert "动态验证码" in response.get_data(as_text=True)
        assert not _signed_in(client)
    assert client.get("/_probe/hr", headers=HTML).status_code == 302


def test_the_demo_code_needs_demo_settings_as_well_as_a_demo_box(app: Flask) -> None:
    """demo_app is a demo box with demo = false in its settings: the code is refused;
    with demo = true it is accepted."""
    client = app.test_client()
    assert _login(app, client, "dpo", code=DEMO_TOTP_CODE).status_code == 401
    app.config["SETTINGS"] = app.config["SETTINGS"].model_copy(update={"demo": True})
    assert _login(app, client, "dpo", code=DEMO_TOTP_CODE).status_code == 302
    assert _signed_in(client)


def test_an_integration_account_cannot_use_the_sign_in_form(app: Flask) -> None:
    response = _login(app, app.test_client(), "integration")
    assert response.status_code == 401 and "API" in response.get_data(as_text=True)


# --- lockout (MLPS check) -------------------------------------------------------------------


def test_five_bad_passwords_lock_the_account_until_the_lock_runs_out(app: Flask) -> None:
    client = app.test_client()
    for i in range(5):
        assert _login(app, client, "hr.east", password=f"Wrong-Pass-{i}").status_code == 401
    locked = _login(app, client, "hr.east")
    assert locked.status_code == 401 and "锁定" in locked.get_data(as_text=True)
    assert not _signed_in(client)
    assert len(_events(app, "signin.bad_password")) == 5
    (lock,) = _events(app, "account.lock")
    assert lock.actor == "hr.east" and lock.source_ip == "127.0.0.1"
    assert _events(app, "signin.locked")[0].result == "denied"

    with _store(app).transaction() as db:
        user = db.scalars(select(User).where(User.username == "hr.east")).one()
        assert user.locked_until is not None
        user.locked_until = utcnow() - timedelta(seconds=1)
    assert _login(app, client, "hr.east").status_code == 302
    assert _signed_in(client)


# --- CSRF ---------------------------------------------------------------------------------


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    app: Flask, login_as: Callable[[str], FlaskClient]
) -> None:
    client = app.test_client()
    _login(app, client, "hr.east")
    assert client.post("/_probe/form", data={}, headers=HTML).status_code == 400
    wrong = client.post("/_probe/form", data={"csrf_token": "forged"}, headers=HTML)
    assert wrong.status_code == 400 and "CSRF" in wrong.get_data(as_text=True)
    json = client.post("/_probe/form", headers={"Accept": "application/json"})
    assert json.status_code == 400 and "CSRF" in json.get_json()["message"]
    with client.session_transaction() as sess:
        token = sess["csrf"]
    assert client.post("/_probe/form", data={"csrf_token": token}).status_code == 200
    assert client.post("/_probe/form", headers={"X-CSRF-Token": token}).status_code == 200
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)("/_probe/form").status_code == 400


def test_the_sign_in_and_sign_out_forms_need_the_csrf_token_too(app: Flask) -> None:
    client = app.test_client()
    form = {"username": "hr.east", "password": demo_password("hr.east"), "totp": "000000"}
    assert client.post("/auth/login", data=form).status_code == 400
    _login(app, client, "hr.east")
    assert client.post("/auth/logout").status_code == 400
    assert _signed_in(client)


# --- sessions -------------------------------------------------------------------------------


def test_sign_out_ends_the_session_and_is_logged(app: Flask) -> None:
    client = app.test_client()
    _login(app, client, "auditor")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    response = client.post("/auth/logout", data={"csrf_token": token}, headers=HTML)
    assert response.status_code == 302 and response.location == "/auth/login"
    assert not _signed_in(client)
    assert [e.actor for e in _events(app, "signout")] == ["auditor"]


def test_fifteen_idle_minutes_end_the_session(app: Flask) -> None:
    client = app.test_client()
    _login(app, client, "hr.east")
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 14 * 60
    assert _signed_in(client)
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 15 * 60 - 1
    response = client.get("/_probe/protected", headers=HTML)
    assert response.status_code == 302 and response.location.startswith("/auth/login")
    assert not _signed_in(client)
    assert [e.actor for e in _events(app, "session.expired")] == ["hr.east"]
    page = client.get("/auth/login", headers=HTML).get_data(as_text=True)
    assert "超时" in page


def test_a_session_ends_after_its_maximum_lifetime_however_active(app: Flask) -> None:
    client = app.test_client()
    _login(app, client, "hr.east")
    with client.session_transaction() as sess:
        sess["start"] = time.time() - 12 * 3600 - 1
    assert not _signed_in(client)


def test_unauthenticated_browsers_are_sent_to_sign_in_and_api_clients_get_json(
    app: Flask,
) -> None:
    client = app.test_client()
    page = client.get("/_probe/protected", headers=HTML)
    assert page.status_code == 302
    assert page.location == "/auth/login?next=/_probe/protected"
    api = client.get("/api/_probe/whoami")
    assert api.status_code == 401 and api.get_json()["error"] == "Unauthorized"
    assert api.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_role_not_held_is_forbidden(app: Flask) -> None:
    client = app.test_client()
    _login(app, client, "interviewer")
    assert client.get("/_probe/hr", headers=HTML).status_code == 403


def test_an_account_with_two_admin_duties_by_a_crafted_row_is_refused_at_load(
    app: Flask,
) -> None:
    """Separation of duties holds on every request, not only when roles are assigned."""
    client = app.test_client()
    _login(app, client, "sysadmin")
    assert _signed_in(client)
    with _store(app).transaction() as db:
        uid = db.scalars(select(User.id).where(User.username == "sysadmin")).one()
        db.add(RoleAssignment(user_id=uid, role=Role.AUDIT_ADMIN, org_unit_id=1))
    assert not _signed_in(client)
    (refused,) = _events(app, "session.refused")
    assert refused.actor == "sysadmin" and refused.result == "denied"
    assert _login(app, client, "sysadmin").status_code == 401


def test_the_login_as_fixture_client_carries_its_csrf_token(
    app: Flask, login_as: Callable[[str], FlaskClient]
) -> None:
    client = login_as("hr.east")
    assert _signed_in(client)
    assert client.post("/_probe/form").status_code == 200


# --- API bearer tokens ----------------------------------------------------------------------


def test_an_integration_account_uses_its_api_token_and_a_wrong_one_gets_401(app: Flask) -> None:
    store = _store(app)
    with store.session() as db:
        uid = db.scalars(select(User.id).where(User.username == "integration")).one()
    token = tokens.issue_api_token(store, uid, Actor(kind="system", name="system"))
    client = app.test_client()
    good = client.get("/api/_probe/whoami", headers={"Authorization": f"Bearer {token}"})
    assert good.status_code == 200
    assert good.get_json() == {"name": "integration", "roles": ["integration"]}
    # No CSRF token needed with a bearer token; none of this touches a session cookie.
    posted = client.post("/api/_probe/whoami", headers={"Authorization": f"Bearer {token}"})
    assert posted.status_code == 200
    for header in (f"Bearer {token}x", "Bearer ", f"Basic {token}", "Bearer ehr_nope"):
        bad = client.get("/api/_probe/whoami", headers={"Authorization": header})
        assert bad.status_code == 401, header
    # The bearer is honoured on /api/ only: a portal page does not accept it.
    portal = client.get("/_probe/protected", headers={"Authorization": f"Bearer {token}", **HTML})
    assert portal.status_code == 302


def test_a_bearer_header_never_falls_back_to_the_session(app: Flask) -> None:
    client = app.test_client()
    _login(app, client, "hr.east")
    assert client.get("/api/_probe/whoami").status_code == 200
    wrong = client.get("/api/_probe/whoami", headers={"Authorization": "Bearer ehr_wrong"})
    assert wrong.status_code == 401


def test_a_candidate_token_acts_as_that_candidate_on_the_api(app: Flask) -> None:
    store = _store(app)
    with store.session() as db:
        candidate_id = db.scalars(select(Candidate.id)).first()
    assert candidate_id is not None
    hr = Actor.staff("hr.east", 6, ())
    token = tokens.issue(store, candidate_id, "data_request", timedelta(days=1), hr)
    with app.test_request_context("/api/x", headers={"Authorization": f"Bearer {token}"}):
        actor = load_actor()
    assert actor is not None and actor.kind == "candidate"
    assert actor.candidate_id == candidate_id and actor.token_purpose == "data_request"
    tokens.revoke(store, tokens.token_id(store, token), hr)
    with app.test_request_context("/api/x", headers={"Authorization": f"Bearer {token}"}):
        assert load_actor() is None


def test_a_candidate_session_is_rechecked_on_every_request(app: Flask) -> None:
    """The kiosk's session holds the token: revoking it ends the session at once."""
    store = _store(app)
    with store.session() as db:
        candidate_id = db.scalars(select(Candidate.id)).first()
    assert candidate_id is not None
    hr = Actor.staff("hr.east", 6, ())
    token = tokens.issue(store, candidate_id, "interview", timedelta(days=1), hr)
    with app.test_request_context("/kiosk"):
        with pytest.raises(tokens.WrongTokenPurpose):
            sign_in_candidate(token, "data_request")
        actor = sign_in_candidate(token, "interview")
        assert actor.candidate_id == candidate_id
        kept = dict(session)
    assert kept["ctoken"] == token and "uid" not in kept
    tokens.revoke(store, tokens.token_id(store, token), hr)
    with app.test_request_context("/kiosk"):
        session.update(kept)
        assert load_actor() is None
