"""The JSON API's jobs, applications, interviews and scores (issue 6, item 8): token per
integration account, the gate's scope and field rules, audit events, and 400/404 with a
message for bad input (never a server error)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.records import AuditEvent, InterviewSession, Job, JobStatus, OrgUnit
from appliance.store import Store
from tests.webapp.test_row_scope import (
    CandidateFile,
    add_candidate_file,
    events_since,
    last_seq,
)

Login = Callable[[str], FlaskClient]


@pytest.fixture
def east_file(demo_store: Store) -> CandidateFile:
    """A candidate of the east cardiology department with an interview, a report and a comment."""
    return add_candidate_file(demo_store, "EAST-CARD", "ApiEast", ["interviewer"])


def _job_ids(client: FlaskClient) -> set[int]:
    response = client.get("/api/v1/jobs")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {j["id"] for j in response.get_json()["jobs"]}


def _job_of(store: Store, org_code_prefix: str) -> int:
    with store.session() as db:
        jobs = db.scalars(select(Job).order_by(Job.id)).all()
        titles = {j.id: j.title for j in jobs}
    # Demo: the cardiology job is east's, the nursing job west's.
    wanted = "心内科" if org_code_prefix == "EAST" else "护理部"
    return next(i for i, t in titles.items() if wanted in t)


def _new_job(store: Store, org_code: str, title: str) -> int:
    with store.transaction() as db:
        unit = db.scalars(select(OrgUnit).where(OrgUnit.code == org_code)).one()
        job = Job(org_unit_id=unit.id, title=title, status=JobStatus.OPEN)
        db.add(job)
        db.flush()
        return job.id


def test_jobs_are_scoped_by_branch(login_as: Login, demo_store: Store) -> None:
    """A job nobody applied to yet is seen by the HR of its branch and by accounts granted at
    HQ, not by another branch's HR; pipeline counts count only applications in scope."""
    pharmacy = _new_job(demo_store, "WEST-PHARM", "药师")
    it = _new_job(demo_store, "HQ-IT", "信息工程师")
    assert pharmacy in _job_ids(login_as("hr.west"))
    assert pharmacy not in _job_ids(login_as("hr.east"))
    assert it not in _job_ids(login_as("hr.west")) | _job_ids(login_as("hr.east"))
    assert {pharmacy, it} <= _job_ids(login_as("integration"))
    assert login_as("hr.east").get(f"/api/v1/jobs/{pharmacy}").status_code == 404
    east = _job_of(demo_store, "EAST")
    listed = login_as("hr.east").get("/api/v1/jobs").get_json()["jobs"]
    cardiology = next(j for j in listed if j["id"] == east)
    # The demo's cardiology job has an east and a west applicant: east HR counts one.
    assert cardiology["pipeline"]["applied"] == 1
    everyone = login_as("hradmin").get(f"/api/v1/jobs/{east}").get_json()["job"]
    assert everyone["pipeline"]["applied"] == 2


def test_job_detail_has_template_and_questions(login_as: Login, demo_store: Store) -> None:
    east = _job_of(demo_store, "EAST")
    body = login_as("integration").get(f"/api/v1/jobs/{east}").get_json()["job"]
    assert [d["name"] for d in body["scoring_template"]["dimensions"]][:2] == [
        "沟通能力",
        "团队协作",
    ]
    question = body["plans"][0]["questions"][0]
    assert question["think_seconds"] == 30 and question["answer_seconds"] == 120
    assert body["requirements"]["licences"] == ["执业医师资格证书", "医师执业证书"]


def test_applications_show_names_through_the_gate(
    login_as: Login, demo_store: Store, east_file: CandidateFile
) -> None:
    """The integration account reads names (policy: read) and leaves one list event per person."""
    before = last_seq(demo_store)
    response = login_as("integration").get("/api/v1/applications?stage=applied")
    assert response.status_code == 200
    rows = {a["id"]: a for a in response.get_json()["applications"]}
    mine = rows[east_file.application_id]
    assert mine["candidate_name"] == east_file.values["candidates.name"]
    assert mine["stage"] == "applied"
    events = [e for e in events_since(demo_store, before) if e.actor == "integration"]
    about = [e for e in events if east_file.subject_id in e.subject_ids]
    assert len(about) == 1
    assert about[0].action == "list" and about[0].fields == ["candidates.name"]
    assert about[0].purpose == "integration_sync"
    assert all(east_file.values["candidates.name"] not in str(e.fields) for e in events)


def test_west_hr_sees_no_east_application(login_as: Login, east_file: CandidateFile) -> None:
    rows = login_as("hr.west").get("/api/v1/applications").get_json()["applications"]
    assert east_file.application_id not in {a["id"] for a in rows}
    assert all(a["candidate_name"] != east_file.values["candidates.name"] for a in rows)


def test_interviews_by_day_of_the_box_clock(
    login_as: Login, demo_app: Flask, demo_store: Store, east_file: CandidateFile
) -> None:
    """`?date=` is a day of the hospital's clock (Asia/Shanghai): 07:30 there is the day
    before in UTC, and still listed under the local date."""
    zone = demo_app.config["SETTINGS"].zone
    assert str(zone) == "Asia/Shanghai"
    local_day = datetime(2026, 3, 9).date()
    opens = datetime.combine(local_day, time(7, 30), tzinfo=zone).astimezone(UTC)
    assert opens.date() == local_day - timedelta(days=1)
    with demo_store.transaction() as db:
        session = db.get(InterviewSession, east_file.session_id)
        assert session is not None
        session.window_start = opens
    client = login_as("hr.east")
    listed = client.get("/api/v1/interviews?date=2026-03-09").get_json()["interviews"]
    assert [s["id"] for s in listed] == [east_file.session_id]
    assert listed[0]["candidate_name"] == east_file.values["candidates.name"]
    assert client.get("/api/v1/interviews?date=2026-03-08").get_json()["interviews"] == []
    interviewer = login_as("interviewer").get("/api/v1/interviews").get_json()["interviews"]
    assert [s["id"] for s in interviewer] == [east_file.session_id]


