"""The outbox (issue 6, item 5): invitations reach a real SMTP relay and a real SMS gateway,
through a real rq worker, each message exactly once, with no personal data in Redis."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import select

from appliance.records import (
    Application,
    Candidate,
    CandidateToken,
    InterviewPlan,
    InterviewQuestion,
    InterviewSession,
    Invitation,
    Job,
    JobRun,
    MessageKind,
    MessageStatus,
    OrgKind,
    OrgUnit,
    OutboxMessage,
    Role,
    RoleAssignment,
    RunStatus,
    Stage,
    SubjectKind,
    User,
    utcnow,
)
from appliance.settings import Settings, load_settings
from compliance import tokens
from compliance.actors import Actor, Grant
from compliance.gate import NotInScope
from tests.conftest import Box
from tests.workers.outbox_servers import outbox_environ, parts, sms_gateway, smtp_relay
from workers import invitations
from workers.invitations import InvitationRefused, Slot, create_invitations, due_reminders
from workers.outbox import retry_failed, send_messages

LINK = re.compile(r"https://hr\.hospital\.test/c/([A-Za-z0-9_-]+)")
PEOPLE = (
    ("吴子涵", "13800006583", "wuzihan@example.com"),
    ("林思远", "13800001234", "linsiyuan@example.cn"),
    ("Emily Carter", "13800004321", "emily.carter@example.com"),
)


def _unit(db, name: str, parent: OrgUnit | None) -> OrgUnit:
    unit = OrgUnit(kind=OrgKind.BRANCH, name=name, code=f"{name}-{uuid.uuid4().hex[:6]}")
    db.add(unit)
    db.flush()
    unit.place_under(parent)
    return unit


def _hr(db, unit: OrgUnit) -> Actor:
    user = User(username=f"hr-{uuid.uuid4().hex[:6]}", display_name="HR", password_hash="x")
    db.add(user)
    db.flush()
    db.add(RoleAssignment(user_id=user.id, role=Role.HR, org_unit_id=unit.id))
    return Actor.staff(user.username, user.id, (Grant(Role.HR, unit.path),), mfa=True)


@pytest.fixture
def hospital(box: Box) -> dict:
    """Two branches; a job in the east with a plan; three east candidates, one west."""
    with box.store.transaction() as db:
        hq = _unit(db, "总院", None)
        east, west = _unit(db, "东院", hq), _unit(db, "西院", hq)
        job = Job(
            org_unit_id=east.id,
            title="注册护士",
            requirements={"education": "大专", "licences": ["护士执业证书"], "years": 1},
        )
        plan = InterviewPlan(name="AI 视频面试", mode="async", round_no=1)
        plan.questions = [InterviewQuestion(position=0, text="为什么选择护理？")]
        job.plans.append(plan)
        db.add(job)
        apps = []
        for i, (name, phone, mail) in enumerate((*PEOPLE, ("王五", "13900000000", "w@x.cn"))):
            subject = box.store.new_subject(db, SubjectKind.CANDIDATE)
            unit = west if i == 3 else east
            candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="test")
            db.add(candidate)
            candidate.name, candidate.phone, candidate.email = name, phone, mail
            app = Application(candidate=candidate, job=job, stage=Stage.SCREENED)
            db.add(app)
            apps.append(app)
        hr = _hr(db, east)
        db.flush()
        return {"hr": hr, "apps": [a.id for a in apps], "job": job.id, "plan": plan.id}


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple]]:
    """Start the relay and the gateway; the worker reads their addresses from ENCLAVE_*."""
    stack: list = []

    def start(script: list[str] | None = None, tempfail: int = 0, **extra: str) -> tuple:
        relay = smtp_relay(tempfail)
        gateway = sms_gateway(script)
        (sink, port), (gw, url) = relay.__enter__(), gateway.__enter__()
        stack.extend([relay, gateway])
        for name, value in {**outbox_environ(port, url), **extra}.items():
            monkeypatch.setenv(name, value)
        return sink, gw

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def _settings(box: Box) -> Settings:
    return load_settings(data_dir=box.settings.data_dir)


def _window() -> Slot:
    start = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    return Slot(start, start + timedelta(hours=6))


def _messages(box: Box, ids: list[int]) -> list[OutboxMessage]:
    with box.store.session() as db:
        return list(db.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids))))


def test_invitations_are_delivered_once_each_despite_a_failing_gateway(
    box: Box, hospital: dict, servers, burst_worker
) -> None:
    """503, 503 and a dropped answer (after delivery) from the gateway: every e-mail and
    SMS still arrives exactly once; each e-mail parses into text, HTML and an ICS whose
    link is a valid token for that candidate; Redis never holds personal data."""
    sink, gateway = servers(script=["503", "503", "drop"])
    settings = _settings(box)
    created = create_invitations(
        box.store,
        box.redis,
        hospital["hr"],
        hospital["apps"][:3],
        _window(),
        ["email", "sms"],
        settings,
    )
    assert len(created.message_ids) == 6
    personal = [v.encode() for p in PEOPLE for v in p]
    for key in box.redis.scan_iter("*"):
        if box.redis.type(key) == b"hash":
            blob = b"".join(box.redis.hgetall(key).values())
            assert not any(p in blob for p in personal)

    burst_worker(("outbox",))

    rows = _messages(box, created.message_ids)
    assert {r.status for r in rows} == {MessageStatus.SENT}
    assert [r.attempts for r in rows if r.channel == "sms"] == [2, 2, 2]  # each failed once
    assert [r.attempts for r in rows if r.channel == "email"] == [1, 1, 1]
    # exactly once: three SMS keys, each delivered once, though one was tried after delivery
    sms_keys = {r.idempotency_key for r in rows if r.channel == "sms"}
    assert set(gateway.deliveries()) == sms_keys
    assert set(gateway.deliveries().values()) == {1}
    assert len(gateway.requests) == 6  # 3 first tries (2 x 503, 1 drop) + 3 retries
    assert set(gateway.auth) == {"Bearer gateway-secret"}
    texts = sorted(d[0]["to"] for d in gateway.delivered.values())
    assert texts == sorted(p[1] for p in PEOPLE)
    assert len(sink.messages) == 3
    assert sorted(r[0] for r in sink.recipients) == sorted(p[2] for p in PEOPLE)

    with box.store.session() as db:
        slots = {
            i.application.candidate_id: i
            for i in db.scalars(select(Invitation).where(Invitation.id.in_(created.invitation_ids)))
        }
    for message in sink.parsed():
        found = parts(message)
        text = found["text/plain"].get_content()
        html = found["text/html"].get_content()
        cal = Calendar.from_ical(found["text/calendar"].get_payload(decode=True))
        assert cal["method"] == "REQUEST"
        event = cal.walk("VEVENT")[0]
        token = LINK.search(text).group(1)
        assert f"/c/{token}" in html and str(event["url"]).endswith(token)
        actor = tokens.resolve(box.store, token, "interview")
        invitation = slots[actor.candidate_id]
        assert event.decoded("dtstart") == invitation.slot_start
        assert event.decoded("dtend") == invitation.slot_end
        assert str(event["uid"]).startswith(f"invitation-{invitation.id}@")
        assert "护士执业证书" in text and "设备检测" in text and "Device check" in html
        assert invitation.slot_start.astimezone(settings.zone).strftime("%H:%M") in text

    # Run the same batch again (a duplicated job, a retry): nothing is sent twice.
    send_messages.enqueue(box.store, box.redis, *created.message_ids)
    burst_worker(("outbox",))
    assert len(sink.messages) == 3 and set(gateway.deliveries().values()) == {1}
    assert len(gateway.requests) == 6


def test_messages_that_keep_failing_are_recorded_then_retried_by_a_person(
    box: Box, hospital: dict, servers, burst_worker
) -> None:
    """A gateway down for every try: the SMS is `failed` with the HTTP status (never the
    number), the job awaits rq's retry; the retry button's path then delivers it once."""
    sink, gateway = servers(script=["503"] * 4, tempfail=1, ENCLAVE_INVITATIONS__SEND_ATTEMPTS="2")
    settings = _settings(box)
    created = create_invitations(
        box.store,
        box.redis,
        hospital["hr"],
        hospital["apps"][:1],
        _window(),
        ["email", "sms"],
        settings,
    )
    burst_worker(("outbox",))

    email_row, sms_row = sorted(_messages(box, created.message_ids), key=lambda r: r.channel)
    assert email_row.status is MessageStatus.SENT and email_row.attempts == 2  # 451 first
    assert sms_row.status is MessageStatus.FAILED and sms_row.attempts == 2
    assert sms_row.last_error == "SMS gateway HTTP 503"
    with box.store.session() as db:
        run = db.scalars(select(JobRun).order_by(JobRun.id.desc())).first()
    assert run.status is RunStatus.RETRYING and "1 of 2 messages" in run.error
    assert PEOPLE[0][1] not in run.error

    assert retry_failed(box.store, [sms_row.id, email_row.id]) == [sms_row.id]
    gateway.script.clear()
    send_messages.enqueue(box.store, box.redis, sms_row.id)
    burst_worker(("outbox",))
    assert _messages(box, [sms_row.id])[0].status is MessageStatus.SENT
    assert set(gateway.deliveries().values()) == {1} and len(sink.messages) == 1


def test_out_of_scope_or_bad_requests_write_nothing(
    box: Box, hospital: dict, servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A west application among east ones is refused as not found; a bad window or no
    channel refuses the batch; nothing is written in either case."""
    servers()
    settings = _settings(box)
    east, west = hospital["apps"][:1], hospital["apps"][3:]
    with pytest.raises(NotInScope):
        create_invitations(
            box.store, None, hospital["hr"], east + west, _window(), ["email"], settings
        )
    monkeypatch.setattr(invitations, "SMALL_BATCH", 0)  # the path large batches take
    with pytest.raises(NotInScope):
        create_invitations(
            box.store, None, hospital["hr"], east + west, _window(), ["email"], settings
        )
    window = _window()
    with pytest.raises(InvitationRefused, match="end after"):
        create_invitations(
            box.store,
            None,
            hospital["hr"],
            east,
            Slot(window.end, window.start),
            ["email"],
            settings,
        )
    with pytest.raises(InvitationRefused, match="channel"):
        create_invitations(box.store, None, hospital["hr"], east, window, [], settings)
    with box.store.session() as db:
        mine = hospital["apps"]
        assert db.scalars(select(Invitation).where(Invitation.application_id.in_(mine))).all() == []
        sessions = select(InterviewSession).where(InterviewSession.application_id.in_(mine))
        assert db.scalars(sessions).all() == []
        assert db.get(Application, east[0]).stage is Stage.SCREENED


