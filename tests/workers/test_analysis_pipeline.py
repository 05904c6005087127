"""The analysis pipeline end to end (issue #5, item 7): a whole interview from the fixture
videos, real models, a real encrypted store; the report's every score has evidence that
exists in the stored transcript; a re-run replaces; a failing step says so on the session."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.records import (
    Answer,
    AnswerAnalysis,
    Application,
    Candidate,
    ExpressionSignals,
    FaceSignals,
    InterviewPlan,
    InterviewQuestion,
    InterviewSession,
    Job,
    JobRun,
    JobStatus,
    OrgKind,
    OrgUnit,
    Recording,
    RubricLine,
    ScoreReport,
    ScoringDimension,
    ScoringTemplate,
    SessionStatus,
    SubjectKind,
)
from appliance.settings import Settings
from appliance.store import Store
from compliance import pia, profiles, register
from compliance.actors import Actor
from compliance.gate import Gate
from tests.conftest import Box
from workers.analysis import jobs as analysis
from workers.analysis.jobs import AnalysisFailed, analyse_answer, local_context
from workers.jobs import queue_for

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
VIDEOS = FIXTURES / "video"
DIMENSIONS = (
    ("沟通能力", 0.25, "表达清楚，能倾听并回应患者与同事的关切"),
    ("团队协作", 0.2, "主动配合，能在多学科团队中分工与支援"),
    ("专业知识", 0.25, "专业判断准确，符合诊疗规范与操作流程"),
    ("应变能力", 0.15, "面对突发情况冷静，能排序并及时上报"),
    ("语言逻辑", 0.15, "条理清楚，先结论后依据"),
)
QUESTIONS = (
    ("请介绍一次您处理投诉的经历。", "沟通能力", "candidate_answer.mp4"),
    ("请谈谈一次您在压力下解决问题的经历。", "应变能力", "candidate_looks_away.mp4"),
)
SETUP = Actor.system("test-setup")
DPO = Actor.system("test-dpo")
FEATURES = ("face_analysis", "expression_analysis", "ai_scoring")
AI_TABLES = (AnswerAnalysis, FaceSignals, ExpressionSignals, ScoreReport)


@dataclass(frozen=True)
class Interview:
    subject_id: str
    session_id: int
    answer_ids: list[int]


@pytest.fixture(autouse=True)
def own_profile_and_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The jobs put the settings' jurisdiction in force for the process; give it back after
    (a module global of compliance.profiles), and forget the settings the test configured."""
    monkeypatch.setattr(profiles, "_activated", profiles._activated)
    yield
    analysis.configure(None)


def approve_assessments(store: Store, features: tuple[str, ...] = FEATURES) -> None:
    """PIPL Art. 55: each feature runs only with an approved impact assessment."""
    body = {section: f"{section} assessed for the test" for section in pia.SECTIONS}
    for feature in features:
        row = pia.record(store, SETUP, feature, "1", f"{feature} assessment", body)
        pia.approve(store, DPO, row.id)


def give_consents(store: Store, subject_id: str, answers: dict[str, bool]) -> None:
    """The candidate's answers to the current notices, through the consent register."""
    for purpose, granted in answers.items():
        with store.session() as db:
            notice = register.current_notice(db, purpose)
        if notice is None:
            notice = register.publish_notice(store, SETUP, purpose, "1", f"{purpose} notice text")
        register.record_consent(store, SETUP, subject_id, purpose, granted, notice.id)


