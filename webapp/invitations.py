"""Invitations (issue 6, item 5): HR invites selected candidates; candidates open their link.

Staff (`bp`, HR and HR admin): `GET /invitations/new?application=<id>...` (the form),
`POST /invitations` (invite), `GET /invitations` (the outbox: every message with its
state, tries and last error; failed ones can be sent again). Only application ids and
job titles are shown here: no personal field, so no gate read (the pipeline board,
where HR picks the candidates, shows them their names through the gate). Row scope is
the gate's: an application outside the account's subtree is answered 404.

Candidates (`candidate_bp`): `GET /c/<token>` (time, requirements, device check, and a
form to move the slot within the window), `POST /c/<token>/reschedule`. The URL holds the
token only. An altered, expired or revoked link gets a page that says so in Chinese and
English, with status 400, 410 or 410.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from appliance.records import (
    Application,
    Invitation,
    Job,
    MessageStatus,
    OutboxMessage,
    Role,
    utcnow,
)
from appliance.settings import Settings
from compliance import tokens
from compliance.gate import AccessDenied, Gate
from webapp.api import answer_denied, no_store
from webapp.auth import current_actor, requires, sign_in_candidate
from webapp.extensions import appliance_store

bp = Blueprint("invitations", __name__)
candidate_bp = Blueprint("candidate_link", __name__)

STAFF = (Role.HR, Role.HR_ADMIN)
PAGE_SIZE = 200
TOKEN_STATUS = {
    tokens.BadTokenSignature: 400,
    tokens.TokenExpired: 410,
    tokens.TokenRevoked: 410,
    tokens.WrongTokenPurpose: 403,
}
TOKEN_EN = {
    tokens.BadTokenSignature: "This link is invalid or incomplete: check that it was copied "
    "whole, or ask the recruiter to send it again.",
    tokens.TokenExpired: "This link has expired: ask the recruiter to send a new one.",
    tokens.TokenRevoked: "This link was withdrawn: please contact the recruiter.",
    tokens.WrongTokenPurpose: "This link cannot be used here.",
}


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _local_input(value: datetime) -> str:
    """A time as the `datetime-local` input shows it, in the box's zone."""
    return value.astimezone(_settings().zone).strftime("%Y-%m-%dT%H:%M")


