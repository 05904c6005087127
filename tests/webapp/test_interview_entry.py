"""The candidate's way into the interview (issue #7, items 1-3): the invitation link and the
kiosk code, one browser per token, the device check's advice, and consent before capture
with face analysis as its own step. Real SQLCipher store, real redis-server."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from appliance.datadir import init_data_dir
from appliance.queue import connect, redis_config, socket_path
from appliance.records import (
    Application,
    AuditEvent,
    Candidate,
    Consent,
    ConsentPurpose,
    InterviewPlan,
    InterviewSession,
    Invitation,
    NoticeText,
    SessionStatus,
    utcnow,
)
from appliance.store import Store
from compliance import tokens
from compliance.signing import stop_agent
from tests.conftest import REDIS_SERVER, _wait_for_redis, settings_for
from webapp import create_app

BASE = "https://hr.hospital.test"


@pytest.fixture
def interview_app(short_tmp: Path) -> Iterator[Flask]:
    """The demo box with its own redis-server (analysis jobs are really enqueued)."""
    settings = settings_for(short_tmp / "data")
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
        stop_agent(settings.data_dir / "gnupg")


@dataclass
class Invited:
    token: str
    session_id: int
    subject_id: str
    token_id: str


def invite(store: Store, expires_in: timedelta = timedelta(days=3)) -> Invited:
    """An invitation for the demo's first application, as HR's invitation batch writes it."""
    now = utcnow()
    with store.transaction() as db:
        app = db.scalars(select(Application).order_by(Application.id)).first()
        assert app is not None
        plan_id = db.scalar(select(InterviewPlan.id).where(InterviewPlan.job_id == app.job_id))
        row = InterviewSession(
            application_id=app.id,
            plan_id=plan_id,
            status=SessionStatus.SCHEDULED,
            window_start=now,
            window_end=now + timedelta(days=2),
            interviewer_ids=[],
        )
        db.add(row)
        token_row = tokens.new_token_row(app.candidate_id, "interview", now + expires_in, None)
        db.add(token_row)
        db.flush()
        db.add(
            Invitation(
                application_id=app.id,
                session_id=row.id,
                token_id=token_row.id,
                window_start=now,
                window_end=now + timedelta(days=2),
                slot_start=now,
                slot_end=now + timedelta(minutes=30),
                channels=["email"],
            )
        )
        subject_id = db.scalar(select(Candidate.subject_id).where(Candidate.id == app.candidate_id))
        assert subject_id is not None
        session_id, token_id = row.id, token_row.id
    return Invited(tokens.token_of(store, token_row), session_id, subject_id, token_id)


def body(response: TestResponse) -> Any:
    """A JSON answer's body (typed for the assertions that index it)."""
    return response.get_json()


def candidate_client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_of(client: FlaskClient) -> str:
    with client.session_transaction(base_url=BASE) as sess:
        return str(sess["csrf"])


def enter(client: FlaskClient, invited: Invited) -> None:
    """Through the link into the interview; the client then sends its CSRF header."""
    response = client.get(f"/c/{invited.token}/start", base_url=BASE)
    assert response.status_code == 303, response.data[:400]
    assert response.headers["Location"].endswith("/interview")
    client.environ_base["HTTP_X_CSRF_TOKEN"] = csrf_of(client)


def pass_device_check(client: FlaskClient) -> None:
    ok = {
        "browser": True,
        "camera": True,
        "microphone": True,
        "speaker": True,
        "rtt_ms": 12,
        "upload_kbps": 50000,
    }
    response = client.post("/interview/device-check", json=ok, base_url=BASE)
    assert response.status_code == 200 and body(response)["ok"] is True


def give_consents(client: FlaskClient, face: bool = True, ai: bool = True) -> None:
    for purpose, yes in (("recording", True), ("face_analysis", face), ("ai_scoring", ai)):
        page = client.get("/interview", base_url=BASE)
        assert page.status_code == 303
        assert page.headers["Location"].endswith(f"/interview/consent/{purpose}")
        form = client.get(f"/interview/consent/{purpose}", base_url=BASE)
        assert form.status_code == 200
        notice_id = form.data.decode().split('name="notice_id" value="')[1].split('"')[0]
        answer = client.post(
            f"/interview/consent/{purpose}",
            data={"answer": "yes" if yes else "no", "notice_id": notice_id},
            base_url=BASE,
        )
        assert answer.status_code == 303, answer.data[:300]


