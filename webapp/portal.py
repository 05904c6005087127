"""The portal: the front page, and the HR pages over personal data, all through the gate.

Server-rendered (templates/portal/), no inline script or style (the CSP forbids
both). Which personal fields each page may show is declared in `webapp.api.ENDPOINTS`;
what the signed-in account sees of them, and which rows, is the gate's decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, abort, redirect, render_template, url_for
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from appliance.records import (
    Application,
    Candidate,
    CandidateMerge,
    Comment,
    Consent,
    Evaluation,
    InterviewSession,
    Job,
    Referral,
    ResumeParse,
    Role,
    ScoreReport,
    SessionStatus,
    StageChange,
    User,
)
from compliance.actors import Actor
from compliance.gate import Gate, Shown
from compliance.overrides import SCORE_MAX, SCORE_MIN, may_override
from webapp import N_
from webapp.api import (
    explanation_view,
    export_csv,
    fields_of,
    gate,
    interview_file,
    media_response,
    override_authors,
    override_request,
    parse_json,
    register_denials,
    report_pdf_response,
    report_view,
    request_actor,
    request_purpose,
    search_term,
)
from webapp.extensions import appliance_store
from webapp.pipeline import STAGE_LABELS as STAGE_LABEL_IDS

bp = Blueprint("portal", __name__)


@bp.get("/")
def index() -> Any:
    return render_template("index.html")


def _list_page(rows: list[Any], purpose: str, searched: str | None, can: dict[str, bool]) -> str:
    return render_template(
        "portal/candidates.html", rows=rows, purpose=purpose, searched=searched, can=can
    )


def _abilities(the_gate: Any, actor: Any, purpose: str) -> dict[str, bool]:
    can = {
        action: the_gate.may(actor, action, purpose) for action in ("search", "export", "stream")
    }
    can["merge"] = bool(actor.roles & {Role.HR, Role.HR_ADMIN})
    return can


@bp.get("/portal/candidates")
def candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        rows = the_gate.list_rows(actor, db, Candidate, purpose, fields_of("portal.candidates"))
        return _list_page(rows, purpose, None, _abilities(the_gate, actor, purpose))


@bp.post("/portal/candidates/search")
def search_candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    by, value = search_term()
    with appliance_store.store.session() as db:
        rows = the_gate.search(actor, db, by, value, purpose, fields_of("portal.search_candidates"))
        return _list_page(rows, purpose, by, _abilities(the_gate, actor, purpose))


@bp.get("/portal/candidates/<int:candidate_id>")
def candidate(candidate_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"candidates:{candidate_id}", "read")
    with appliance_store.store.session() as db:
        if db.get(Candidate, candidate_id) is None:
            abort(404)
        view = candidate_view(
            the_gate, actor, db, candidate_id, purpose, fields_of("portal.candidate")
        )
        return render_template(
            "portal/candidate.html",
            view=view,
            person=view.person,
            purpose=purpose,
            stage_labels=STAGE_LABELS,
            consent_labels=CONSENT_LABELS,
            timeline_labels=TIMELINE_LABELS,
            merge_labels=MERGE_LABELS,
        )


@bp.get("/portal/candidates/export.csv")
def export_candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        rows = the_gate.export(actor, db, Candidate, purpose, fields_of("portal.export_candidates"))
    return export_csv(rows, fields_of("portal.export_candidates"))


@bp.get("/portal/interviews/<int:session_id>")
def interview(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"interview_sessions:{session_id}", "read")
    with appliance_store.store.session() as db:
        found = interview_file(the_gate, actor, db, session_id, purpose, "portal.interview")
        report = report_view(found.report, found.overrides, override_authors(db, found.overrides))
        return render_template(
            "portal/interview.html",
            found=found,
            answers=found.answer_views(),
            report=report,
            purpose=purpose,
            can_stream=the_gate.may(actor, "stream", purpose),
            can_export=the_gate.may(actor, "export", purpose),
            can_override=report is not None and may_override(the_gate, actor, purpose),
            can_kiosk=may_make_kiosk_code(actor, found.session),
            score_range=(SCORE_MIN, SCORE_MAX),
        )


def may_make_kiosk_code(actor: Actor, row: InterviewSession) -> bool:
    """Reception (HR of the session's branch, or HR admin) hands an on-site candidate a
    kiosk code (issue 7, item 1) while the interview is still to be taken."""
    return bool(actor.roles & {Role.HR, Role.HR_ADMIN}) and row.status in (
        SessionStatus.SCHEDULED,
        SessionStatus.IN_PROGRESS,
    )


@bp.get("/portal/interviews/<int:session_id>/report.pdf")
def score_report_pdf(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    return report_pdf_response(the_gate, actor, session_id, purpose, "portal.score_report_pdf")


@bp.get("/portal/interviews/<int:session_id>/explanation")
def score_explanation(session_id: int) -> Any:
    """The page a candidate can be given on request (PIPL Art. 24): how the AI scored them,
    on what evidence, and how to have a person review it. Candidates reach their own."""
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"interview_sessions:{session_id}", "read")
    with appliance_store.store.session() as db:
        view = explanation_view(
            the_gate, actor, db, session_id, purpose, "portal.score_explanation"
        )
    return render_template("portal/explanation.html", purpose=purpose, **view)


@bp.post("/portal/interviews/<int:session_id>/overrides")
def override_score(session_id: int) -> Any:
    """HR replaces one dimension's AI score, with a reason; nothing else changes (AI advises)."""
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    override_request(actor, session_id, purpose)
    target = url_for("portal.interview", session_id=session_id, purpose=purpose)
    return redirect(target + "#report", code=303)


@bp.get("/portal/recordings/<int:recording_id>/stream")
def stream_recording(recording_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        return media_response(the_gate, actor, db, recording_id, "stream", purpose)


@bp.get("/portal/recordings/<int:recording_id>/download")
def download_recording(recording_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        return media_response(the_gate, actor, db, recording_id, "download", purpose)


# --- one view per candidate (issue 6, item 4) -------------------------------------------------

STAGE_LABELS = STAGE_LABEL_IDS
CONSENT_LABELS = {
    "recording": N_("录制面试"),
    "ai_scoring": N_("AI 评分"),
    "face_analysis": N_("人脸分析"),
    "screening": N_("简历筛选"),
    "background_check": N_("背景调查"),
    "talent_pool": N_("人才库保留"),
}
TIMELINE_LABELS = {
    "applied": N_("申请职位"),
    "stage": N_("阶段变更"),
    "interview_started": N_("开始面试"),
    "interview_completed": N_("完成面试"),
    "ai_scored": N_("AI 评分完成（仅供参考）"),
    "evaluated": N_("面试官评分"),
    "comment": N_("评语"),
    "consent": N_("同意"),
    "consent_declined": N_("拒绝"),
    "consent_withdrawn": N_("撤回同意"),
    "merge": N_("合并重复记录"),
    "invitation": N_("发出邀请"),
    "referral": N_("推荐"),
}
MERGE_LABELS = {
    "same_phone": N_("手机号相同"),
    "same_email": N_("邮箱相同"),
    "same_person": N_("确认为同一人"),
}


@dataclass
class Round:
    session: InterviewSession
    plan_name: str
    round_no: int
    report: dict[str, Any] | None
    evaluations: list[Shown]


@dataclass
class ApplicationView:
    application: Application
    job_title: str
    rounds: list[Round] = field(default_factory=list)


@dataclass
class CandidateView:
    """Everything about one candidate that the actor may see, gathered through the gate in
    one `view_many` call (one audit event). `full`: the actor's roles reach the candidate's
    whole file (HR, not an interviewer who reaches one assigned interview): only then
    decisions, consents and merges are shown."""

    person: Shown
    full: bool
    resumes: list[Any] = field(default_factory=list)
    applications: list[ApplicationView] = field(default_factory=list)
    comments: list[Shown] = field(default_factory=list)
    referrals: list[Shown] = field(default_factory=list)
    consents: list[Consent] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)


def _in_scope(
    the_gate: Gate, actor: Actor, db: Session, stmt: Select[Any], model: Any, purpose: str
) -> list[Any]:
    return list(db.scalars(stmt.where(the_gate.scope(actor, model, "view", purpose))))


def _related_rows(
    the_gate: Gate, actor: Actor, db: Session, candidate: Candidate, purpose: str
) -> dict[str, list[Any]]:
    """The candidate's rows of each kind, each query narrowed by the gate's row scope."""
    cid = candidate.id
    own = select(Application.id).where(Application.candidate_id == cid)

    def scoped(stmt: Select[Any], model: Any) -> list[Any]:
        return _in_scope(the_gate, actor, db, stmt, model, purpose)

    return {
        "applications": scoped(
            select(Application).where(Application.candidate_id == cid).order_by(Application.id),
            Application,
        ),
        "sessions": scoped(
            select(InterviewSession)
            .where(InterviewSession.application_id.in_(own))
            .order_by(InterviewSession.id),
            InterviewSession,
        ),
        "comments": scoped(
            select(Comment)
            .where(Comment.application_id.in_(own))
            .order_by(Comment.created_at, Comment.id),
            Comment,
        ),
        "referrals": scoped(
            select(Referral).where(Referral.candidate_id == cid).order_by(Referral.id), Referral
        ),
        "reports": scoped(
            select(ScoreReport).where(ScoreReport.application_id.in_(own)).order_by(ScoreReport.id),
            ScoreReport,
        ),
        "evaluations": scoped(
            select(Evaluation).where(Evaluation.application_id.in_(own)).order_by(Evaluation.id),
            Evaluation,
        ),
        "resumes": scoped(
            select(ResumeParse)
            .where(ResumeParse.subject_id == candidate.subject_id, ResumeParse.error.is_(None))
            .order_by(ResumeParse.id),
            ResumeParse,
        ),
    }


def candidate_view(
    the_gate: Gate,
    actor: Actor,
    db: Session,
    candidate_id: int,
    purpose: str,
    fields: tuple[str, ...],
) -> CandidateView:
    """One candidate as the actor may see them (NotInScope: 404, AccessDenied: 403)."""
    candidate = db.get(Candidate, candidate_id)
    if candidate is None:
        abort(404)
    rows = _related_rows(the_gate, actor, db, candidate, purpose)
    shown_kinds = ("comments", "referrals", "reports", "evaluations", "resumes")
    flat = [row for kind in shown_kinds for row in rows[kind]]
    shown = the_gate.view_many(actor, [candidate, *flat], purpose, fields)
    by_kind: dict[str, list[Shown]] = {}
    start = 1
    for kind in shown_kinds:
        by_kind[kind] = shown[start : start + len(rows[kind])]
        start += len(rows[kind])
    full = bool(
        db.scalar(
            select(Candidate.id).where(
                Candidate.id == candidate_id, the_gate.scope(actor, Candidate, "search", purpose)
            )
        )
    )
    view = CandidateView(
        person=shown[0],
        full=full,
        resumes=[parse_json(s["parsed"]) for s in by_kind["resumes"] if s.get("parsed")],
        comments=[s for s in by_kind["comments"] if s.values],
        referrals=[s for s in by_kind["referrals"] if s.values],
    )
    view.applications = _application_views(db, rows, by_kind)
    if full:
        view.consents = list(
            db.scalars(
                select(Consent)
                .where(Consent.subject_id == candidate.subject_id)
                .order_by(Consent.given_at, Consent.id)
            )
        )
    view.timeline = _timeline(db, candidate, rows, view)
    return view


def _application_views(
    db: Session, rows: dict[str, list[Any]], by_kind: dict[str, list[Shown]]
) -> list[ApplicationView]:
    reports = {s.row.session_id: s for s in by_kind["reports"] if s.values}
    evaluations: dict[int | None, list[Shown]] = {}
    for ev in by_kind["evaluations"]:
        evaluations.setdefault(ev.row.session_id, []).append(ev)
    views = []
    for app in rows["applications"]:
        view = ApplicationView(app, db.get_one(Job, app.job_id).title)
        for session in (s for s in rows["sessions"] if s.application_id == app.id):
            plan = session.plan
            view.rounds.append(
                Round(
                    session=session,
                    plan_name=plan.name if plan else "",
                    round_no=plan.round_no if plan else 1,
                    report=report_view(reports.get(session.id), [], {}),
                    evaluations=evaluations.get(session.id, []),
                )
            )
        view.rounds.sort(key=lambda r: (r.round_no, r.session.id))
        views.append(view)
    return views


def _staff_names(db: Session, ids: set[int]) -> dict[int, str]:
    ids.discard(None)
    if not ids:
        return {}
    return dict(db.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


def _timeline(
    db: Session, candidate: Candidate, rows: dict[str, list[Any]], view: CandidateView
) -> list[dict[str, Any]]:
    """Everything that happened, newest first. Decisions, consents and merges only for an
    actor who reaches the whole file; a decision's reason only as the gate showed it."""
    events: list[dict[str, Any]] = []
    app_ids = [a.id for a in rows["applications"]]
    titles = {a.application.id: a.job_title for a in view.applications}
    reasons = {c.id: c for c in view.comments}
    decision_comments: set[int] = set()
    changes: list[StageChange] = []
    if view.full and app_ids:
        changes = list(
            db.scalars(
                select(StageChange)
                .where(StageChange.application_id.in_(app_ids))
                .order_by(StageChange.at, StageChange.id)
            )
        )
    merges: list[CandidateMerge] = []
    if view.full:
        merges = list(
            db.scalars(select(CandidateMerge).where(CandidateMerge.survivor_id == candidate.id))
        )
    names = _staff_names(db, {c.actor_id for c in changes} | {m.actor_id for m in merges})
    for app in rows["applications"]:
        events.append({"at": app.created_at, "kind": "applied", "job": titles.get(app.id)})
    for change in changes:
        if change.from_stage is None:
            continue  # the application's creation, already listed
        reason = reasons.get(change.reason_comment_id or -1)
        decision_comments.add(change.reason_comment_id or -1)
        events.append(
            {
                "at": change.at,
                "kind": "stage",
                "job": titles.get(change.application_id),
                "from": change.from_stage,
                "to": change.to_stage,
                "by": names.get(change.actor_id, f"#{change.actor_id}"),
                "reason": reason,
            }
        )
    for comment in view.comments:
        if comment.id not in decision_comments:
            events.append({"at": comment.row.created_at, "kind": "comment", "comment": comment})
    _interview_events(rows, events)
    for merge in merges:
        events.append(
            {
                "at": merge.at,
                "kind": "merge",
                "merged": merge.merged_candidate_id,
                "reason": merge.reason.value,
                "by": names.get(merge.actor_id, f"#{merge.actor_id}"),
            }
        )
    for consent in view.consents:
        kind = "consent" if consent.granted else "consent_declined"
        events.append({"at": consent.given_at, "kind": kind, "purpose": consent.purpose.value})
        if consent.withdrawn_at is not None:
            events.append(
                {
                    "at": consent.withdrawn_at,
                    "kind": "consent_withdrawn",
                    "purpose": consent.purpose.value,
                }
            )
    events.extend(_invitation_events(db, app_ids) if view.full else [])
    events.sort(key=lambda e: (e["at"], e["kind"]), reverse=True)
    return events


def _interview_events(rows: dict[str, list[Any]], events: list[dict[str, Any]]) -> None:
    for session in rows["sessions"]:
        if session.started_at is not None:
            events.append(
                {"at": session.started_at, "kind": "interview_started", "session": session.id}
            )
        if session.completed_at is not None:
            events.append(
                {"at": session.completed_at, "kind": "interview_completed", "session": session.id}
            )
    for report in rows["reports"]:
        events.append({"at": report.created_at, "kind": "ai_scored", "session": report.session_id})
    for ev in rows["evaluations"]:
        if ev.kind != "ai":
            events.append({"at": ev.created_at, "kind": "evaluated", "session": ev.session_id})


def _invitation_events(db: Session, app_ids: list[int]) -> list[dict[str, Any]]:
    """Invitations (issue 6, item 5: `appliance.records.outreach`), where that module has them:
    read by their non-personal columns (application, time, status) only."""
    from appliance.records import outreach

    model = getattr(outreach, "Invitation", None)
    column = getattr(model, "application_id", None)
    when = getattr(model, "created_at", None)
    if model is None or column is None or when is None or not app_ids:
        return []
    events = []
    for row in db.scalars(select(model).where(column.in_(app_ids)).order_by(when)):
        status = getattr(row, "status", None)
        events.append(
            {"at": row.created_at, "kind": "invitation", "status": getattr(status, "value", status)}
        )
    return events


register_denials(bp)
