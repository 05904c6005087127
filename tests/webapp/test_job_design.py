"""Job design in the portal (issue 6, item 2): requisitions, templates, questions, scope."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from appliance.records import (
    Answer,
    Application,
    AuditEvent,
    BankQuestion,
    InterviewSession,
    Job,
    OrgUnit,
    ScoringTemplate,
)
from appliance.store import Store

Login = Callable[[str], FlaskClient]


def _unit(store: Store, code: str) -> int:
    with store.session() as db:
        return db.scalars(select(OrgUnit.id).where(OrgUnit.code == code)).one()


def _job_form(store: Store, **overrides: Any) -> dict[str, Any]:
    form = {
        "title": "主治医师（心内科）",
        "org_unit_id": str(_unit(store, "EAST-CARD")),
        "description": "负责心内科病房及急诊胸痛患者的诊治，参与夜班。",
        "education": "硕士",
        "licences": "执业医师资格证、医师执业证书",
        "professional_title": "主治医师",
        "years": "5",
        "keywords": "胸痛中心",
        "template": "default",
        "status": "open",
        "action": "save",
    }
    form.update(overrides)
    return form


def _job_count(store: Store) -> int:
    with store.session() as db:
        return db.scalar(select(func.count(Job.id))) or 0


def _events(store: Store, action: str) -> list[AuditEvent]:
    with store.session() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _create(client: FlaskClient, store: Store, **overrides: Any) -> int:
    answer = client.post("/jobs/new", data=_job_form(store, **overrides))
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return int(answer.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def test_new_job_copies_default_template_and_gets_three_suggested_questions(
    login_as: Login, demo_store: Store
) -> None:
    job_id = _create(login_as("hr.east"), demo_store)
    with demo_store.session() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.created_by_id is not None
        assert job.requirements["licences"] == ["执业医师资格证", "医师执业证书"]
        assert job.requirements["professional_title"] == "主治医师"
        assert job.requirements["years"] == 5
        template = job.scoring_template
        assert template is not None and template.org_unit_id == job.org_unit_id
        assert [d.name for d in template.dimensions] == [
            "沟通能力",
            "团队协作",
            "专业知识",
            "应变能力",
            "语言逻辑",
        ]
        assert abs(sum(d.weight for d in template.dimensions) - 1) < 1e-9
        assert all(len(d.rubric) == 3 for d in template.dimensions)
        assert job.competencies == [d.name for d in template.dimensions]
        questions = job.plans[0].questions
        assert len(questions) == 3
        assert all(q.source in ("bank", "suggested") and q.suggestion_reasons for q in questions)
        assert len({q.competency for q in questions}) == 3
    [event] = _events(demo_store, "job.create")
    assert event.entity == f"jobs:{job_id}" and event.actor == "hr.east"
    assert "jobs.title" in event.fields


def test_new_job_can_pick_an_existing_template(login_as: Login, demo_store: Store) -> None:
    with demo_store.session() as db:
        template_id = db.scalars(select(ScoringTemplate.id).order_by(ScoringTemplate.id)).first()
        before = db.scalar(select(func.count(ScoringTemplate.id)))
    job_id = _create(login_as("hr.east"), demo_store, template=str(template_id))
    with demo_store.session() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.scoring_template_id == template_id
        assert db.scalar(select(func.count(ScoringTemplate.id))) == before


def test_suggest_button_prefills_questions_and_saves_nothing(
    login_as: Login, demo_store: Store
) -> None:
    before = _job_count(demo_store)
    page = login_as("hr.east").post("/jobs/new", data=_job_form(demo_store, action="suggest"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert len(re.findall(r'name="q_text"[^>]*>[^<\s][^<]*</textarea>', html)) == 3
    assert "根据执业资格要求" in html or "与职位关键词匹配" in html
    assert _job_count(demo_store) == before


def test_bad_job_input_is_refused_with_a_message_and_nothing_saved(
    login_as: Login, demo_store: Store
) -> None:
    client = login_as("hr.east")
    before = _job_count(demo_store)
    west = str(_unit(demo_store, "WEST-NURS"))
    cases = [
        ({"title": ""}, "请填写职位名称"),
        ({"org_unit_id": west}, "未知的科室"),
        ({"org_unit_id": "99999"}, "未知的科室"),
        ({"q_text": "请介绍您自己。", "q_think": "-5"}, "不能为负数"),
        ({"q_text": "请介绍您自己。", "q_answer": "0"}, "必须大于 0 秒"),
        ({"years": "-1"}, "不能为负数"),
        ({"template": "123456"}, "未知的评分模板"),
    ]
    for overrides, message in cases:
        answer = client.post("/jobs/new", data=_job_form(demo_store, **overrides))
        assert answer.status_code == 400, overrides
        assert message in answer.get_data(as_text=True), overrides
    assert _job_count(demo_store) == before
    english = client.post("/jobs/new?lang=en", data=_job_form(demo_store, title=""))
    assert "Enter the job title." in english.get_data(as_text=True)


def test_template_weights_must_add_up_to_100_percent(login_as: Login, demo_store: Store) -> None:
    client = login_as("hr.east")
    unit = str(_unit(demo_store, "EAST-CARD"))
    form = {
        "name": "急诊科评分模板",
        "org_unit_id": unit,
        "d_name": ["沟通能力", "专业知识"],
        "d_weight": ["40", "50"],
        "d_rubric": ["1: 未体现\n5: 清楚", "1: 未体现\n5: 准确"],
        "d_id": ["", ""],
    }
    with demo_store.session() as db:
        before = db.scalar(select(func.count(ScoringTemplate.id)))
    answer = client.post("/jobs/templates/new", data=form)
    assert answer.status_code == 400
    assert "权重之和必须为 100%，现在是 90%" in answer.get_data(as_text=True)
    answer = client.post("/jobs/templates/new?lang=en", data=form)
    assert "must add up to 100%" in answer.get_data(as_text=True)
    bad_rubric = form | {"d_weight": ["40", "60"], "d_rubric": ["很好", "1: 未体现"]}
    assert "1-5" in client.post("/jobs/templates/new?lang=zh", data=bad_rubric).get_data(
        as_text=True
    )
    with demo_store.session() as db:
        assert db.scalar(select(func.count(ScoringTemplate.id))) == before

    assert (
        client.post("/jobs/templates/new", data=form | {"d_weight": ["40%", "60%"]}).status_code
        == 303
    )
    with demo_store.session() as db:
        template = db.scalars(select(ScoringTemplate).order_by(ScoringTemplate.id.desc())).first()
        assert template is not None and template.name == "急诊科评分模板"
        assert [(d.name, d.weight) for d in template.dimensions] == [
            ("沟通能力", 0.4),
            ("专业知识", 0.6),
        ]
        assert [(r.score, r.text) for r in template.dimensions[1].rubric] == [
            (1, "未体现"),
            (5, "准确"),
        ]
        template_id, dim_id = template.id, template.dimensions[0].id
    assert _events(demo_store, "scoring_template.create")

    edited = form | {"d_weight": ["0.3", "0.7"], "d_id": [str(dim_id), ""]}
    assert client.post(f"/jobs/templates/{template_id}/edit", data=edited).status_code == 303
    with demo_store.session() as db:
        template = db.get(ScoringTemplate, template_id)
        assert template is not None
        assert [(d.id == dim_id, d.weight) for d in template.dimensions][0] == (True, 0.3)
    # Only HR admin makes hospital-wide templates; another branch's HR cannot edit this one.
    assert "人事管理员" in client.post(
        "/jobs/templates/new", data=form | {"org_unit_id": ""}
    ).get_data(as_text=True)
    assert login_as("hr.west").get(f"/jobs/templates/{template_id}/edit").status_code == 404


def test_hr_sees_and_edits_only_its_own_subtree(login_as: Login, demo_store: Store) -> None:
    job_id = _create(login_as("hr.east"), demo_store)
    west = login_as("hr.west")
    assert "主治医师（心内科）" not in west.get("/jobs").get_data(as_text=True)
    assert west.get(f"/jobs/{job_id}").status_code == 404
    assert west.get(f"/jobs/{job_id}/edit").status_code == 404
    assert (
        west.post(f"/jobs/{job_id}/edit", data=_job_form(demo_store, title="x")).status_code == 404
    )
    denied = [e for e in _events(demo_store, "job.open") if e.result == "denied"]
    assert denied and denied[0].actor == "hr.west"
    assert "主治医师（心内科）" in login_as("hradmin").get("/jobs").get_data(as_text=True)


def test_interviewer_views_jobs_of_its_subtree_but_edits_nothing(
    login_as: Login, demo_store: Store
) -> None:
    job_id = _create(login_as("hr.east"), demo_store)
    interviewer = login_as("interviewer")
    page = interviewer.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "/edit" not in page.get_data(as_text=True)
    assert interviewer.get(f"/jobs/{job_id}/edit").status_code == 403
    assert interviewer.post("/jobs/new", data=_job_form(demo_store)).status_code == 403
    assert interviewer.get("/jobs/bank").status_code == 403


def test_detail_links_to_board_and_import_and_explains_suggestions(
    login_as: Login, demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = _create(client, demo_store)
    html = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'href="/jobs/{job_id}/board"' in html
    assert f'href="/jobs/{job_id}/import"' in html
    assert "提取的关键词" in html and "执业医师资格证" in html
    assert "加入面试" in html


def test_edit_updates_questions_in_place_and_is_audited(login_as: Login, demo_store: Store) -> None:
    client = login_as("hr.east")
    job_id = _create(client, demo_store)
    with demo_store.session() as db:
        job = db.get(Job, job_id)
        assert job is not None
        ids = [q.id for q in job.plans[0].questions]
        texts = [q.text for q in job.plans[0].questions]
    form = _job_form(demo_store, title="主治医师（心内科，夜班）")
    form |= {
        "q_id": [str(ids[0]), str(ids[1]), str(ids[2]), ""],
        "q_text": [texts[0], texts[1], "", "请谈谈您对胸痛中心建设的理解。"],
        "q_competency": ["", "", "", "专业知识"],
        "q_think": ["45", "30", "30", "20"],
        "q_answer": ["180", "120", "120", "90"],
        "q_retakes": ["2", "1", "1", "0"],
    }
    assert client.post(f"/jobs/{job_id}/edit", data=form).status_code == 303
    with demo_store.session() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.title == "主治医师（心内科，夜班）" and job.updated_at
        questions = job.plans[0].questions
        assert [q.id for q in questions][:2] == ids[:2] and len(questions) == 3
        assert (questions[0].think_seconds, questions[0].answer_seconds, questions[0].retakes) == (
            45,
            180,
            2,
        )
        assert (
            questions[2].text == "请谈谈您对胸痛中心建设的理解。"
            and questions[2].source == "manual"
        )
    [event] = _events(demo_store, "job.update")
    assert "jobs.title" in event.fields and "interview_questions" in event.fields


def test_a_suggestion_is_added_with_its_reasons(login_as: Login, demo_store: Store) -> None:
    client = login_as("hr.east")
    job_id = _create(client, demo_store)
    data = {
        "q_text": "请介绍一次您参与抢救的经历。",
        "q_competency": "应变能力",
        "q_think": "30",
        "q_answer": "120",
        "q_retakes": "1",
        "q_id": "",
        "q_source": "suggested",
        "q_bank_id": "",
        "q_reasons": '[{"kind": "keywords", "terms": ["抢救"]}]',
    }
    assert client.post(f"/jobs/{job_id}/questions", data=data).status_code == 303
    with demo_store.session() as db:
        job = db.get(Job, job_id)
        assert job is not None
        last = job.plans[0].questions[-1]
        assert last.text == data["q_text"] and last.position == 3
        assert last.suggestion_reasons == [{"kind": "keywords", "terms": ["抢救"]}]


def test_question_bank_per_competency(login_as: Login, demo_store: Store) -> None:
    client = login_as("hr.east")
    unit = str(_unit(demo_store, "EAST-ER"))
    data = {
        "competency": "应变能力",
        "text": "急诊同时来了三位危重患者，您如何分诊？",
        "keywords": "分诊、危重",
        "think_seconds": "20",
        "answer_seconds": "90",
        "retakes": "0",
        "org_unit_id": unit,
    }
    assert client.post("/jobs/bank", data=data | {"answer_seconds": "-1"}).status_code == 400
    assert client.post("/jobs/bank", data=data | {"org_unit_id": ""}).status_code == 400
    assert client.post("/jobs/bank", data=data).status_code == 303
    with demo_store.session() as db:
        row = db.scalars(select(BankQuestion).where(BankQuestion.text == data["text"])).one()
        assert row.keywords == ["分诊", "危重"] and row.retakes == 0
        row_id = row.id
    page = client.get("/jobs/bank?competency=应变能力").get_data(as_text=True)
    assert data["text"] in page and "请描述您对急性胸痛患者" not in page
    assert login_as("hr.west").get(f"/jobs/bank/{row_id}/edit").status_code == 404
    assert data["text"] not in login_as("hr.west").get("/jobs/bank").get_data(as_text=True)
    assert client.post(f"/jobs/bank/{row_id}/retire").status_code == 303
    assert data["text"] not in client.get("/jobs/bank").get_data(as_text=True)
    assert _events(demo_store, "question_bank.retire")


def test_job_pages_in_english(login_as: Login, demo_store: Store) -> None:
    client = login_as("hr.east")
    job_id = _create(client, demo_store)
    for path in (
        "/jobs",
        "/jobs/new",
        f"/jobs/{job_id}",
        f"/jobs/{job_id}/edit",
        "/jobs/templates",
        "/jobs/templates/new",
        "/jobs/bank",
    ):
        page = client.get(f"{path}?lang=en")
        assert page.status_code == 200, path
    assert "Suggested questions" in client.get(f"/jobs/{job_id}?lang=en").get_data(as_text=True)


def test_an_answered_question_cannot_be_removed(login_as: Login, demo_store: Store) -> None:
    """Answers point at their question: dropping it is refused and the job stays as it was."""
    with demo_store.transaction() as db:
        job = db.scalars(select(Job).where(Job.title == "住院医师（心内科）")).one()
        application = db.scalars(select(Application).where(Application.job_id == job.id)).first()
        assert application is not None
        plan = job.plans[0]
        session = InterviewSession(application_id=application.id, plan_id=plan.id)
        db.add(session)
        db.flush()
        first = plan.questions[0]
        db.add(
            Answer(
                session_id=session.id,
                question_id=first.id,
                subject_id=application.candidate.subject_id,
            )
        )
        job_id, ids, texts = (
            job.id,
            [q.id for q in plan.questions],
            [q.text for q in plan.questions],
        )
    form = _job_form(demo_store, title="住院医师（心内科）改")
    form |= {"q_id": [str(i) for i in ids], "q_text": ["", *texts[1:]]}
    answer = login_as("hr.east").post(f"/jobs/{job_id}/edit", data=form)
    assert answer.status_code == 400
    assert "已有候选人回答过的问题不能删除" in answer.get_data(as_text=True)
    with demo_store.session() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.title == "住院医师（心内科）"
        assert [q.id for q in job.plans[0].questions] == ids
    assert not _events(demo_store, "job.update")