def denied_events(store: Store, action: str) -> list[AuditEvent]:
    with store.session() as db:
        return list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.action == action, AuditEvent.result == "denied")
            )
        )


def test_landing_page_links_to_the_interview_and_the_url_is_left_behind(
    interview_app: Flask,
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    invited = invite(store)
    client = candidate_client(interview_app)
    landing = client.get(f"/c/{invited.token}", base_url=BASE)
    assert f"/c/{invited.token}/start".encode() in landing.data
    enter(client, invited)
    page = client.get("/interview", base_url=BASE)
    assert page.status_code == 200
    assert invited.token.encode() not in page.data
    assert b'data-step="device"' in page.data
    assert b"interview.js" in page.data and b"<script>" not in page.data


def test_device_check_gives_plain_advice_per_failure_and_blocks_without_a_camera(
    interview_app: Flask,
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    client = candidate_client(interview_app)
    enter(client, invite(store))
    slow = {"browser": True, "camera": True, "microphone": True, "rtt_ms": 800, "upload_kbps": 300}
    result = body(client.post("/interview/device-check", json=slow, base_url=BASE))
    assert result["ok"] is True  # a slow network gets advice, not a refusal
    texts = [a["text"] for a in result["advice"]]
    assert "网络延迟较高，建议使用有线网络，或靠近无线路由器。" in texts
    assert {a["check"] for a in result["advice"]} == {"rtt", "bandwidth", "speaker"}
    english = body(
        client.post(
            "/interview/device-check?lang=en", json={**slow, "camera": False}, base_url=BASE
        )
    )
    assert english["ok"] is False
    assert any(a["text"].startswith("The camera cannot be used") for a in english["advice"])
    # No camera: the consent pages (and so capture) stay closed.
    assert client.get("/interview/consent/recording", base_url=BASE).status_code == 303
    assert client.post("/interview/answers", json={}, base_url=BASE).status_code == 403


def test_consents_are_separate_versioned_records_with_the_hash_of_the_text_shown(
    interview_app: Flask,
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    invited = invite(store)
    client = candidate_client(interview_app)
    enter(client, invited)
    pass_device_check(client)
    # Capture is refused before any consent.
    assert client.post("/interview/answers", json={}, base_url=BASE).status_code == 403
    assert denied_events(store, "interview.capture_without_consent")
    give_consents(client, face=False, ai=False)
    with store.session() as db:
        rows = list(
            db.scalars(
                select(Consent).where(Consent.subject_id == invited.subject_id).order_by(Consent.id)
            )
        )
        notices = {n.sha256: n for n in db.scalars(select(NoticeText))}
    assert [(r.purpose, r.granted) for r in rows] == [
        (ConsentPurpose.RECORDING, True),
        (ConsentPurpose.FACE_ANALYSIS, False),
        (ConsentPurpose.AI_SCORING, False),
    ]
    for row in rows:
        notice = notices[row.text_sha256]
        assert hashlib.sha256(notice.body.encode()).hexdigest() == row.text_sha256
        assert notice.purpose == row.purpose.value and row.notice_version == notice.version
        assert row.channel == "link" and row.given_at is not None
    face_notice = notices[rows[1].text_sha256].body
    assert "敏感个人信息" in face_notice and "单独" in face_notice
    state = body(client.get("/interview/state", base_url=BASE))
    assert state["step"] == "question" and state["face"] is False and state["human_only"] is True


def test_a_replayed_or_expired_token_is_refused_with_an_audit_event(interview_app: Flask) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    invited = invite(store)
    with store.transaction() as db:
        row = db.get(InterviewSession, invited.session_id)
        assert row is not None
        row.status = SessionStatus.COMPLETED
    replay = candidate_client(interview_app).get(f"/c/{invited.token}/start", base_url=BASE)
    assert replay.status_code == 410
    assert "此面试已结束" in replay.data.decode() and b"cannot be used again" in replay.data
    assert denied_events(store, "interview.replay_refused")

    expired = invite(store, expires_in=timedelta(seconds=-5))
    response = candidate_client(interview_app).get(f"/c/{expired.token}/start", base_url=BASE)
    assert response.status_code == 410 and b"expired" in response.data
    assert denied_events(store, "token.rejected")
    altered = expired.token[:-2] + ("AA" if not expired.token.endswith("AA") else "BB")
    bad = candidate_client(interview_app).get(f"/c/{altered}/start", base_url=BASE)
    assert bad.status_code == 400


def test_a_second_browser_on_the_same_token_is_refused_while_the_first_is_live(
    interview_app: Flask,
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    invited = invite(store)
    first, second = candidate_client(interview_app), candidate_client(interview_app)
    enter(first, invited)
    assert first.get("/interview", base_url=BASE).status_code == 200
    enter(second, invited)
    refused = second.get("/interview", base_url=BASE)
    assert refused.status_code == 409
    assert "另一个浏览器" in refused.data.decode() and b"another browser" in refused.data
    assert second.get("/interview/state", base_url=BASE).status_code == 409
    assert len(denied_events(store, "interview.second_browser_refused")) == 2
    # The first browser goes on; once it leaves, the second may take over.
    assert first.get("/interview/state", base_url=BASE).status_code == 200
    assert first.post("/interview/leave", base_url=BASE).status_code == 303
    assert second.get("/interview", base_url=BASE).status_code == 200


def test_kiosk_code_is_single_use_and_leaving_cleans_the_browser(
    interview_app: Flask, login_as_hr: FlaskClient
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    invited = invite(store)
    # Reception finds the button on the interview's page in the portal.
    portal = login_as_hr.get(f"/portal/interviews/{invited.session_id}", base_url=BASE)
    assert portal.status_code == 200
    assert f'action="/interview/sessions/{invited.session_id}/kiosk-code"' in portal.data.decode()
    made = login_as_hr.post(f"/interview/sessions/{invited.session_id}/kiosk-code", base_url=BASE)
    assert made.status_code == 200
    code = made.data.decode().split('class="iv-code" aria-live="polite">')[1].split("<")[0]
    assert len(code) == 9 and code[4] == "-"

    kiosk = candidate_client(interview_app)
    start = kiosk.get("/kiosk", base_url=BASE)
    assert b'name="code"' in start.data
    wrong = kiosk.post(
        "/kiosk", data={"code": "ZZZZ-ZZZZ", "csrf_token": csrf_of(kiosk)}, base_url=BASE
    )
    assert wrong.status_code == 400 and "接待码无效" in wrong.data.decode()
    assert denied_events(store, "kiosk.code_refused")
    entered = kiosk.post(
        "/kiosk", data={"code": code.lower(), "csrf_token": csrf_of(kiosk)}, base_url=BASE
    )
    assert entered.status_code == 303 and entered.headers["Location"].endswith("/interview")
    assert kiosk.get("/interview", base_url=BASE).status_code == 200
    left = kiosk.post("/interview/leave", data={"csrf_token": csrf_of(kiosk)}, base_url=BASE)
    assert left.status_code == 303 and left.headers["Location"].endswith("/kiosk")
    assert left.headers["Clear-Site-Data"] == '"cache", "cookies", "storage"'
    with kiosk.session_transaction(base_url=BASE) as sess:
        assert "ctoken" not in sess and "kiosk" not in sess
    assert kiosk.get("/interview/state", base_url=BASE).status_code == 401

    again = candidate_client(interview_app)
    again.get("/kiosk", base_url=BASE)
    replay = again.post("/kiosk", data={"code": code, "csrf_token": csrf_of(again)}, base_url=BASE)
    assert replay.status_code == 410 and "已使用过" in replay.data.decode()
    assert denied_events(store, "kiosk.replay_refused")

    other_hr = login_as_west(interview_app)
    scoped = other_hr.post(f"/interview/sessions/{invited.session_id}/kiosk-code", base_url=BASE)
    assert scoped.status_code == 404  # another branch's session: not theirs to open


def _staff(app: Flask, username: str) -> FlaskClient:
    import secrets
    import time

    from appliance.records import User

    client = app.test_client()
    store: Store = app.extensions["enclave.store"]
    with store.session() as db:
        uid = db.scalars(select(User.id).where(User.username == username)).one()
    csrf, now = secrets.token_urlsafe(16), time.time()
    with client.session_transaction(base_url=BASE) as sess:
        sess.update({"uid": uid, "mfa": True, "seen": now, "start": now, "csrf": csrf})
    client.environ_base["HTTP_X_CSRF_TOKEN"] = csrf
    return client


def login_as_west(app: Flask) -> FlaskClient:
    return _staff(app, "hr.west")


@pytest.fixture
def login_as_hr(interview_app: Flask) -> FlaskClient:
    return _staff(interview_app, "hr.east")
