"""Data-subject requests (issue #8): deadlines in the hospital's working days, reminders,
no refusal without a written reason, identity first, and what completing each kind does."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from appliance.records import (
    AuditEvent,
    Candidate,
    DataRequest,
    Evaluation,
    RequestKind,
    RequestStatus,
    User,
)
from appliance.settings import PrivacySettings, Settings
from appliance.store import Store
from compliance import register, requests, tokens
from compliance.actors import Actor
from compliance.deletion import ReasonRequired
from compliance.workdays import WorkingCalendar
from tests.privacy.privacy_helpers import add_person
from workers.jobs import JobContext, get_job_logger
from workers.privacy import remind_request_deadlines

DPO = Actor(kind="system", name="cli:dpo")
# China's National Day week 2026 as a hospital would enter it: 1-7 October off, with
# Sunday 27 September and Saturday 10 October worked in exchange (调休).
HOLIDAYS = PrivacySettings(
    holidays=tuple(date(2026, 10, d) for d in range(1, 8)),
    make_up_workdays=(date(2026, 9, 27), date(2026, 10, 10)),
)
MONDAY_28_SEPT = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def with_holidays(settings: Settings) -> Settings:
    return settings.model_copy(update={"privacy": HOLIDAYS})


def test_the_default_deadline_is_15_working_days_in_the_hospital_calendar(
    demo: Store, settings: Settings
) -> None:
    person = add_person(demo, "Due")
    request = requests.receive(
        demo,
        with_holidays(settings),
        DPO,
        person.subject_id,
        RequestKind.ACCESS,
        "kiosk",
        received_at=MONDAY_28_SEPT,
    )
    # 29, 30 Sept; 8, 9, 10 (make-up Saturday), 12-16, 19-23 October: the 15th is Friday 23.
    local = request.due_at.astimezone(settings.zone)
    assert (local.date(), local.hour, local.minute) == (date(2026, 10, 23), 23, 59)
    assert request.deadline_rule.startswith("15 working days")
    # Without the holiday calendar the same request would be due on Monday 19 October.
    plain = requests.deadline(settings, "pipl", RequestKind.ACCESS, MONDAY_28_SEPT)[0]
    assert plain.astimezone(settings.zone).date() == date(2026, 10, 19)
    calendar = WorkingCalendar.of(with_holidays(settings))
    assert calendar.is_working_day(date(2026, 9, 27)) and not calendar.is_working_day(
        date(2026, 10, 5)
    )


def test_deadlines_raise_reminders_once_a_day_and_when_overdue(
    demo: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    person = add_person(demo, "Remind")
    hospital = with_holidays(settings)
    due_soon = requests.receive(
        demo, hospital, DPO, person.subject_id, "access", "hr", received_at=MONDAY_28_SEPT
    )
    later = requests.receive(
        demo,
        hospital,
        DPO,
        person.subject_id,
        "explain",
        "hr",
        received_at=MONDAY_28_SEPT + timedelta(days=14),
    )
    closed = requests.receive(
        demo, hospital, DPO, person.subject_id, "access", "hr", received_at=MONDAY_28_SEPT
    )
    requests.verify_identity(demo, DPO, closed.id, "id_document")
    requests.refuse(
        demo, DPO, closed.id, "manifestly unfounded: a repeat of request 1 (PIPL Art. 50)"
    )

    early = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)  # Monday 12 Oct: 9 working days left
    assert requests.due_reminders(demo, hospital, now=early) == []
    near = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)  # Tuesday 20 Oct: 3 working days left
    reminders = requests.due_reminders(demo, hospital, now=near)
    assert [(r.request_id, r.working_days_left, r.overdue) for r in reminders] == [
        (due_soon.id, 3, False)
    ]
    assert requests.due_reminders(demo, hospital, now=near + timedelta(hours=3)) == []
    overdue = datetime(2026, 10, 26, 2, 0, tzinfo=UTC)  # Monday after the Friday deadline
    reminders = requests.due_reminders(demo, hospital, now=overdue)
    assert [r.request_id for r in reminders if r.overdue] == [due_soon.id]
    assert later.id not in [r.request_id for r in reminders if r.overdue]
    with demo.session() as db:
        row = db.get(DataRequest, due_soon.id)
        assert row is not None and row.reminders == 2
        actions = db.scalars(
            select(AuditEvent.action).where(AuditEvent.entity == f"data_requests:{due_soon.id}")
        ).all()
    assert "dsr.reminder" in actions and "dsr.overdue" in actions

    # The maintenance job raises them too, logging ids only.
    ctx = JobContext(store=demo, run_id=0, rq_job_id="r1", logger=get_job_logger("t", "r1"))
    with caplog.at_level(logging.INFO):
        remind_request_deadlines(ctx)  # today: every open request is long overdue
    assert f"data request {later.id}" in caplog.text and "OVERDUE" in caplog.text
    assert person.values["candidates.name"] not in caplog.text


def test_a_refusal_without_a_written_reason_is_rejected(demo: Store, settings: Settings) -> None:
    person = add_person(demo, "Refuse")
    request = requests.receive(demo, settings, DPO, person.subject_id, "delete", "hr")
    for reason in (None, "", "   ", "no."):
        with pytest.raises(ReasonRequired):
            requests.refuse(demo, DPO, request.id, reason)
    with demo.session() as db:
        still = db.get(DataRequest, request.id)
        assert still is not None and still.status is RequestStatus.RECEIVED
        assert still.refusal_reason is None
    ground = "records must be kept until the labour dispute ends (PIPL Art. 47(1), Art. 13(3))"
    requests.refuse(demo, DPO, request.id, ground)
    with demo.session() as db:
        refused = db.get(DataRequest, request.id)
        assert refused is not None and refused.status is RequestStatus.REFUSED
        assert refused.refusal_reason == ground
    with pytest.raises(requests.RequestError):  # closed: nothing more happens to it
        requests.verify_identity(demo, DPO, request.id, "id_document")
    assert demo.keyring.exists(person.subject_id)


def test_nothing_is_done_before_the_identity_is_checked(demo: Store, settings: Settings) -> None:
    person = add_person(demo, "Who")
    request = requests.receive(demo, settings, DPO, person.subject_id, "delete", "kiosk")
    with pytest.raises(requests.RequestError, match="identity"):
        requests.complete_delete(demo, DPO, request.id)
    with pytest.raises(requests.RequestError):
        requests.verify_identity(demo, DPO, request.id, "looked trustworthy")
    assert demo.keyring.exists(person.subject_id)


def test_an_access_request_gives_a_copy_in_open_formats(demo: Store, settings: Settings) -> None:
    person = add_person(demo, "Copy")
    notice = register.publish_notice(demo, DPO, "face_analysis", "v1", "人脸分析告知全文")
    register.record_consent(demo, DPO, person.subject_id, "face_analysis", True, notice.id)
    request = requests.receive(demo, settings, DPO, person.subject_id, "access", "link")
    requests.verify_identity(demo, DPO, request.id, "link_token")
    copy = requests.complete_access(demo, DPO, request.id)

    # The zip is sealed under the person's key; they fetch it with their own link.
    assert copy.token is not None
    assert tokens.resolve(demo, copy.token, "data_request").candidate_id == person.candidate_id
    archive = zipfile.ZipFile(io.BytesIO(demo.blobs.read_bytes(copy.blob_id)))
    names = set(archive.namelist())
    assert {
        "manifest.json",
        "records/candidates.json",
        "records/answers.json",
        "records/consents.json",
        "ai/score_reports.json",
        "ai/face_signals.json",
        "ai/how_scoring_works.json",
    } <= names
    candidate = json.loads(archive.read("records/candidates.json"))[0]
    assert candidate["name"] == person.values["candidates.name"]
    assert candidate["phone"] == person.values["candidates.phone"]  # their own, in full
    answers = json.loads(archive.read("records/answers.json"))
    assert answers[0]["transcript"] == person.values["answers.transcript"]
    consents = json.loads(archive.read("records/consents.json"))
    assert consents[0]["notice_text"] == "人脸分析告知全文"
    report = json.loads(archive.read("ai/score_reports.json"))[0]["report"]
    assert report["summary"] == json.loads(person.values["score_reports.report"])["summary"]
    resume = next(n for n in names if n.startswith("documents/resume-"))
    assert person.values["candidates.name"] in archive.read(resume).decode()
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["request_id"] == request.id
    # What the policy keeps from the person is named, not silently left out.
    comments = json.loads(archive.read("records/comments.json"))[0]
    assert "body" not in comments and "body" in comments["withheld"]
    if not any(n.startswith("recordings/") for n in names):
        assert manifest["withheld"] and "recordings" in manifest["withheld"][0]
    with demo.session() as db:
        done = db.get(DataRequest, request.id)
        assert done is not None and done.status is RequestStatus.COMPLETED
        assert done.bundle_blob_id == copy.blob_id
        events = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "copy", AuditEvent.result == "allowed")
        ).all()
    assert events and all(e.subject_ids == [person.subject_id] for e in events)
    assert all(e.actor.startswith("candidate:") for e in events)


def test_explain_correct_and_human_review(demo: Store, settings: Settings) -> None:
    person = add_person(demo, "Fix")
    explain = requests.receive(demo, settings, DPO, person.subject_id, "explain", "hr")
    requests.verify_identity(demo, DPO, explain.id, "id_document")
    copy = requests.complete_explain(demo, DPO, explain.id)
    archive = zipfile.ZipFile(io.BytesIO(demo.blobs.read_bytes(copy.blob_id)))
    how = json.loads(archive.read("ai/how_scoring_works.json"))
    assert how["templates"][0]["dimensions"][0]["weight"] > 0
    assert "ai/score_reports.json" in archive.namelist()
    assert "records/candidates.json" not in archive.namelist()

    # Correction, by the person through their own link (the gate lets them write their phone).
    correct = requests.receive(
        demo, settings, DPO, person.subject_id, "correct", "link", fields=("candidates.phone",)
    )
    requests.verify_identity(demo, DPO, correct.id, "link_token")
    link = tokens.issue(demo, person.candidate_id, "data_request", timedelta(hours=1), DPO)
    themself = tokens.resolve(demo, link, "data_request")
    with pytest.raises(requests.RequestError):
        requests.complete_correct(demo, themself, correct.id, {"candidates.email": "x@y.org"})
    requests.complete_correct(demo, themself, correct.id, {"candidates.phone": "13700001111"})
    with demo.session() as db:
        candidate = db.get(Candidate, person.candidate_id)
        assert candidate is not None and candidate.phone == "13700001111"
        review_by = db.scalars(select(User.id).where(User.username == "hradmin")).one()

    # Human review: done once a named person evaluated after the request.
    review = requests.receive(demo, settings, DPO, person.subject_id, "human_review", "hr")
    requests.verify_identity(demo, DPO, review.id, "id_document")
    with demo.session() as db:
        old = db.scalars(
            select(Evaluation.id).where(Evaluation.subject_id == person.subject_id)
        ).one()
    with pytest.raises(requests.RequestError):
        requests.complete_human_review(demo, DPO, review.id, old)
    with demo.transaction() as db:
        fresh = Evaluation(
            application_id=person.application_id,
            session_id=person.session_id,
            subject_id=person.subject_id,
            evaluator_id=review_by,
            kind="human",
            overall=3.0,
        )
        db.add(fresh)
        db.flush()
        fresh_id = fresh.id
    requests.complete_human_review(demo, DPO, review.id, fresh_id)
    with demo.session() as db:
        stats = requests.statistics(db)
    assert stats["by_kind"]["human_review"] == {"completed": 1}
    assert stats["by_kind"]["correct"] == {"completed": 1}