def make_interview(
    store: Store,
    videos: list[bytes] | None = None,
    consents: dict[str, bool] | None = None,
) -> Interview:
    """A candidate's completed interview for a job with the five-dimension template, one
    answer per question, each recording an encrypted blob of a fixture video."""
    if videos is None:
        videos = [(VIDEOS / q[2]).read_bytes() for q in QUESTIONS]
    with store.transaction() as db:
        unit = OrgUnit(code=f"T-{db.scalar(select(func.count(OrgUnit.id)))}", kind=OrgKind.HQ)
        unit.name = "测试医院信息科"
        db.add(unit)
        db.flush()
        unit.place_under(None)
        template = ScoringTemplate(name="测试模板")
        for position, (name, weight, top) in enumerate(DIMENSIONS):
            dimension = ScoringDimension(name=name, weight=weight, position=position)
            dimension.rubric = [
                RubricLine(score=1, text="未体现"),
                RubricLine(score=3, text="基本体现，缺少具体例子"),
                RubricLine(score=5, text=top),
            ]
            template.dimensions.append(dimension)
        job = Job(
            org_unit_id=unit.id,
            title="信息科工程师",
            description="负责医院信息系统的运维与故障处理",
            requirements={"language": "zh", "keywords": ["系统", "故障", "患者"]},
            status=JobStatus.OPEN,
            scoring_template=template,
        )
        plan = InterviewPlan(name="AI 视频面试", mode="async")
        plan.questions = [
            InterviewQuestion(position=i, text=text, competency=competency)
            for i, (text, competency, _video) in enumerate(QUESTIONS[: len(videos)])
        ]
        job.plans.append(plan)
        db.add(job)
        subject = store.new_subject(db, SubjectKind.CANDIDATE)
        candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="test")
        db.add(candidate)
        db.flush()
        candidate.name = "测试候选人"
        application = Application(candidate_id=candidate.id, job_id=job.id)
        db.add(application)
        db.flush()
        session = InterviewSession(
            application_id=application.id, plan_id=plan.id, status=SessionStatus.COMPLETED
        )
        db.add(session)
        db.flush()
        answer_ids = []
        for question, media in zip(plan.questions, videos, strict=True):
            answer = Answer(session_id=session.id, question_id=question.id, subject_id=subject.id)
            db.add(answer)
            db.flush()
            blob_id = store.blobs.put(subject.id, [media])
            db.add(
                Recording(
                    answer_id=answer.id,
                    subject_id=subject.id,
                    blob_id=blob_id,
                    media_type="video/mp4",
                    size_bytes=len(media),
                    complete=True,
                )
            )
            answer_ids.append(answer.id)
        subject_id, session_id = subject.id, session.id
    give_consents(
        store,
        subject_id,
        consents
        if consents is not None
        else {"recording": True, "ai_scoring": True, "face_analysis": True},
    )
    return Interview(subject_id, session_id, answer_ids)


def run_interview(store: Store, interview: Interview) -> None:
    """Each answer's job as a worker would run it; the last one scores the session."""
    for answer_id in interview.answer_ids:
        analyse_answer(local_context(store, analyse_answer.name), answer_id)


def read_back(store: Store, model: type[Any], rows: list[Any], field: str) -> dict[int, Any]:
    """Sealed JSON fields read through the gate, as the box's jobs read them."""
    with store.session() as db:
        fresh = [db.get(model, r.id) for r in rows]
        shown = Gate(store).view_many(Actor.system("test-read"), fresh, "processing")
    return {s.id: json.loads(s[field]) if s[field] else None for s in shown}


def counts(store: Store, subject_id: str) -> dict[str, int]:
    """Rows of the AI tables about the subject, straight from the database."""
    with store.session() as db:
        return {
            model.__tablename__: db.scalar(
                select(func.count()).select_from(model).where(model.subject_id == subject_id)
            )
            or 0
            for model in AI_TABLES
        }


@pytest.fixture
def interview(store: Store, settings: Settings) -> Interview:
    analysis.configure(settings)
    approve_assessments(store)
    return make_interview(store)


def test_jobs_are_analysis_jobs() -> None:
    """Both jobs are declared on the analysis queue, with retries."""
    assert analyse_answer.spec.queue == analysis.score_session.spec.queue == "analysis"
    assert analyse_answer.spec.retries > 0 and analysis.score_session.spec.retries > 0


def test_full_interview_report_has_evidence_from_the_transcript(
    store: Store, interview: Interview
) -> None:
    """Two answers from the fixture videos: every dimension of the template has a score and
    evidence; every quote is in the stored transcript of its answer, inside that answer's
    time; the face timeline carries the identity reference from the first answer on."""
    run_interview(store, interview)

    with store.session() as db:
        session = db.get(InterviewSession, interview.session_id)
        assert session is not None
        assert (session.analysis_status, session.analysis_error) == ("done", None)
        answers = list(db.scalars(select(Answer).where(Answer.id.in_(interview.answer_ids))))
        reports = list(db.scalars(select(ScoreReport)))
        analyses = list(db.scalars(select(AnswerAnalysis)))
        faces = list(db.scalars(select(FaceSignals).order_by(FaceSignals.answer_id)))
    assert {a.status.value for a in analyses} == {"done"}
    assert {a.language for a in analyses} == {"zh"}
    transcripts = read_back(store, Answer, answers, "transcript")
    assert all(t["text"] and t["segments"] for t in transcripts.values())
    assert len(reports) == 1
    report = read_back(store, ScoreReport, reports, "report")[reports[0].id]

    assert [d["name"] for d in report["dimensions"]] == [d[0] for d in DIMENSIONS]
    for dimension in report["dimensions"]:
        assert dimension["score"] is not None and 0 <= dimension["score"] <= 10
        assert 0 < dimension["confidence"] <= 1
        assert dimension["evidence"], dimension["name"]
        for evidence in dimension["evidence"]:
            stored = transcripts[evidence["answer_id"]]
            assert evidence["quote"] in stored["text"]
            segments = stored["segments"]
            assert segments[0]["start"] - 0.01 <= evidence["start"] < evidence["end"]
            assert evidence["end"] <= segments[-1]["end"] + 0.01
    assert report["summary"].startswith("沟通能力 ")
    assert report["model_versions"]["asr"] and report["model_versions"]["pipeline"]

    timelines = read_back(store, FaceSignals, faces, "timeline")
    first, second = (timelines[f.id] for f in faces)
    assert first["summary"]["reference_from"] == "answer"
    assert second["summary"]["reference_from"] == "earlier"
    assert first["ranges"] and first["summary"]["one_face_share"] > 0.9
    assert counts(store, interview.subject_id)["expression_signals"] == 2


