"""The score report in the portal and the API (issue #5, item 6): the interview view shows
transcripts with times, signals and the report's evidence through the gate; HR overrides a
dimension with a required reason (sealed, audited, no stage change); the PDF (zh/en) is
recorded as an export; the candidate can open the explanation of their own report only."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.records import (
    Answer,
    Application,
    InterviewSession,
    Role,
    ScoreOverride,
    ScoreReport,
    Stage,
)
from appliance.store import Store
from compliance import tokens
from compliance.actors import Actor
from tests.webapp.test_row_scope import (
    CSRF,
    CandidateFile,
    add_candidate_file,
    add_staff,
    events_since,
    last_seq,
    pdf_text,
    response_text,
)

TRANSCRIPT = {
    "language": "zh",
    "text": "我先安抚患者，然后核对医嘱并及时上报。",
    "segments": [
        {"start": 0.4, "end": 2.1, "text": "我先安抚患者，", "words": []},
        {"start": 2.3, "end": 5.0, "text": "然后核对医嘱并及时上报。", "words": []},
    ],
    "duration_s": 5.2,
    "model": "whisper-base/test",
}
QUOTE = "然后核对医嘱并及时上报"


@pytest.fixture
def person(demo_store: Store) -> CandidateFile:
    """An east cardiology candidate (hr.east's subtree, the demo interviewer's session) whose
    answer has a real transcript and whose report quotes it."""
    found = add_candidate_file(demo_store, "EAST-CARD", "Report", ["interviewer"])
    with demo_store.transaction() as db:
        answer = db.get(Answer, found.answer_id)
        report = db.scalars(select(ScoreReport).where(ScoreReport.id == found.report_id)).one()
        assert answer is not None
        answer.transcript = json.dumps(TRANSCRIPT, ensure_ascii=False)
        stored = json.loads(report.report or "{}")
        stored["dimensions"][0]["evidence"][0].update({"quote": QUOTE, "start": 2.3, "end": 5.0})
        report.report = json.dumps(stored, ensure_ascii=False)
    return found


def staff(login_as: Callable[[str], FlaskClient], username: str) -> FlaskClient:
    client = login_as(username)
    with client.session_transaction() as sess:
        sess["csrf"] = CSRF
    return client


def candidate_client(app: Flask, store: Store, candidate_id: int) -> tuple[FlaskClient, str]:
    """The candidate signed in with their data-request token (what the kiosk or a link does:
    webapp.auth.sign_in_candidate), and the actor name the audit log gives them."""
    token = tokens.issue(
        store, candidate_id, "data_request", timedelta(hours=1), Actor.system("test")
    )
    client = app.test_client()
    now = time.time()
    with client.session_transaction() as sess:
        sess.update({"ctoken": token, "seen": now, "start": now, "csrf": CSRF})
    return client, f"candidate:{tokens.token_id(store, token)}"


def test_interview_page_shows_transcript_times_signals_and_report(
    login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """HR sees each answer's transcript with segment times, its signals, face timeline and
    expression, and the report: score, confidence, the quote with its times, the override
    with its reason, links to the PDFs and the explanation, and the override form."""
    page = staff(login_as, "hr.east").get(f"/portal/interviews/{person.session_id}")
    assert page.status_code == 200
    text = response_text(page)
    body = page.get_data(as_text=True)
    assert TRANSCRIPT["segments"][1]["text"] in text and "0:02.3" in text
    for marker in ("signals of Report", "face timeline of Report", "expression of Report"):
        assert marker in text
    assert "沟通能力：8.0" in text  # the override in force, beside the AI's 7.5
    assert "AI 7.5" in text and QUOTE in text and "0:05.0" in text
    assert "override reason Report" in text
    assert f"/portal/interviews/{person.session_id}/report.pdf" in body
    assert f"/portal/interviews/{person.session_id}/explanation" in body
    assert 'name="reason"' in body
    assert not re.search(r"<script(?![^>]*\bsrc=)", body), "inline script on the page"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_interviewer_sees_no_expression_and_no_override_form(
    login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """The policy keeps expression estimates from interviewers (the row is not even listed)
    and gives them no write on overrides."""
    page = staff(login_as, "interviewer").get(f"/portal/interviews/{person.session_id}")
    assert page.status_code == 200
    text = response_text(page)
    assert "face timeline of Report" in text and QUOTE in text
    assert "expression of Report" not in text and "Expression estimates" not in text
    assert 'name="reason"' not in page.get_data(as_text=True)
    api = staff(login_as, "interviewer").get(f"/api/v1/interviews/{person.session_id}")
    answer = api.get_json()["answers"][0]
    assert answer["expression"] is None and answer["face"]["file"] == "face timeline of Report"


def test_api_interview_json_has_structured_report_and_transcript(
    login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """The API gives the same as data: segments with times, the report's dimensions with
    evidence, the override in force beside the AI's score."""
    data = staff(login_as, "hr.east").get(f"/api/v1/interviews/{person.session_id}").get_json()
    answer = data["answers"][0]
    assert answer["transcript"]["segments"][1] == {
        "start": 2.3,
        "end": 5.0,
        "text": "然后核对医嘱并及时上报。",
    }
    assert answer["analysis"]["status"] == "done"
    assert answer["analysis"]["signals"]["content"]["note"] == "signals of Report"
    dimension = data["report"]["dimensions"][0]
    assert dimension["evidence"][0]["quote"] == QUOTE
    assert (dimension["score"], dimension["effective"]) == (7.5, 8.0)
    assert dimension["override"]["reason"] == "override reason Report"


