"""The pipeline board (issue 6, item 3): columns per stage, bulk moves with a required
reason, the invitation hand-off with ids only, adding one candidate, and merging duplicates."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select

from appliance.records import Application, Candidate, CandidateMerge, Stage, StageChange
from appliance.store import Store
from tests.webapp.test_pipeline_import import east_job

HTML = {"Accept": "text/html"}


def add_one(client: FlaskClient, job_id: int, **form: str) -> tuple[int, str, str]:
    response = client.post(f"/jobs/{job_id}/candidates/new", data=form, headers=HTML)
    return (
        response.status_code,
        response.headers.get("Location", ""),
        response.get_data(as_text=True),
    )


def board_ids(client: FlaskClient, job_id: int) -> list[int]:
    """The applications the board offers to tick (those in the user's scope)."""
    page = client.get(f"/jobs/{job_id}/board").get_data(as_text=True)
    return [int(i) for i in re.findall(r'name="application" value="(\d+)"', page)]


def test_board_has_a_column_per_stage_in_order(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    page = client.get(f"/jobs/{east_job(demo_store)}/board").get_data(as_text=True)
    found = re.findall(r'data-stage="(\w+)"', page)
    assert found == [s.value for s in Stage]
    assert "吴子涵" in page  # the demo candidate who applied to the cardiology job
    english = client.get(f"/jobs/{east_job(demo_store)}/board?lang=en").get_data(as_text=True)
    assert "Pipeline board" in english and ">Interviewed <" in english


def test_add_one_then_move_two_with_a_reason(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    status, location, _page = add_one(
        client, job_id, name="新来的", phone="139-0000-7777", email="", referrer="李护士长"
    )
    assert status == 303 and re.search(r"/portal/candidates/\d+", location)
    assert "13900007777" not in location and "新来的" not in location
    view = client.get(location).get_data(as_text=True)
    assert "新来的" in view and "13900007777" in view and "李护士长" in view
    apps = board_ids(client, job_id)
    response = client.post(
        f"/jobs/{job_id}/board/move",
        data={"application": [str(a) for a in apps], "to_stage": "screened", "reason": "资料齐全"},
        headers=HTML,
    )
    assert response.status_code == 303
    with demo_store.session() as db:
        stages = db.scalars(select(Application.stage).where(Application.id.in_(apps))).all()
        assert set(stages) == {Stage.SCREENED}
    board = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"已移动 {len(apps)} 份申请。" in board


def test_a_move_without_a_reason_is_refused_clearly(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    apps = board_ids(client, job_id)
    response = client.post(
        f"/jobs/{job_id}/board/move",
        data={"application": [str(a) for a in apps], "to_stage": "rejected", "reason": " "},
        headers=HTML,
    )
    assert response.status_code == 400
    assert "请填写理由：每个决定都需要理由。" in response.get_data(as_text=True)
    with demo_store.session() as db:
        assert (
            db.scalar(select(func.count(StageChange.id)).where(StageChange.from_stage.is_not(None)))
            == 0
        )
    client.get(f"/jobs/{job_id}/board?lang=en")
    response = client.post(
        f"/jobs/{job_id}/board/move",
        data={"application": [str(a) for a in apps], "to_stage": "rejected"},
        headers=HTML,
    )
    assert "Give a reason: every decision needs one." in response.get_data(as_text=True)


def test_invite_hands_the_ids_to_the_invitation_page(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    apps = board_ids(client, job_id)
    response = client.post(
        f"/jobs/{job_id}/board/invite", data={"application": [str(a) for a in apps]}, headers=HTML
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/invitations/new?")
    assert re.findall(r"application=(\d+)", location) == [str(a) for a in apps]
    none = client.post(f"/jobs/{job_id}/board/invite", data={}, headers=HTML)
    assert none.status_code == 400 and "请至少选择一位候选人。" in none.get_data(as_text=True)


def test_add_one_with_a_bad_phone_adds_nothing(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    with demo_store.session() as db:
        before = db.scalar(select(func.count(Candidate.id)))
    status, _location, page = add_one(client, east_job(demo_store), name="错号", phone="12345")
    assert status == 400 and "手机号格式不正确" in page
    status, _location, page = add_one(client, east_job(demo_store), name="无联系方式")
    assert status == 400 and "手机号和邮箱至少填写一项" in page
    with demo_store.session() as db:
        assert db.scalar(select(func.count(Candidate.id))) == before


def test_interviewers_and_other_departments_have_no_board(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    job_id = east_job(demo_store)
    assert login_as("interviewer").get(f"/jobs/{job_id}/board").status_code == 403
    assert login_as("hr.west").get(f"/jobs/{job_id}/board").status_code == 404
    response = login_as("hr.west").post(
        f"/jobs/{job_id}/board/move",
        data={
            "application": [str(a) for a in board_ids(login_as("hr.east"), job_id)],
            "to_stage": "hired",
            "reason": "x",
        },
        headers=HTML,
    )
    assert response.status_code == 404


def test_duplicates_list_and_merge(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    add_one(client, job_id, name="重复甲", phone="13955556666")
    # The same phone as a second record (created directly: the portal would refuse to add it).
    with demo_store.transaction() as db:
        first = db.scalars(select(Candidate).order_by(Candidate.id.desc())).first()
        assert first is not None
        subject = demo_store.new_subject(db, first.subject.kind)
        twin = Candidate(subject_id=subject.id, org_unit_id=first.org_unit_id, source="paper")
        db.add(twin)
        db.flush()
        twin.name, twin.phone = "重复甲", "13955556666"
        survivor_id, merged_id = first.id, twin.id
    page = client.get("/candidates/duplicates", headers=HTML).get_data(as_text=True)
    assert "手机号相同" in page and f"#{merged_id}" in page
    assert "重复甲" not in login_as("hr.west").get("/candidates/duplicates").get_data(as_text=True)
    response = client.post(
        "/candidates/merge",
        data={"survivor": str(survivor_id), "merged": str(merged_id), "reason": "same_phone"},
        headers=HTML,
    )
    assert response.status_code == 303
    with demo_store.session() as db:
        assert db.get(Candidate, merged_id) is None
        assert db.scalar(select(func.count(CandidateMerge.id))) == 1
    view = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"并入记录 #{merged_id}" in view
    after = client.get("/candidates/duplicates", headers=HTML).get_data(as_text=True)
    assert "没有发现重复的候选人。" in after
