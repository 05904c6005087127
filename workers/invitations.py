"""Interview invitations (issue 6, item 5): invite, remind, reschedule.

`create_invitations` turns a set of applications HR selected into, in ONE transaction,
an interview session per application (the job's first interview plan, HR's window),
a candidate token for the link (purpose `interview`, expiring some days after the
window), the invitation, and one outbox message per channel; only after that commits
are the outbox jobs enqueued (ids only). Nothing is half-done: a refused application
refuses the whole batch before anything is written.

The token rows are written in that same transaction, in `compliance.tokens`' format
(`link_token` rebuilds the link from the row and the box's key at send time, so the
token itself is stored nowhere); `tokens.resolve` checks them like any other. One audit
event names every candidate of the batch (no personal values are read to invite:
ids and stages only), which keeps a 10,000-candidate invitation one event, not 10,000.

Who may invite: the routes allow HR and HR admin; row scope is the gate's
(`Gate.scope` on applications), so an application outside the actor's org subtree
is answered as if it did not exist (`NotInScope`, 404), and that refusal is logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.orm import Session

from appliance.records import (
    Application,
    Candidate,
    CandidateToken,
    Channel,
    InterviewPlan,
    InterviewSession,
    Invitation,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    SessionStatus,
    Stage,
    utcnow,
)
from appliance.records.pipeline import StageChange
from appliance.settings import Settings, load_settings
from appliance.store import Store
from compliance import audit, tokens
from compliance.actors import Actor
from compliance.gate import Gate, NotInScope
from workers.jobs import JobContext, job

PURPOSE = "screening"
"""HR invites while screening applications (policy.yaml)."""
TOKEN_PURPOSE = "interview"  # noqa: S105 (a token purpose name, not a secret)
REMIND_NOT_BEFORE = timedelta(hours=1)
"""No reminder for an invitation (or a move) made less than this long ago: it was just sent."""


class InvitationRefused(ValueError):
    """Bad input for an invitation; `zh` is the Chinese message, str() the English one."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime


def invitation_settings(store: Store) -> Settings:
    """The box's settings as the worker sees them (files and ENCLAVE_*), for this data dir."""
    return load_settings(data_dir=store.data_dir)


# --- the link ---------------------------------------------------------------------------


def new_token_row(candidate_id: int, expires: datetime, created_by: int | None) -> CandidateToken:
    """The candidate's link token row, written in the invitation's transaction."""
    return tokens.new_token_row(candidate_id, TOKEN_PURPOSE, expires, created_by)


def link_token(store: Store, row: CandidateToken) -> str:
    """The token string of a token row, rebuilt at send time instead of stored anywhere."""
    return tokens.token_of(store, row)


def link_url(settings: Settings, token: str) -> str:
    """The candidate's link: the token only, no id or personal data (ARCHITECTURE.md)."""
    base = settings.invitations.base_url or (
        f"https://{settings.web.hostnames[0]}:{settings.web.port}"
    )
    return f"{base.rstrip('/')}/c/{token}"


# --- invite -----------------------------------------------------------------------------


def check_window(settings: Settings, window: Slot, now: datetime) -> None:
    """HR's window: in the future, long enough for one slot, within the token's lifetime."""
    if window.start.tzinfo is None or window.end.tzinfo is None:
        raise ValueError("window times must be timezone-aware")
    if window.end <= window.start:
        raise InvitationRefused(
            "结束时间必须晚于开始时间。", "The window must end after it starts."
        )
    if window.end <= now:
        raise InvitationRefused("面试时间段已经过去。", "The window lies in the past.")
    slot = timedelta(minutes=settings.invitations.slot_minutes)
    if window.end - window.start < slot:
        raise InvitationRefused(
            f"时间段至少需要 {settings.invitations.slot_minutes} 分钟。",
            f"The window must be at least {settings.invitations.slot_minutes} minutes long.",
        )
    grace = timedelta(days=settings.invitations.link_grace_days)
    if window.end + grace - now > tokens.MAX_TTL:
        raise InvitationRefused(
            f"时间段不能晚于 {tokens.MAX_TTL.days} 天之后。",
            f"The window must end within {tokens.MAX_TTL.days} days.",
        )