def test_hr_override_is_sealed_audited_and_changes_nothing_else(
    demo_store: Store, login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """The portal form: a new override with its reason sealed under the candidate's key,
    one `update` event naming the field, the application's stage and the AI's report as
    they were."""
    with demo_store.session() as db:
        stage = db.get(Application, person.application_id).stage  # type: ignore[union-attr]
        report_before = db.get(ScoreReport, person.report_id).report_sealed  # type: ignore[union-attr]
    client = staff(login_as, "hr.east")
    before = last_seq(demo_store)
    response = client.post(
        f"/portal/interviews/{person.session_id}/overrides",
        data={
            "dimension_id": person.dimension_id,
            "score": "6.5",
            "reason": "复核录像后调整：回答缺少具体例子",
            "csrf_token": CSRF,
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("#report")
    with demo_store.session() as db:
        rows = list(db.scalars(select(ScoreOverride).order_by(ScoreOverride.id)))
        newest = rows[-1]
        assert (newest.score, newest.dimension_id) == (6.5, person.dimension_id)
        assert newest.reason_sealed and "复核录像".encode() not in newest.reason_sealed
        assert db.get(Application, person.application_id).stage == stage  # type: ignore[union-attr]
        assert db.get(ScoreReport, person.report_id).report_sealed == report_before  # type: ignore[union-attr]
    events = [e for e in events_since(demo_store, before) if e.actor == "hr.east"]
    assert [(e.action, e.result, e.fields) for e in events] == [
        ("update", "allowed", ["score_overrides.reason"])
    ]
    assert events[0].subject_ids == [person.subject_id]
    page = response_text(client.get(f"/portal/interviews/{person.session_id}"))
    assert "沟通能力：6.5" in page and "复核录像后调整" in page
    assert stage == Stage.APPLIED


@pytest.mark.parametrize(
    ("form", "why"),
    [
        ({"score": "6", "reason": "  "}, "reason"),
        ({"score": "11", "reason": "too high"}, "between"),
        ({"score": "nan", "reason": "not a number"}, "between"),
        ({"score": "6", "reason": "unknown dimension", "dimension_id": "999999"}, "dimension"),
    ],
)
def test_a_malformed_override_is_refused_and_leaves_nothing(
    demo_store: Store,
    login_as: Callable[[str], FlaskClient],
    person: CandidateFile,
    form: dict[str, str],
    why: str,
) -> None:
    """No reason, a score off the 0-10 scale, or a dimension not in the report: 400, no row."""
    payload = {"dimension_id": str(person.dimension_id), **form}
    response = staff(login_as, "hr.east").post(
        f"/api/v1/interviews/{person.session_id}/overrides",
        json=payload,
        headers={"X-CSRF-Token": CSRF},
    )
    assert response.status_code == 400
    assert why in response.get_json()["message"]
    with demo_store.session() as db:
        assert len(list(db.scalars(select(ScoreOverride)))) == 1  # the one made with the file


def test_only_hr_in_scope_may_override(
    demo_store: Store, login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """The interviewer (reads overrides, may not write them): 403. HR of another department:
    404, as for any row outside their scope. Both refusals are recorded; no row is made."""
    add_staff(demo_store, "hr.er", Role.HR, "EAST-ER")
    url = f"/api/v1/interviews/{person.session_id}/overrides"
    payload = {"dimension_id": person.dimension_id, "score": 9, "reason": "不应生效"}
    before = last_seq(demo_store)
    for username, status in (("interviewer", 403), ("hr.er", 404)):
        response = staff(login_as, username).post(url, json=payload, headers={"X-CSRF-Token": CSRF})
        assert response.status_code == status
    events = events_since(demo_store, before)
    assert {(e.actor, e.action, e.result) for e in events} == {
        ("interviewer", "update", "denied"),
        ("hr.er", "update", "denied"),
    }
    with demo_store.session() as db:
        assert len(list(db.scalars(select(ScoreOverride)))) == 1


@pytest.mark.parametrize(
    ("lang", "heading"), [("zh", "面试评估报告"), ("en", "Interviewassessment")]
)
def test_report_pdf_in_both_languages_is_recorded_as_an_export(
    demo_store: Store,
    login_as: Callable[[str], FlaskClient],
    person: CandidateFile,
    lang: str,
    heading: str,
) -> None:
    """The PDF holds the candidate's name, each dimension with the quote and the override with
    its reason; the audit log says `export`, with the fields it disclosed."""
    before = last_seq(demo_store)
    response = staff(login_as, "hr.east").get(
        f"/portal/interviews/{person.session_id}/report.pdf?lang={lang}"
    )
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert f"report-{lang}.pdf" in response.headers["Content-Disposition"]
    text = pdf_text(response.get_data())
    for shown in (heading, "测试Report", "沟通能力", QUOTE, "overridereasonReport"):
        assert shown in text
    events = [e for e in events_since(demo_store, before) if e.actor == "hr.east"]
    assert [(e.action, e.result) for e in events] == [("export", "allowed")]
    assert events[0].fields == [
        "candidates.name",
        "score_overrides.reason",
        "score_reports.report",
    ]


def test_report_pdf_refuses_an_unknown_language_and_the_interviewer(
    login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """?lang= is zh or en; interviewers may view but not export (policy): 403."""
    url = f"/portal/interviews/{person.session_id}/report.pdf"
    assert staff(login_as, "hr.east").get(url + "?lang=fr").status_code == 400
    assert staff(login_as, "interviewer").get(url).status_code == 403


def test_candidate_reads_the_explanation_of_their_own_report_only(
    demo_app: Flask, demo_store: Store, person: CandidateFile
) -> None:
    """PIPL Art. 24: the candidate, signed in with their token, gets the explanation (zh by
    default, en on request) with the evidence and how to ask for a human review; another
    candidate's explanation is not found."""
    other = add_candidate_file(demo_store, "WEST-NURS", "Other")
    client, actor = candidate_client(demo_app, demo_store, person.candidate_id)
    before = last_seq(demo_store)
    zh = client.get(f"/portal/interviews/{person.session_id}/explanation")
    assert zh.status_code == 200
    text = response_text(zh)
    assert "关于面试AI评估的说明" in text and QUOTE in text
    assert "人工复核" in text and f"面试编号 {person.session_id}" in text
    assert "override reason Report" in text
    en = response_text(client.get(f"/portal/interviews/{person.session_id}/explanation?lang=en"))
    assert "How the AI assessed your interview" in en and "human review" in en
    assert client.get(f"/portal/interviews/{other.session_id}/explanation").status_code == 404
    events = [e for e in events_since(demo_store, before) if e.actor == actor]
    assert [(e.action, e.result) for e in events] == [
        ("read", "allowed"),
        ("read", "allowed"),
        ("read", "denied"),
    ]
    assert events[0].fields == ["score_overrides.reason", "score_reports.report"]


def test_a_human_only_session_has_no_report_to_show(
    demo_store: Store, login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """No AI scoring for this candidate: the page says so; PDF and explanation find nothing."""
    with demo_store.transaction() as db:
        for override in db.scalars(select(ScoreOverride)):
            db.delete(override)
        db.flush()
        db.delete(db.get(ScoreReport, person.report_id))
        session = db.get(InterviewSession, person.session_id)
        assert session is not None
        session.analysis_status = "human_only"
    client = staff(login_as, "hr.east")
    page = response_text(client.get(f"/portal/interviews/{person.session_id}"))
    assert "仅由人工评估" in page and "AI score report" in page
    assert client.get(f"/portal/interviews/{person.session_id}/report.pdf").status_code == 404
    assert client.get(f"/api/v1/interviews/{person.session_id}/explanation").status_code == 404


def test_candidate_file_lists_interviews_with_the_ai_summary(
    login_as: Callable[[str], FlaskClient], person: CandidateFile
) -> None:
    """The candidate view shows each interview with its state and the AI's summary (issue #5:
    "shown in the candidate view"), linked to the interview; a role that may not read the
    report (the integration account) gets the interview without it."""
    page = staff(login_as, "hr.east").get(f"/portal/candidates/{person.candidate_id}")
    text = response_text(page)
    assert "report summary of Report" in text and "综合 7.5" in text
    assert f"/portal/interviews/{person.session_id}" in page.get_data(as_text=True)
    api = login_as("integration").get(f"/api/v1/candidates/{person.candidate_id}").get_json()
    assert [(i["id"], i["summary"]) for i in api["interviews"]] == [(person.session_id, None)]