def test_reminders_are_written_once_before_the_slot(box: Box, hospital: dict, servers) -> None:
    servers()
    settings = _settings(box)
    created = create_invitations(
        box.store, None, hospital["hr"], hospital["apps"][:2], _window(), ["sms"], settings
    )
    with box.store.session() as db:
        first = db.get(Invitation, created.invitation_ids[0])
        slot = first.slot_start
    too_early = slot - timedelta(hours=settings.invitations.reminder_hours + 1)
    assert due_reminders(box.store, settings, now=too_early) == []
    in_time = slot - timedelta(hours=2)
    # (the shared box may hold other tests' invitations: look at this test's only)
    ours = [
        m
        for m in _messages(box, due_reminders(box.store, settings, now=in_time))
        if m.invitation_id in created.invitation_ids
    ]
    assert len(ours) == 2
    assert {m.kind for m in ours} == {MessageKind.REMINDER}
    again = _messages(box, due_reminders(box.store, settings, now=in_time))
    assert [m for m in again if m.invitation_id in created.invitation_ids] == []


def test_link_token_is_the_format_compliance_tokens_resolves(box: Box, hospital: dict) -> None:
    """The link is rebuilt from the token row at send time; the gate's resolver accepts it,
    a changed character is refused as altered, and after expiry it is refused as expired."""
    settings = _settings(box)
    created = create_invitations(
        box.store,
        None,
        hospital["hr"],
        hospital["apps"][:1],
        _window(),
        ["email"],
        settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"host": "x"})}),
    )
    with box.store.session() as db:
        invitation = db.get(Invitation, created.invitation_ids[0])
        row = db.get(CandidateToken, invitation.token_id)
        token = invitations.link_token(box.store, row)
        expires = row.expires_at
    assert tokens.resolve(box.store, token, "interview").candidate_id is not None
    altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(tokens.BadTokenSignature):
        tokens.resolve(box.store, altered, "interview")
    with pytest.raises(tokens.TokenExpired):
        tokens.resolve(box.store, token, "interview", now=expires + timedelta(seconds=1))


def test_sms_settings_are_checked_and_the_gateway_host_is_allowed_out() -> None:
    """A template naming an unknown field, or a username without its password (which belongs
    in the secrets file), fails at start; the gateway's host joins the egress allow-list."""
    from pathlib import Path

    from appliance.egress import configured_hosts
    from appliance.errors import SettingsError

    base = {"ENCLAVE_CONFIG": "", "ENCLAVE_SECRETS": "/nonexistent/secrets.toml"}
    with pytest.raises(SettingsError, match="unknown field"):
        load_settings(environ={**base, "ENCLAVE_SMS__TEMPLATE": "{name} {id_number}"})
    with pytest.raises(SettingsError, match="sms.password is required"):
        load_settings(
            environ={
                **base,
                "ENCLAVE_SMS__URL": "https://sms.h.local/send",
                "ENCLAVE_SMS__USERNAME": "hr",
            }
        )
    settings = load_settings(
        environ={**base, "ENCLAVE_SMS__URL": "https://sms.hospital.local:8443/api/send"},
        data_dir=Path("/tmp/unused"),
    )
    assert "sms.hospital.local" in configured_hosts(settings)