def check_channels(settings: Settings, channels: Iterable[str]) -> list[Channel]:
    chosen: list[Channel] = []
    for name in channels:
        try:
            channel = Channel(name)
        except ValueError:
            raise InvitationRefused("未知的发送方式。", f"Unknown channel {name!r}.") from None
        if channel not in chosen:
            chosen.append(channel)
    if not chosen:
        raise InvitationRefused(
            "请至少选择一种发送方式（邮件或短信）。", "Choose at least one channel (e-mail or SMS)."
        )
    if Channel.EMAIL in chosen and not settings.smtp.host:
        raise InvitationRefused(
            "未配置邮件服务器（smtp.host），无法发送邮件。",
            "No SMTP relay is configured (smtp.host): e-mail cannot be sent.",
        )
    if Channel.SMS in chosen and not settings.sms.url:
        raise InvitationRefused(
            "未配置短信网关（sms.url），无法发送短信。",
            "No SMS gateway is configured (sms.url): SMS cannot be sent.",
        )
    return chosen


def chunks(ids: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    """Ids in slices for `IN (...)`: SQLite's plan for a long IN list combined with the
    scope's subqueries grows with the square of its length (10,000 ids: ~25 s, in slices
    of 500: under 1 s)."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]


SMALL_BATCH = 200


def _rows_in_scope(
    db: Session, columns: Sequence[Any], ids: Sequence[int], scope: ColumnElement[bool]
) -> list[Any]:
    """Rows of the applications `ids` that `scope` covers (first column: the id).

    A few ids: `id IN (...) AND scope`. Many: the scope alone, filtered here; SQLite
    re-runs the scope's subqueries for every listed id, so 10,000 listed ids took ~35 s,
    while one pass over the scope takes well under a second.
    """
    if len(ids) <= SMALL_BATCH:
        return list(db.execute(select(*columns).where(Application.id.in_(ids), scope)))
    wanted = set(ids)
    return [row for row in db.execute(select(*columns).where(scope)) if row[0] in wanted]


def scoped_application_ids(
    store: Store, actor: Actor, db: Session, application_ids: Sequence[int], purpose: str = PURPOSE
) -> list[int]:
    """The ids, deduplicated in the order given, if every one lies in the actor's row scope.

    One missing or out-of-scope id refuses all (NotInScope: the web answers 404 and does
    not say which exist), and the refusal is recorded.
    """
    the_gate = Gate(store)
    the_gate.require(actor, "view", purpose, "applications", "invite")
    ids = list(dict.fromkeys(application_ids))
    if not ids:
        raise InvitationRefused("请先选择候选人。", "Select at least one candidate first.")
    scope = the_gate.scope(actor, Application, "view", purpose)
    found = {row[0] for row in _rows_in_scope(db, (Application.id,), ids, scope)}
    if len(found) != len(ids):
        audit.record(store, actor, "invite", "applications", purpose, result="denied", fields=())
        raise NotInScope("some applications are missing or outside this account's row scope")
    return ids


def scoped_applications(
    store: Store, actor: Actor, db: Session, application_ids: Sequence[int], purpose: str = PURPOSE
) -> list[Application]:
    """Like `scoped_application_ids`, the rows themselves (for the invitation form)."""
    ids = scoped_application_ids(store, actor, db, application_ids, purpose)
    found = {a.id: a for a in db.scalars(select(Application).where(Application.id.in_(ids)))}
    return [found[i] for i in ids]


@dataclass(frozen=True)
class Chosen:
    """What inviting needs of an application (plain columns: no ORM objects for 10,000)."""

    id: int
    candidate_id: int
    job_id: int
    stage: Stage


def _in_scope_again(
    store: Store, actor: Actor, db: Session, ids: list[int], purpose: str
) -> list[Chosen]:
    """The checked applications, read again under the write lock (still in scope)."""
    scope = Gate(store).scope(actor, Application, "view", purpose)
    columns = (Application.id, Application.candidate_id, Application.job_id, Application.stage)
    found = {row[0]: Chosen(*row) for row in _rows_in_scope(db, columns, ids, scope)}
    if len(found) != len(ids):
        raise NotInScope("an application left this account's row scope meanwhile")
    return [found[i] for i in ids]


def _first_plans(db: Session, job_ids: set[int]) -> dict[int, int]:
    """Each job's first interview round (lowest round, then oldest)."""
    rows = db.execute(
        select(InterviewPlan.job_id, InterviewPlan.id)
        .where(InterviewPlan.job_id.in_(job_ids))
        .order_by(InterviewPlan.job_id, InterviewPlan.round_no, InterviewPlan.id)
    ).all()
    plans: dict[int, int] = {}
    for job_id, plan_id in rows:
        plans.setdefault(job_id, plan_id)
    return plans


def _already_invited(db: Session, application_ids: list[int], now: datetime) -> list[int]:
    """Applications with a live invitation (window not over, session still scheduled)."""
    stmt = (
        select(Invitation.application_id)
        .join(InterviewSession, InterviewSession.id == Invitation.session_id)
        .where(Invitation.window_end > now, InterviewSession.status == SessionStatus.SCHEDULED)
    )
    return sorted(
        {
            i
            for chunk in chunks(application_ids)
            for i in db.scalars(stmt.where(Invitation.application_id.in_(chunk)))
        }
    )


@dataclass(frozen=True)
class Created:
    invitation_ids: list[int]
    message_ids: list[int]
    subject_ids: list[str]


def _next_ids(db: Session, model: type[Any], count: int) -> list[int]:
    """The next `count` primary keys of `model`. Safe only under the write lock (BEGIN
    IMMEDIATE: nobody else inserts meanwhile); lets the batch use plain multi-row INSERTs,
    where RETURNING made SQLAlchemy insert row by row (10,000 invitations: 90 s, not 2)."""
    start = int(db.scalar(select(func.max(model.id))) or 0) + 1
    return list(range(start, start + count))


def _write_batch(
    db: Session,
    actor: Actor,
    apps: list[Chosen],
    plans: dict[int, int],
    window: Slot,
    slot: timedelta,
    chosen: list[Channel],
    expires: datetime,
    batch: str,
) -> Created:
    """The rows of one invitation batch, as executemany INSERTs with ids chosen here."""
    session_ids = _next_ids(db, InterviewSession, len(apps))
    db.execute(
        insert(InterviewSession),
        [
            {
                "id": session_id,
                "application_id": a.id,
                "plan_id": plans[a.job_id],
                "status": SessionStatus.SCHEDULED,
                "window_start": window.start,
                "window_end": window.end,
                "interviewer_ids": [],
            }
            for a, session_id in zip(apps, session_ids, strict=True)
        ],
    )
    token_rows = [new_token_row(a.candidate_id, expires, actor.user_id) for a in apps]
    db.execute(
        insert(CandidateToken),
        [
            {
                "id": t.id,
                "candidate_id": t.candidate_id,
                "purpose": t.purpose,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "created_by_id": t.created_by_id,
            }
            for t in token_rows
        ],
    )
    invitation_ids = _next_ids(db, Invitation, len(apps))
    db.execute(
        insert(Invitation),
        [
            {
                "id": invitation_id,
                "application_id": a.id,
                "session_id": session_id,
                "token_id": token.id,
                "window_start": window.start,
                "window_end": window.end,
                "slot_start": window.start,
                "slot_end": window.start + slot,
                "channels": [c.value for c in chosen],
                "sequence": 0,
                "created_by_id": actor.user_id,
            }
            for a, session_id, token, invitation_id in zip(
                apps, session_ids, token_rows, invitation_ids, strict=True
            )
        ],
    )
    message_ids = _next_ids(db, OutboxMessage, len(apps) * len(chosen))
    pairs = [(i, c) for i in invitation_ids for c in chosen]
    db.execute(
        insert(OutboxMessage),
        [
            {
                "id": message_id,
                "invitation_id": invitation_id,
                "channel": channel,
                "kind": MessageKind.INVITATION,
                "status": MessageStatus.QUEUED,
                "idempotency_key": uuid.uuid4().hex,
                "attempts": 0,
            }
            for message_id, (invitation_id, channel) in zip(message_ids, pairs, strict=True)
        ],
    )
    moving = [a for a in apps if a.stage in (Stage.APPLIED, Stage.SCREENED)]
    if moving and actor.user_id is not None:
        db.execute(
            insert(StageChange),
            [
                {
                    "application_id": a.id,
                    "actor_id": actor.user_id,
                    "from_stage": a.stage,
                    "to_stage": Stage.INVITED,
                    "batch": batch,
                }
                for a in moving
            ],
        )
        for chunk in chunks([a.id for a in moving]):
            db.execute(
                update(Application)
                .where(Application.id.in_(chunk))
                .values(stage=Stage.INVITED, updated_at=utcnow()),
                execution_options={"synchronize_session": False},
            )
    return Created(invitation_ids, message_ids, [])


def create_invitations(
    store: Store,
    redis: Redis | None,
    actor: Actor,
    application_ids: Sequence[int],
    window: Slot,
    channels: Iterable[str],
    settings: Settings,
    purpose: str = PURPOSE,
) -> Created:
    """Invite the candidates of `application_ids` (see the module docstring); then enqueue
    their messages on the outbox queue unless `redis` is None (the caller sends them)."""
    now = utcnow()
    check_window(settings, window, now)
    chosen = check_channels(settings, channels)
    slot = timedelta(minutes=settings.invitations.slot_minutes)
    expires = window.end + timedelta(days=settings.invitations.link_grace_days)
    batch = uuid.uuid4().hex
    with store.session() as db:  # the scope check may log a refusal: not under the lock
        ids = scoped_application_ids(store, actor, db, application_ids, purpose)
    with store.write_transaction() as db:
        apps = _in_scope_again(store, actor, db, ids, purpose)
        plans = _first_plans(db, {a.job_id for a in apps})
        no_plan = sorted({a.job_id for a in apps if a.job_id not in plans})
        if no_plan:
            raise InvitationRefused(
                f"职位 {', '.join(map(str, no_plan))} 还没有面试方案，请先设置面试题目。",
                f"Job(s) {', '.join(map(str, no_plan))} have no interview plan yet.",
            )
        invited = _already_invited(db, [a.id for a in apps], now)
        if invited:
            listed = ", ".join(map(str, invited))
            raise InvitationRefused(
                f"申请 {listed} 已有未结束的邀请。", f"Application(s) {listed} are already invited."
            )
        subjects = {
            cid: subject
            for chunk in chunks(sorted({a.candidate_id for a in apps}))
            for cid, subject in db.execute(
                select(Candidate.id, Candidate.subject_id).where(Candidate.id.in_(chunk))
            )
        }
        created = _write_batch(db, actor, apps, plans, window, slot, chosen, expires, batch)
        created = Created(
            created.invitation_ids,
            created.message_ids,
            sorted({subjects[a.candidate_id] for a in apps}),
        )
    audit.record(
        store,
        actor,
        "invitation.create",
        f"invitations:{created.invitation_ids[0]}-{created.invitation_ids[-1]}",
        purpose,
        subject_ids=created.subject_ids,
    )
    if redis is not None:
        enqueue_messages(store, redis, created.message_ids, settings.invitations.batch_size)
    return created


def enqueue_messages(store: Store, redis: Redis, message_ids: Sequence[int], batch: int) -> int:
    """One outbox job per `batch` messages (one SMTP session each); returns the job count."""
    from workers.outbox import send_messages

    chunks = [message_ids[i : i + batch] for i in range(0, len(message_ids), batch)]
    for chunk in chunks:
        send_messages.enqueue(store, redis, *chunk)
    return len(chunks)


# --- the candidate moves their slot ------------------------------------------------------


def invitation_of_token(db: Session, token_id: str) -> Invitation | None:
    return db.scalars(select(Invitation).where(Invitation.token_id == token_id)).one_or_none()


def reschedule(
    store: Store,
    redis: Redis | None,
    actor: Actor,
    token_id: str,
    new_start: datetime,
    settings: Settings,
) -> int:
    """Move the candidate's slot to `new_start`, inside HR's window; tell them on every
    channel (updated ICS: same UID, SEQUENCE + 1). Returns the invitation id."""
    now = utcnow()
    if new_start.tzinfo is None:
        raise ValueError("new_start must be timezone-aware")
    slot = timedelta(minutes=settings.invitations.slot_minutes)
    with store.write_transaction() as db:
        invitation = invitation_of_token(db, token_id)
        if invitation is None or actor.candidate_id != invitation.application.candidate_id:
            raise NotInScope("this token has no invitation")
        if invitation.session.status is not SessionStatus.SCHEDULED:
            raise InvitationRefused(
                "面试已开始或已结束，不能再改期。",
                "The interview has started or ended: it can no longer be moved.",
            )
        if (
            new_start < max(invitation.window_start, now)
            or new_start + slot > invitation.window_end
        ):
            raise InvitationRefused(
                "所选时间不在可选时间段内，请在时间段内重新选择。",
                "The time you chose lies outside the window: choose a time within it.",
            )
        invitation.slot_start, invitation.slot_end = new_start, new_start + slot
        invitation.sequence += 1
        invitation.reminded_at = None
        messages = [
            OutboxMessage(
                invitation=invitation,
                channel=Channel(channel),
                kind=MessageKind.RESCHEDULED,
                idempotency_key=uuid.uuid4().hex,
            )
            for channel in invitation.channels
        ]
        db.add_all(messages)
        db.flush()
        invitation_id, message_ids = invitation.id, [m.id for m in messages]
        subject_id = invitation.application.candidate.subject_id
    audit.record(
        store,
        actor,
        "invitation.reschedule",
        f"invitations:{invitation_id}",
        TOKEN_PURPOSE,
        subject_ids=[subject_id],
    )
    if redis is not None:
        enqueue_messages(store, redis, message_ids, settings.invitations.batch_size)
    return invitation_id


# --- reminders --------------------------------------------------------------------------


def due_reminders(store: Store, settings: Settings, now: datetime | None = None) -> list[int]:
    """Write a reminder message per channel for every invitation whose slot starts within
    `reminder_hours` and has had none yet; returns the new message ids."""
    now = now or utcnow()
    ahead = now + timedelta(hours=settings.invitations.reminder_hours)
    live_token = select(CandidateToken.id).where(
        CandidateToken.revoked_at.is_(None), CandidateToken.expires_at > now
    )
    with store.write_transaction() as db:
        due = db.scalars(
            select(Invitation)
            .join(InterviewSession, InterviewSession.id == Invitation.session_id)
            .where(
                Invitation.reminded_at.is_(None),
                Invitation.slot_start > now,
                Invitation.slot_start <= ahead,
                Invitation.created_at < now - REMIND_NOT_BEFORE,
                InterviewSession.status == SessionStatus.SCHEDULED,
                Invitation.token_id.in_(live_token),
            )
        ).all()
        messages = []
        for invitation in due:
            invitation.reminded_at = now
            for channel in invitation.channels:
                message = OutboxMessage(
                    invitation=invitation,
                    channel=Channel(channel),
                    kind=MessageKind.REMINDER,
                    idempotency_key=uuid.uuid4().hex,
                )
                db.add(message)
                messages.append(message)
        db.flush()
        return [m.id for m in messages]


@job(queue="outbox", timeout=600, retries=2, backoff=(60, 300))
def send_reminders(ctx: JobContext) -> None:
    """Periodic (workers.jobs.PERIODIC_JOBS): reminders before each slot (issue 6, item 5)."""
    from appliance.queue import connect

    settings = invitation_settings(ctx.store)
    ids = due_reminders(ctx.store, settings)
    if ids:
        redis = connect(ctx.store.data_dir, ctx.store.keys)
        try:
            enqueue_messages(ctx.store, redis, ids, settings.invitations.batch_size)
        finally:
            redis.close()
    ctx.logger.info("reminders: %d message(s) queued", len(ids))


def pending_count(db: Session) -> int:
    """Messages not yet sent (for the portal's counter)."""
    return int(
        db.scalar(
            select(func.count(OutboxMessage.id)).where(OutboxMessage.status != MessageStatus.SENT)
        )
        or 0
    )
