"""Who is signed in, as an `Actor` the gate understands; sign-in, sign-out and CSRF.

Session contract (Flask's signed cookie; no personal data in it):
    session["uid"]    the user's id
    session["mfa"]    True once the second factor was given (or not required)
    session["seen"]   epoch seconds of the last request (idle timeout)
    session["start"]  epoch seconds of sign-in: a session ends `auth.session_max_hours`
                      after it however active it is (set on first use if absent)
    session["csrf"]   the per-session CSRF token; exists before sign-in too (the
                      sign-in form is protected), replaced at sign-in
    session["ctoken"] a candidate's token (kiosk or link, set by `sign_in_candidate`):
                      the actor is that candidate, re-checked on every request so that
                      expiry and revocation take effect at once

Sign-in is one form, one step: username, password and the 6-digit TOTP code
together (`compliance.accounts.authenticate`), so no half-signed-in session ever
exists and a wrong password cannot be told from a wrong code. At sign-in the
session is cleared and started anew (session fixation); the cookie is Secure,
HttpOnly, SameSite=Strict (create_app).

CSRF: every POST, PUT, PATCH and DELETE must carry the session's token, as the
form field `csrf_token` (templates: `{{ csrf_token() }}`) or the `X-CSRF-Token`
header (the portal's own scripts), or is refused with 400. Exempt: /api/ requests
that authenticate with `Authorization: Bearer` (a browser cannot add that header
to a cross-site request, and such a request never falls back to the cookie).

401: browsers are sent to the sign-in page (back to the page they asked for
afterwards), API clients get JSON.

On /api/, `Authorization: Bearer <token>` is an integration account's API token
("ehr_...") or a candidate's token (`compliance.tokens`).
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from appliance.records import Role, User
from appliance.settings import Settings
from compliance import accounts, tokens
from compliance.actors import Actor
from webapp.errors import wants_json_response
from webapp.extensions import appliance_store

bp = Blueprint("auth", __name__, url_prefix="/auth")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = (
    "表单已失效或缺少安全令牌（CSRF），请刷新页面后重试。 "
    "The form's security token (CSRF) is missing or wrong: reload the page and try again."
)


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _bearer_token() -> str | None:
    """The token of an /api/ request with an Authorization header ("" if not Bearer).

    None when the request carries no such header: it is then a cookie request.
    """
    if not request.path.startswith("/api/"):
        return None
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def load_actor() -> Actor | None:
    """Who acts in this request, or None (not signed in, expired, idle too long, refused):
    a staff member (session), an integration account (API token on /api/) or a candidate
    (their token: in the session, or as the bearer on /api/)."""
    if "actor" not in g:
        g.actor = _actor_of_request()
    actor: Actor | None = g.actor
    return actor


def _actor_of_request() -> Actor | None:
    bearer = _bearer_token()
    if bearer is not None:
        # Header-authenticated requests never fall back to the cookie.
        if bearer.startswith(tokens.API_TOKEN_PREFIX):
            return _token_actor(tokens.resolve_api_token, bearer)
        return _candidate_actor(bearer)
    if not _session_alive():
        return None
    if "ctoken" in session:
        candidate = _candidate_actor(str(session["ctoken"]))
        if candidate is None:
            session.clear()
        return candidate
    return _staff_actor(int(session["uid"]))


def _session_alive() -> bool:
    """A signed-in session within its idle timeout and absolute lifetime (then refreshed)."""
    uid = session.get("uid")
    if uid is None and "ctoken" not in session:
        return False
    rules = _settings().auth
    now = time.time()
    start = float(session.setdefault("start", now))
    if (
        now - float(session.get("seen", 0)) > rules.idle_minutes * 60
        or now - start > rules.session_max_hours * 3600
    ):
        if uid is not None:
            _end_session(int(uid), "session.expired")
        session.clear()
        flash("会话已超时，请重新登录。 Your session timed out: please sign in again.")
        return False
    session["seen"] = now
    return True


def _staff_actor(uid: int) -> Actor | None:
    store = appliance_store.store
    with store.session() as db:
        user = db.get(User, uid)
        if user is None or not user.active:
            session.clear()
            return None
        if int(session.get("epoch", 0)) != user.session_epoch:
            session.clear()  # signed out since this cookie was issued (any copy of it)
            return None
        username = user.username
        grants = accounts.grants_of(db, uid)
    roles = {gr.role for gr in grants}
    mfa = bool(session.get("mfa"))
    actor = Actor.staff(username, uid, grants, source_ip=request.remote_addr, mfa=mfa)
    if Role.INTEGRATION in roles or accounts.separation_problems(roles):
        # Rows written around assign_role (MLPS-3 separation of duties), or an API-only
        # account in a browser session: the account is refused, not half-trusted.
        accounts.record_session_end(store, actor, "session.refused", "denied")
        session.clear()
        return None
    return actor


def _token_actor(resolve: Callable[..., Actor], *args: str) -> Actor | None:
    try:
        return resolve(appliance_store.store, *args, source_ip=request.remote_addr)
    except tokens.TokenError:
        return None  # refused and logged by compliance.tokens


def _candidate_actor(token: str) -> Actor | None:
    """A candidate token, for the purpose it was issued for (the gate checks the purpose)."""
    return _token_actor(tokens.resolve_any, token)


def sign_in_candidate(token: str, purpose: str) -> Actor:
    """The kiosk or a candidate's link: check the token for `purpose`, then start a candidate
    session (cleared first). Raises compliance.tokens.TokenError with a message to show."""
    actor = tokens.resolve(appliance_store.store, token, purpose, source_ip=request.remote_addr)
    session.clear()
    now = time.time()
    session.update({"ctoken": token, "seen": now, "start": now, "csrf": secrets.token_urlsafe(32)})
    g.actor = actor
    return actor


def _end_session(uid: int, reason: str) -> None:
    store = appliance_store.store
    with store.session() as db:
        user = db.get(User, uid)
        actor = (
            Actor.staff(
                user.username, uid, accounts.grants_of(db, uid), source_ip=request.remote_addr
            )
            if user is not None
            else None
        )
    if actor is not None:
        accounts.record_session_end(store, actor, reason)
    session.clear()


def current_actor() -> Actor:
    """The actor of this request; 401 when nobody (complete) is signed in."""
    actor = load_actor()
    if actor is None or not actor.mfa:
        abort(401)
    return actor


def requires(*roles: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """View decorator: signed in (second factor done) and holding one of `roles` (any if none)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = current_actor()
            if roles and not (actor.roles & set(roles)):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


