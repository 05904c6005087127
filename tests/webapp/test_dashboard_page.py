"""The dashboard (issue 6, item 6): per department and job the pipeline, today's interviews,
the AI score histogram, the latest comments and recording links, all within the gate."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.records import InterviewSession, Job
from appliance.store import Store
from tests.webapp.test_row_scope import add_candidate_file, events_since, last_seq

Login = Callable[[str], FlaskClient]


def _page(client: FlaskClient, url: str = "/dashboard") -> str:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return html.unescape(response.get_data(as_text=True))


def _today_noon_utc(app: Flask) -> datetime:
    zone = app.config["SETTINGS"].zone
    local = datetime.now(zone).replace(hour=12, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC)


def test_east_hr_sees_the_east_dashboard(
    login_as: Login, demo_app: Flask, demo_store: Store
) -> None:
    """Pipeline count, today's interview, the report in the 6-8 band, the comment and the
    recording link; each personal value read left an event naming its subject."""
    east = add_candidate_file(demo_store, "EAST-CARD", "DashEast", ["interviewer"])
    with demo_store.transaction() as db:
        session = db.get(InterviewSession, east.session_id)
        assert session is not None
        session.window_start = _today_noon_utc(demo_app)
        session.window_end = session.window_start + timedelta(hours=2)
    before = last_seq(demo_store)
    page = _page(login_as("hr.east"))
    assert "心内科" in page and "住院医师（心内科）" in page
    assert "12:00 · 住院医师（心内科）" in page
    assert east.values["comments.body"] in page
    assert f"/portal/recordings/{east.recording_id}/stream" in page
    # One report with overall 7.5: the 6-8 band's bar is full, the others empty.
    assert 'class="hist-bar w20"' in page and page.count('class="hist-bar w0"') == 4
    events = [e for e in events_since(demo_store, before) if east.subject_id in e.subject_ids]
    fields = {f for e in events for f in e.fields}
    assert {"comments.body", "score_reports.report", "candidates.name"} <= fields
    assert all(e.actor == "hr.east" and e.result == "allowed" for e in events)


def test_west_hr_sees_nothing_of_the_east(login_as: Login, demo_store: Store) -> None:
    east = add_candidate_file(demo_store, "EAST-CARD", "DashHidden", ["interviewer"])
    page = _page(login_as("hr.west"))
    assert east.values["comments.body"] not in page
    assert east.values["candidates.name"] not in page
    assert f"/portal/recordings/{east.recording_id}/stream" not in page
    assert "暂无 AI 评分" in page  # the west sees no scores at all


def test_one_job_and_english(login_as: Login, demo_store: Store) -> None:
    with demo_store.session() as db:
        job_id = db.scalars(select(Job.id).where(Job.title.contains("心内科"))).one()
    client = login_as("hr.east")
    page = _page(client, f"/dashboard?job={job_id}&lang=en")
    assert "Interviews today" in page and "Applied" in page and "All jobs" in page
    assert "护理部" not in page
    assert f"/exports/candidates.xlsx?job={job_id}" in page
    missing = client.get("/dashboard?job=424242")
    assert missing.status_code == 404
    assert client.get("/dashboard?job=abc").status_code == 400


def test_roles_without_candidate_data_get_an_explanation(login_as: Login) -> None:
    page = _page(login_as("sysadmin"))
    assert "您的角色不查看候选人数据" in page
    assert "hist-bar" not in page


def test_interviewer_sees_assigned_work_without_comments(
    login_as: Login, demo_store: Store
) -> None:
    east = add_candidate_file(demo_store, "EAST-CARD", "DashInterviewer", ["interviewer"])
    page = _page(login_as("interviewer"))
    assert east.values["comments.body"] not in page  # policy: comments hidden for interviewers
    assert f"/portal/recordings/{east.recording_id}/stream" in page
    assert 'class="hist-bar w20"' in page


def test_signed_out_is_sent_to_sign_in(demo_app: Flask) -> None:
    response = demo_app.test_client().get("/dashboard", headers={"Accept": "text/html"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
