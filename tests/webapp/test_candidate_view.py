"""One view per candidate (issue 6, item 4): resume fields, applications and rounds, AI
scores with evidence, panel scores and comments, referrer, consents and a timeline, all
through the gate, so that an interviewer sees less than HR, and one audit event per view."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.records import AuditEvent, Consent, ConsentPurpose, User
from appliance.store import Store
from compliance.actors import Actor, Grant
from compliance.decisions import move_stage
from compliance.gate import Gate
from tests.webapp.test_row_scope import CandidateFile, add_candidate_file
from webapp.api import fields_of

REASON = "病历书写规范，进入面试"


def decided_file(store: Store) -> CandidateFile:
    """A full candidate file in east cardiology, moved by hr.east with a reason, with a consent."""
    subject = add_candidate_file(store, "EAST-CARD", "View", ["interviewer"])
    with store.session() as db:
        user = db.scalars(select(User).where(User.username == "hr.east")).one()
        actor = Actor.staff(
            "hr.east", user.id, tuple(Grant(a.role, a.org_unit.path) for a in user.roles), mfa=True
        )
    move_stage(store, Gate(store), actor, [subject.application_id], "screened", REASON, "screening")
    with store.transaction() as db:
        db.add(
            Consent(
                subject_id=subject.subject_id,
                purpose=ConsentPurpose.RECORDING,
                granted=True,
                notice_version="2026-01",
                text_sha256="a" * 64,
            )
        )
    return subject


def test_hr_sees_the_whole_file_with_a_timeline(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    subject = decided_file(demo_store)
    values = subject.values
    page = (
        login_as("hr.east").get(f"/portal/candidates/{subject.candidate_id}").get_data(as_text=True)
    )
    for shown in (
        values["candidates.name"],
        values["candidates.phone"],
        values["comments.body"],
        values["referrals.note"],
        "report summary of View",
        "evidence of View",
        REASON,
        "东院区 人事专员",  # who decided
        "录制面试",  # the consent
        "第 1 轮",
        "面试官评分",
        "时间线",
        "阶段变更",
        "已申请 → 已筛选",
    ):
        assert shown in page, shown
    declared = fields_of("portal.candidate")
    assert ("evaluation notes View" in page) == ("evaluations.notes" in declared)
    assert ("resume skill View" in page) == ("resume_parses.parsed" in declared)


def test_an_interviewer_sees_less(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    subject = decided_file(demo_store)
    values = subject.values
    response = login_as("interviewer").get(f"/portal/candidates/{subject.candidate_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert values["candidates.name"] in page and "report summary of View" in page
    for withheld in (
        values["candidates.phone"],
        values["comments.body"],
        values["referrals.note"],
        REASON,
        "阶段变更",
        "同意记录",
    ):
        assert withheld not in page, withheld


def test_other_departments_hr_gets_404(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    subject = decided_file(demo_store)
    assert login_as("hr.west").get(f"/portal/candidates/{subject.candidate_id}").status_code == 404


def test_one_view_leaves_one_event_without_values(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    subject = decided_file(demo_store)
    with demo_store.session() as db:
        before = db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
    login_as("hr.east").get(f"/portal/candidates/{subject.candidate_id}")
    with demo_store.session() as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.seq > before)).all()
    about = [e for e in events if subject.subject_id in e.subject_ids]
    assert len(about) == 1 and about[0].action == "read" and about[0].result == "allowed"
    assert "comments.body" in about[0].fields
    for event in events:
        assert (
            REASON not in str(event.fields)
            and subject.values["candidates.name"] not in event.entity
        )


def test_the_view_speaks_english_on_request(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    subject = decided_file(demo_store)
    page = (
        login_as("hr.east")
        .get(f"/portal/candidates/{subject.candidate_id}?lang=en")
        .get_data(as_text=True)
    )
    for text in (
        "Timeline",
        "Stage changed",
        "Applied → Screened",
        "Decided by",
        "Consents",
        "Round 1",
    ):
        assert text in page, text
