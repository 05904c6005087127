"""Invitations end to end (issue 6, item 5, "Must show"): HR invites from the portal, a real
rq worker sends through a real SMTP relay and SMS gateway, the test parses each e-mail
and follows its link; altered and expired links get a clear page; scope is the gate's."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from icalendar import Calendar
from sqlalchemy import select

from appliance.datadir import init_data_dir
from appliance.queue import connect, redis_config, socket_path
from appliance.records import (
    Application,
    Candidate,
    Invitation,
    MessageKind,
    MessageStatus,
    OrgUnit,
    OutboxMessage,
    utcnow,
)
from appliance.settings import Settings, load_settings
from appliance.store import Store
from compliance import tokens
from compliance.actors import Actor
from compliance.signing import stop_agent
from tests.conftest import REDIS_SERVER, _wait_for_redis
from tests.workers.outbox_servers import (
    SmsGateway,
    SmtpSink,
    outbox_environ,
    parts,
    sms_gateway,
    smtp_relay,
)
from webapp import create_app
from workers import runtime

LINK = re.compile(r"https://hr\.hospital\.test(/c/[A-Za-z0-9_-]+)")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpSink, SmsGateway]]:
    with smtp_relay() as (sink, port), sms_gateway(["503", "drop"]) as (gateway, url):
        for name, value in outbox_environ(port, url).items():
            monkeypatch.setenv(name, value)
        yield sink, gateway


@pytest.fixture
def demo_app(short_tmp: Path, relay: tuple[SmtpSink, SmsGateway]) -> Iterator[Flask]:
    """The demo box with SMTP and SMS configured (ENCLAVE_*) and its own redis-server."""
    settings = load_settings(data_dir=short_tmp / "data")
    store = init_data_dir(settings, "TEST-PASS", demo=True).store
    conf = settings.data_dir / "redis" / "redis.conf"
    conf.write_text(redis_config(settings.data_dir, store.keys))
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    redis = connect(settings.data_dir, store.keys)
    store.close()
    try:
        _wait_for_redis(redis, proc, socket_path(settings.data_dir))
        app = create_app({"SETTINGS": settings, "TESTING": True})
        yield app
        app.extensions["enclave.store"].close()
    finally:
        redis.close()
        proc.terminate()
        proc.wait(timeout=10)
        runtime.close_store()
        stop_agent(settings.data_dir / "gnupg")


def _work(app: Flask) -> None:
    """A burst rq worker on the outbox queue, as production runs it."""
    settings: Settings = app.config["SETTINGS"]
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime.run_worker(settings, ("outbox",), burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _apps_of(store: Store, org_code: str) -> list[int]:
    with store.session() as db:
        return list(
            db.scalars(
                select(Application.id)
                .join(Candidate, Candidate.id == Application.candidate_id)
                .join(OrgUnit, OrgUnit.id == Candidate.org_unit_id)
                .where(OrgUnit.code == org_code)
                .order_by(Application.id)
            )
        )


def _local(settings: Settings, moment: datetime, fmt: str = "%Y-%m-%dT%H:%M") -> str:
    return moment.astimezone(settings.zone).strftime(fmt)


def _invite(client: FlaskClient, settings: Settings, apps: list[int]) -> tuple[datetime, Any]:
    start = (utcnow() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    answer = client.post(
        "/invitations",
        data={
            "application": [str(a) for a in apps],
            "window_start": _local(settings, start),
            "window_end": _local(settings, start + timedelta(hours=8)),
            "channel": ["email", "sms"],
        },
    )
    return start, answer


def test_hr_invites_and_the_candidate_follows_the_emailed_link(
    demo_app: Flask,
    demo_store: Store,
    login_as: Callable[[str], FlaskClient],
    relay: tuple[SmtpSink, SmsGateway],
) -> None:
    sink, gateway = relay
    settings: Settings = demo_app.config["SETTINGS"]
    east = _apps_of(demo_store, "EAST")
    hr = login_as("hr.east")

    form = hr.get("/invitations/new?" + "&".join(f"application={a}" for a in east))
    assert form.status_code == 200 and all(f'value="{a}"' in form.text for a in east)
    start, answer = _invite(hr, settings, east)
    assert answer.status_code == 303

    _work(demo_app)

    assert len(sink.messages) == len(east)
    assert set(gateway.deliveries().values()) == {1} and len(gateway.delivered) == len(east)
    outbox = hr.get("/invitations")
    assert outbox.status_code == 200
    assert outbox.text.count('data-status="sent"') == 2 * len(east)
    slot = _local(settings, start, "%Y-%m-%d %H:%M")
    for message in sink.parsed():
        found = parts(message)
        text, html = found["text/plain"].get_content(), found["text/html"].get_content()
        event = Calendar.from_ical(found["text/calendar"].get_payload(decode=True)).walk("VEVENT")[
            0
        ]
        path = LINK.search(text).group(1)
        assert path in html and str(event["url"]).endswith(path)
        assert event.decoded("dtstart") == start
        landing = demo_app.test_client().get(path)
        assert landing.status_code == 200
        assert slot in landing.text and "设备检测指南" in landing.text
        assert "csrf_token" in landing.text  # the reschedule form


def test_candidate_moves_the_slot_within_the_window_only(
    demo_app: Flask, demo_store: Store, login_as: Callable[[str], FlaskClient], relay
) -> None:
    sink, _gateway = relay
    settings: Settings = demo_app.config["SETTINGS"]
    east = _apps_of(demo_store, "EAST")[:1]
    start, _answer = _invite(login_as("hr.east"), settings, east)
    _work(demo_app)
    path = LINK.search(sink.parsed()[0].get_body(("plain",)).get_content()).group(1)
    candidate = demo_app.test_client()
    csrf = CSRF.search(candidate.get(path).text).group(1)

    outside = candidate.post(
        path + "/reschedule",
        data={"csrf_token": csrf, "slot_start": _local(settings, start + timedelta(days=3))},
    )
    assert outside.status_code == 400 and "不在可选时间段内" in outside.text
    csrf = CSRF.search(outside.text).group(1)
    later = start + timedelta(hours=3)
    moved = candidate.post(
        path + "/reschedule", data={"csrf_token": csrf, "slot_start": _local(settings, later)}
    )
    assert moved.status_code == 303
    assert _local(settings, later, "%Y-%m-%d %H:%M") in candidate.get(path).text
    with demo_store.session() as db:
        invitation = db.scalars(
            select(Invitation).where(Invitation.application_id == east[0])
        ).one()
        assert invitation.slot_start == later and invitation.sequence == 1
        kinds = db.scalars(
            select(OutboxMessage.kind).where(OutboxMessage.invitation_id == invitation.id)
        ).all()
    assert sorted(kinds).count(MessageKind.RESCHEDULED) == 2
    _work(demo_app)
    assert len(sink.messages) == 2
    changed = Calendar.from_ical(parts(sink.parsed()[1])["text/calendar"].get_payload(decode=True))
    event = changed.walk("VEVENT")[0]
    assert event.decoded("dtstart") == later and int(event["sequence"]) == 1


def test_altered_expired_and_revoked_links_get_a_clear_page(
    demo_app: Flask, demo_store: Store
) -> None:
    with demo_store.session() as db:
        candidate_id = db.scalars(select(Candidate.id).order_by(Candidate.id)).first()
    system = Actor(kind="system", name="test")
    expired = tokens.issue(
        demo_store,
        candidate_id,
        "interview",
        timedelta(minutes=5),
        system,
        now=utcnow() - timedelta(hours=1),
    )
    client = demo_app.test_client()
    page = client.get(f"/c/{expired}")
    assert page.status_code == 410 and "链接已过期" in page.text and "expired" in page.text
    altered = expired[:-2] + ("AA" if not expired.endswith("AA") else "BB")
    page = client.get(f"/c/{altered}")
    assert page.status_code == 400 and "链接无效" in page.text and "invalid" in page.text
    live = tokens.issue(demo_store, candidate_id, "interview", timedelta(days=1), system)
    tokens.revoke(demo_store, tokens.token_id(demo_store, live))
    page = client.get(f"/c/{live}")
    assert page.status_code == 410 and "撤销" in page.text
    assert client.post(f"/c/{altered}/reschedule", data={}).status_code in (400, 403)


def test_who_may_invite(
    demo_app: Flask, demo_store: Store, login_as: Callable[[str], FlaskClient]
) -> None:
    """Another branch's HR gets 404 for these applications; an interviewer may not invite."""
    settings: Settings = demo_app.config["SETTINGS"]
    east = _apps_of(demo_store, "EAST")
    west = login_as("hr.west")
    assert west.get(f"/invitations/new?application={east[0]}").status_code == 404
    _start, answer = _invite(west, settings, east)
    assert answer.status_code == 404
    assert login_as("interviewer").get("/invitations").status_code == 403
    with demo_store.session() as db:
        assert db.scalars(select(Invitation)).all() == []
    admin = login_as("hradmin")
    _start, answer = _invite(admin, settings, east)
    assert answer.status_code == 303
    bad = admin.post(
        "/invitations",
        data={"application": [str(east[0])], "window_start": "tomorrow", "channel": ["email"]},
    )
    assert bad.status_code == 400 and "有效的开始和结束时间" in bad.text
    with demo_store.session() as db:
        statuses = set(db.scalars(select(OutboxMessage.status)))
    assert statuses == {MessageStatus.QUEUED}