def _parse_local(text: str | None) -> datetime | None:
    """A `datetime-local` value (box time zone) as an aware datetime; None if not a time."""
    try:
        naive = datetime.strptime((text or "").strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        return None
    return naive.replace(tzinfo=_settings().zone)


def _local(value: datetime) -> str:
    return value.astimezone(_settings().zone).strftime("%Y-%m-%d %H:%M")


def _ids(values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        abort(400, _("申请编号无效。"))


# --- staff --------------------------------------------------------------------------------


def _selected(application_ids: list[int]) -> list[dict[str, Any]]:
    """The applications (ids, job, stage) if all lie in the account's scope, else 404."""
    from workers.invitations import scoped_applications

    store = appliance_store.store
    with store.session() as db:
        apps = scoped_applications(store, current_actor(), db, application_ids)
        titles = dict(db.execute(select(Job.id, Job.title)).all())
        return [{"id": a.id, "job": titles.get(a.job_id, ""), "stage": a.stage} for a in apps]


def _form(apps: list[dict[str, Any]], values: dict[str, Any], status: int = 200) -> Any:
    settings = _settings()
    return (
        render_template(
            "invitations/new.html",
            apps=apps,
            values=values,
            sms_ready=bool(settings.sms.url),
            email_ready=bool(settings.smtp.host),
            slot_minutes=settings.invitations.slot_minutes,
            zone=settings.timezone,
        ),
        status,
    )


@bp.get("/invitations/new")
@requires(*STAFF)
def new() -> Any:
    ids = _ids(request.args.getlist("application"))
    if not ids:
        flash(_("请先在职位的候选人看板中选择候选人。"))
        return redirect(url_for("invitations.outbox"))
    start = (utcnow() + timedelta(days=1)).replace(hour=1, minute=0, second=0, microsecond=0)
    values = {
        "window_start": _local_input(start),
        "window_end": _local_input(start + timedelta(days=2)),
        "channels": ["email"] + (["sms"] if _settings().sms.url else []),
    }
    return _form(_selected(ids), values)


@bp.post("/invitations")
@requires(*STAFF)
def create() -> Any:
    from workers.invitations import InvitationRefused, Slot, create_invitations

    ids = _ids(request.form.getlist("application"))
    apps = _selected(ids) if ids else []
    window_start = request.form.get("window_start", "")
    window_end = request.form.get("window_end", "")
    channels = request.form.getlist("channel")
    values = {"window_start": window_start, "window_end": window_end, "channels": channels}
    start, end = _parse_local(window_start), _parse_local(window_end)
    if start is None or end is None:
        flash(_("请填写有效的开始和结束时间。"))
        return _form(apps, values, 400)
    try:
        created = create_invitations(
            appliance_store.store,
            appliance_store.redis,
            current_actor(),
            ids,
            Slot(start, end),
            channels,
            _settings(),
        )
    except InvitationRefused as exc:
        flash(exc.zh if _lang() == "zh" else str(exc))
        return _form(apps, values, 400)
    flash(_("已为 %(n)d 位候选人创建邀请，消息正在发送。", n=len(created.invitation_ids)))
    return redirect(url_for("invitations.outbox"), code=303)


def _lang() -> str:
    from webapp.api import request_language

    return request_language()


@bp.get("/invitations")
@requires(*STAFF)
def outbox() -> Any:
    """Every message of the invitations in the account's scope, newest first."""
    actor, store = current_actor(), appliance_store.store
    the_gate = Gate(store)
    the_gate.require(actor, "view", "screening", "outbox_messages", "list")
    status = request.args.get("status")
    stmt = (
        select(OutboxMessage, Invitation, Job.title)
        .join(Invitation, Invitation.id == OutboxMessage.invitation_id)
        .join(Application, Application.id == Invitation.application_id)
        .join(Job, Job.id == Application.job_id)
        .where(the_gate.scope(actor, Application, "view", "screening"))
        .order_by(OutboxMessage.id.desc())
        .limit(PAGE_SIZE)
    )
    if status in {s.value for s in MessageStatus}:
        stmt = stmt.where(OutboxMessage.status == MessageStatus(status))
    with store.session() as db:
        rows = [
            {
                "id": m.id,
                "application_id": inv.application_id,
                "job": title,
                "slot": _local(inv.slot_start),
                "channel": m.channel.value,
                "kind": m.kind.value,
                "status": m.status.value,
                "attempts": m.attempts,
                "error": m.last_error or "",
                "sent_at": _local(m.sent_at) if m.sent_at else "",
            }
            for m, inv, title in db.execute(stmt)
        ]
    return render_template("invitations/outbox.html", rows=rows, status=status)


@bp.post("/invitations/messages/<int:message_id>/retry")
@requires(*STAFF)
def retry(message_id: int) -> Any:
    """Send a failed message again (it keeps its idempotency key: never delivered twice)."""
    from workers.invitations import enqueue_messages
    from workers.outbox import retry_failed

    actor, store = current_actor(), appliance_store.store
    the_gate = Gate(store)
    with store.session() as db:
        found = db.scalar(
            select(OutboxMessage.id)
            .join(Invitation, Invitation.id == OutboxMessage.invitation_id)
            .join(Application, Application.id == Invitation.application_id)
            .where(
                OutboxMessage.id == message_id,
                the_gate.scope(actor, Application, "view", "screening"),
            )
        )
    if found is None:
        abort(404)
    ids = retry_failed(store, [message_id])
    if ids:
        enqueue_messages(store, appliance_store.redis, ids, 1)
        flash(_("消息已重新排队发送。"))
    else:
        flash(_("该消息不是失败状态，无需重试。"))
    return redirect(url_for("invitations.outbox"), code=303)


bp.register_error_handler(AccessDenied, answer_denied)
bp.after_request(no_store)


# --- candidates ---------------------------------------------------------------------------


def _refused(exc: tokens.TokenError) -> Any:
    kind = next((k for k in TOKEN_STATUS if isinstance(exc, k)), tokens.BadTokenSignature)
    return (
        render_template("invitations/link_refused.html", zh=exc.zh, en=TOKEN_EN[kind]),
        TOKEN_STATUS[kind],
    )


def _landing(token: str, status: int = 200, problem: tuple[str, str] | None = None) -> Any:
    from workers.invitations import TOKEN_PURPOSE, invitation_of_token
    from workers.outbox import DEVICE_CHECK, requirement_lines

    try:
        actor = sign_in_candidate(token, TOKEN_PURPOSE)
    except tokens.TokenError as exc:
        return _refused(exc)
    store = appliance_store.store
    with store.session() as db:
        invitation = invitation_of_token(db, tokens.token_id(store, token))
        if invitation is None or invitation.application.candidate_id != actor.candidate_id:
            return _refused(tokens.TokenRevoked())
        job = invitation.application.job
        view = {
            "job": job.title,
            "requirements": requirement_lines(job.requirements),
            "slot_start": _local(invitation.slot_start),
            "slot_end": _local(invitation.slot_end),
            "window_start": _local(invitation.window_start),
            "window_end": _local(invitation.window_end),
            "min": _local_input(max(invitation.window_start, utcnow())),
            "max": _local_input(
                invitation.window_end - timedelta(minutes=_settings().invitations.slot_minutes)
            ),
            "value": _local_input(invitation.slot_start),
            "status": invitation.session.status.value,
        }
    return (
        render_template(
            "invitations/landing.html",
            token=token,
            view=view,
            guide=DEVICE_CHECK,
            zone=_settings().timezone,
            problem=problem,
        ),
        status,
    )


@candidate_bp.get("/c/<token>")
def landing(token: str) -> Any:
    return _landing(token)


@candidate_bp.post("/c/<token>/reschedule")
def reschedule(token: str) -> Any:
    from workers.invitations import InvitationRefused
    from workers.invitations import reschedule as move

    try:
        actor = tokens.resolve(
            appliance_store.store, token, "interview", source_ip=request.remote_addr
        )
    except tokens.TokenError as exc:
        return _refused(exc)
    start = _parse_local(request.form.get("slot_start"))
    if start is None:
        return _landing(token, 400, ("请选择有效的时间。", "Choose a valid time."))
    try:
        move(
            appliance_store.store,
            appliance_store.redis,
            actor,
            tokens.token_id(appliance_store.store, token),
            start,
            _settings(),
        )
    except InvitationRefused as exc:
        return _landing(token, 400, (exc.zh, str(exc)))
    except AccessDenied:
        return _refused(tokens.TokenRevoked())
    flash(
        "面试时间已更改，确认消息已发送。 Your interview was moved; a confirmation is on its way."
    )
    return redirect(url_for("candidate_link.landing", token=token), code=303)


candidate_bp.after_request(no_store)