def test_rerunning_replaces_and_never_duplicates(store: Store, interview: Interview) -> None:
    """Analysing the same interview again leaves one row per answer and one report."""
    run_interview(store, interview)
    before = counts(store, interview.subject_id)
    with store.session() as db:
        report_id = db.scalars(select(ScoreReport.id)).one()
    run_interview(store, interview)
    assert (
        counts(store, interview.subject_id)
        == before
        == {
            "answer_analyses": 2,
            "face_signals": 2,
            "expression_signals": 2,
            "score_reports": 1,
        }
    )
    with store.session() as db:
        assert db.scalars(select(ScoreReport.id)).one() == report_id


def test_a_failing_step_leaves_a_clear_error_on_the_interview(
    store: Store, settings: Settings
) -> None:
    """A recording that is not media: the answer says asr failed and why, the session names
    the answer and step, the job raises for rq to retry, and no report is made."""
    analysis.configure(settings)
    approve_assessments(store)
    good = (VIDEOS / QUESTIONS[0][2]).read_bytes()
    interview = make_interview(store, [good, b"this is not a media file" * 100])
    analyse_answer(local_context(store, analyse_answer.name), interview.answer_ids[0])
    broken = interview.answer_ids[1]
    with pytest.raises(AnalysisFailed, match=f"answer {broken}: asr: AudioDecodeError"):
        analyse_answer(local_context(store, analyse_answer.name), broken)

    with store.session() as db:
        session = db.get(InterviewSession, interview.session_id)
        assert session is not None
        assert session.analysis_status == "failed"
        assert session.analysis_error is not None
        assert session.analysis_error.startswith(f"answer {broken}: asr: AudioDecodeError")
        row = db.scalars(select(AnswerAnalysis).where(AnswerAnalysis.answer_id == broken)).one()
        assert (row.status.value, row.step) == ("failed", "asr")
        assert db.scalar(select(func.count()).select_from(ScoreReport)) == 0


def test_a_missing_recording_is_an_error_not_a_gap(store: Store, settings: Settings) -> None:
    """An answer whose recording never completed: failed at `media`, named on the session."""
    analysis.configure(settings)
    approve_assessments(store)
    interview = make_interview(store, [(VIDEOS / QUESTIONS[0][2]).read_bytes()])
    with store.transaction() as db:
        for recording in db.scalars(select(Recording)):
            recording.complete = False
    answer_id = interview.answer_ids[0]
    with pytest.raises(AnalysisFailed, match="media: MissingRecording"):
        analyse_answer(local_context(store, analyse_answer.name), answer_id)
    with store.session() as db:
        session = db.get(InterviewSession, interview.session_id)
        assert session is not None and session.analysis_status == "failed"
        assert f"answer {answer_id}: media:" in (session.analysis_error or "")


def test_a_real_worker_runs_the_answer_then_the_scoring_job(
    box: Box, burst_worker: Callable[..., None]
) -> None:
    """Through Redis and an rq worker: the answer's job carries its id only, and when it is
    done it enqueues the session's scoring (ids only), which writes the report."""
    analysis.configure(box.settings)
    approve_assessments(box.store)
    interview = make_interview(box.store, [(VIDEOS / QUESTIONS[0][2]).read_bytes()])
    runs = analysis.enqueue_session(box.store, box.redis, interview.session_id)
    assert len(runs) == 1
    queued = queue_for("analysis", box.redis).jobs
    assert [list(job.args) for job in queued] == [[analyse_answer.name, interview.answer_ids[0]]]
    burst_worker(("analysis",))
    with box.store.session() as db:
        done = {
            (r.name, r.status.value)
            for r in db.scalars(select(JobRun).where(JobRun.queue == "analysis"))
        }
        session = db.get(InterviewSession, interview.session_id)
        assert session is not None and session.analysis_status == "done"
    assert done == {
        (analyse_answer.name, "succeeded"),
        (analysis.score_session.name, "succeeded"),
    }
    assert counts(box.store, interview.subject_id)["score_reports"] == 1