def test_scores_follow_the_field_rules(
    login_as: Login, demo_store: Store, east_file: CandidateFile
) -> None:
    """HR reads the AI numbers and the score a person set; the integration account, for which
    the policy hides score reports, gets the row without them."""
    hr = login_as("hr.east")
    dimension = east_file.dimension_id
    posted = hr.post(
        f"/api/v1/interviews/{east_file.session_id}/overrides",
        json={"dimension_id": dimension, "score": 6.0, "reason": "面试官复核后调整"},
    )
    assert posted.status_code == 201, posted.get_data(as_text=True)
    scores = hr.get(f"/api/v1/scores?job={_job_of(demo_store, 'EAST')}").get_json()["scores"]
    mine = next(s for s in scores if s["session_id"] == east_file.session_id)
    assert mine["ai"]["overall"] == 7.5
    assert mine["ai"]["summary"] == "report summary of ApiEast"
    assert mine["overrides"] == {str(dimension): 6.0}
    assert "面试官复核后调整" not in hr.get("/api/v1/scores").get_data(as_text=True)
    integration = login_as("integration").get("/api/v1/scores").get_json()["scores"]
    theirs = next(s for s in integration if s["session_id"] == east_file.session_id)
    assert theirs["ai"] is None and theirs["candidate_name"] == east_file.values["candidates.name"]
    assert login_as("hr.west").get("/api/v1/scores").get_json()["scores"] == []


BAD_QUERIES = [
    ("/api/v1/applications?job=abc", "job"),
    ("/api/v1/applications?job=0", "job"),
    ("/api/v1/applications?job=99999999999999999999", "job"),
    ("/api/v1/applications?stage=limbo", "applied"),
    ("/api/v1/interviews?date=2026-02-30", "YYYY-MM-DD"),
    ("/api/v1/interviews?date=tomorrow", "YYYY-MM-DD"),
    ("/api/v1/interviews?status=done", "completed"),
    ("/api/v1/jobs?status=paused", "open"),
    ("/api/v1/scores?job=-1", "job"),
    ("/api/v1/candidates/export.xlsx?job=1.5", "job"),
    ("/api/v1/jobs?purpose=Not-A-Name", "purpose"),
]


def test_bad_query_parameters_get_400_with_a_message(login_as: Login) -> None:
    """One demo box for all cases (a box takes seconds to make)."""
    client = login_as("integration")
    for url, words in BAD_QUERIES:
        response = client.get(url)
        assert response.status_code == 400, url
        assert words in response.get_json()["message"], url


def test_bad_ids_get_404_json(login_as: Login) -> None:
    client = login_as("integration")
    for url in (
        "/api/v1/jobs/424242",
        "/api/v1/jobs/99999999999999999999999",
        "/api/v1/candidates/99999999999999999999999",
        "/api/v1/interviews/9223372036854775808",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.is_json and response.get_json()["error"] == "Not Found"


def test_override_with_absurd_numbers_is_400(login_as: Login, east_file: CandidateFile) -> None:
    client = login_as("hr.east")
    url = f"/api/v1/interviews/{east_file.session_id}/overrides"
    for body in (
        {"dimension_id": 10**30, "score": 5, "reason": "x"},
        {"dimension_id": 1, "score": "NaN", "reason": "x"},
    ):
        assert client.post(url, json=body).status_code == 400
    raw = '{"dimension_id": Infinity, "score": 5, "reason": "x"}'
    response = client.post(url, data=raw, content_type="application/json")
    assert response.status_code == 400


def test_english_messages_on_request(login_as: Login) -> None:
    client = login_as("hr.east")
    response = client.get("/api/v1/applications?job=abc&lang=en")
    assert "positive whole-number id" in response.get_json()["message"]


def test_roles_without_candidate_data_are_refused_and_recorded(
    login_as: Login, demo_store: Store
) -> None:
    before = last_seq(demo_store)
    for url in ("/api/v1/jobs", "/api/v1/applications", "/api/v1/scores", "/api/v1/interviews"):
        assert login_as("sysadmin").get(url).status_code == 403
    denied = [e for e in events_since(demo_store, before) if e.actor == "sysadmin"]
    assert len(denied) == 4 and {e.result for e in denied} == {"denied"}


def test_no_token_no_data(demo_app: Flask) -> None:
    client = demo_app.test_client()
    for url in ("/api/v1/jobs", "/api/v1/applications", "/api/v1/openapi.json"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.get("/api/v1/jobs", headers={"Authorization": "Bearer ehr_forged"})
    assert bad.status_code == 401


def test_every_event_names_ids_not_values(
    login_as: Login, demo_store: Store, east_file: CandidateFile
) -> None:
    client = login_as("integration")
    for url in ("/api/v1/applications", "/api/v1/interviews", "/api/v1/scores"):
        assert client.get(url).status_code == 200
    with demo_store.session() as db:
        events = list(db.scalars(select(AuditEvent)))
    for event in events:
        row = f"{event.entity} {event.fields} {event.subject_ids}"
        assert east_file.values["candidates.name"] not in row