# --- CSRF -------------------------------------------------------------------------------


@bp.app_template_global()
def csrf_token() -> str:
    """This session's CSRF token (made on first use): `{{ csrf_token() }}` in every form."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


@bp.before_app_request
def csrf_protect() -> None:
    if request.method not in UNSAFE_METHODS or _bearer_token() is not None:
        return
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(str(expected).encode(), given.encode()):
        abort(400, description=CSRF_REFUSED)


# --- 401 --------------------------------------------------------------------------------


@bp.app_errorhandler(401)
def unauthorised(exc: HTTPException) -> Any:
    if wants_json_response():
        response = jsonify(
            {
                "error": "Unauthorized",
                "message": "sign in first, or send a valid API token (Authorization: Bearer)",
            }
        )
        response.status_code = 401
        if request.path.startswith("/api/"):
            response.headers["WWW-Authenticate"] = 'Bearer realm="enclave"'
        return response
    return redirect(url_for("auth.login", next=request.path))


# --- views ------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`): no open redirect."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_path = _safe_next(request.values.get("next"))
    if request.method == "GET":
        actor = load_actor()
        if actor is not None and actor.mfa:
            return redirect(next_path)
        return _no_store(
            current_app.make_response(
                render_template("auth/login.html", next=next_path, username="", messages=None)
            )
        )

    username = request.form.get("username", "")
    result = accounts.authenticate(
        appliance_store.store,
        _settings(),
        username,
        request.form.get("password", ""),
        request.form.get("totp", ""),
        request.remote_addr,
    )
    if not result.ok:
        page = render_template(
            "auth/login.html", next=next_path, username=username, messages=result.messages
        )
        return _no_store(current_app.make_response((page, 401)))

    session.clear()  # nothing from before sign-in survives it (session fixation)
    now = time.time()
    with appliance_store.store.session() as db:
        signed_in = db.get(User, result.user_id)
        epoch = signed_in.session_epoch if signed_in is not None else 0
    session.update(
        {
            "epoch": epoch,
            "uid": result.user_id,
            "mfa": True,
            "seen": now,
            "start": now,
            "csrf": secrets.token_urlsafe(32),
        }
    )
    return redirect(next_path)


@bp.post("/logout")
def logout() -> Any:
    actor = load_actor()
    if actor is not None and actor.kind == "staff" and actor.user_id is not None:
        accounts.record_session_end(appliance_store.store, actor)
        accounts.end_all_sessions(appliance_store.store, actor.user_id)
    session.clear()
    flash("您已安全退出。 You are signed out.")
    return redirect(url_for("auth.login"))
