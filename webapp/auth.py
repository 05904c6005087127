"""Who is signed in, as an `Actor` the gate understands.

Session contract (Flask's signed cookie; no personal data in it):
    session["uid"]   the user's id
    session["mfa"]   True once the second factor was given (or not required)
    session["seen"]  epoch seconds of the last request (idle timeout)
Sign-in views, lockout, TOTP, CSRF and LDAP are built on this (issue #3).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import abort, current_app, g, request, session
from sqlalchemy import select

from appliance.records import OrgUnit, Role, RoleAssignment, User
from appliance.settings import Settings
from compliance.actors import Actor, Grant
from webapp.extensions import appliance_store


def load_actor() -> Actor | None:
    """The signed-in staff member, or None (expired, idle too long, or not signed in)."""
    if "actor" in g:
        actor: Actor | None = g.actor
        return actor
    g.actor = None
    uid = session.get("uid")
    settings: Settings = current_app.config["SETTINGS"]
    if uid is None:
        return None
    if time.time() - float(session.get("seen", 0)) > settings.auth.idle_minutes * 60:
        session.clear()
        return None
    session["seen"] = time.time()
    with appliance_store.store.session() as db:
        user = db.get(User, uid)
        if user is None or not user.active:
            session.clear()
            return None
        rows = db.execute(
            select(RoleAssignment.role, OrgUnit.path)
            .join(OrgUnit, RoleAssignment.org_unit_id == OrgUnit.id)
            .where(RoleAssignment.user_id == uid)
        ).all()
        grants = tuple(Grant(role=Role(r), org_path=p) for r, p in rows)
        g.actor = Actor.staff(
            user.username,
            user.id,
            grants,
            source_ip=request.remote_addr,
            mfa=bool(session.get("mfa")),
        )
    return g.actor  # type: ignore[no-any-return]


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
