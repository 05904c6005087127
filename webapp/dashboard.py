"""The HR dashboard and the Excel export (issue 6, items 6 and 7).

Per department and per job: the pipeline by stage, today's interviews (the box's
clock), the distribution of AI overall scores, the latest comments and links to
the latest recordings. Counts come from rows in the account's scope only; every
personal value (a candidate's name, a comment, a score report) is read through the
gate, which records it. AI scores advise only (PIPL Art. 24): the histogram shows
where the AI placed people, not a decision.

The Excel export holds what the account may see of each candidate, masked as the
gate says, and leaves one `export` event per person (PIPL Art. 51).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, render_template
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.records import (
    Answer,
    Application,
    Comment,
    InterviewSession,
    Job,
    Recording,
    ScoreReport,
    Stage,
)
from appliance.settings import Settings
from compliance.actors import Actor
from compliance.gate import Gate
from compliance.overrides import SCORE_MAX, SCORE_MIN
from webapp.api import (
    EXPORT_FIELDS,
    box_day_bounds,
    box_today,
    department_names,
    export_filename,
    export_rows,
    export_xlsx,
    gate,
    id_arg,
    pipeline_counts,
    register_denials,
    request_purpose,
    scoped_jobs,
    score_numbers,
)
from webapp.auth import current_actor
from webapp.extensions import appliance_store

bp = Blueprint("dashboard", __name__)

DASHBOARD_FIELDS = ("candidates.name", "comments.body", "score_reports.report")
"""Every personal field the dashboard may show; the gate decides how, per role."""
RECENT = 10
"""Comments and recordings listed: the latest few, the rest are on the candidate files."""
REPORTS_READ = 500
"""Score reports opened for the histograms: the latest, to bound the page's cost."""
BUCKETS = 5


@dataclass
class JobPanel:
    """One job's line on the dashboard."""

    job: Job
    pipeline: dict[str, int]
    today: int = 0
    histogram: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0


@dataclass
class Department:
    name: str
    jobs: list[JobPanel]

    @property
    def pipeline(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for panel in self.jobs:
            total.update(panel.pipeline)
        return {s.value: total[s.value] for s in Stage}


def histogram(scores: list[float]) -> list[dict[str, Any]]:
    """AI overall scores in BUCKETS equal bands of SCORE_MIN..SCORE_MAX, each with its count
    and a bar width in 5% steps (CSS classes `w0`..`w20`: the CSP allows no inline style)."""
    width = (SCORE_MAX - SCORE_MIN) / BUCKETS
    counts = [0] * BUCKETS
    for score in scores:
        index = min(int((score - SCORE_MIN) // width), BUCKETS - 1)
        counts[max(index, 0)] += 1
    top = max(counts) or 1
    return [
        {
            "low": SCORE_MIN + i * width,
            "high": SCORE_MIN + (i + 1) * width,
            "count": count,
            "step": round(count / top * 20),
        }
        for i, count in enumerate(counts)
    ]


def _in_jobs(model: type[Any], job_ids: list[int]) -> Any:
    return model.application_id.in_(select(Application.id).where(Application.job_id.in_(job_ids)))


def interviews_today(
    the_gate: Gate, actor: Actor, db: Session, purpose: str, job_ids: list[int]
) -> list[tuple[InterviewSession, int]]:
    """Sessions in scope whose window opens today on the box's clock, with their job id."""
    start, end = box_day_bounds(box_today())
    stmt = (
        select(InterviewSession, Application.job_id)
        .join(Application, InterviewSession.application_id == Application.id)
        .where(Application.job_id.in_(job_ids))
        .where(InterviewSession.window_start >= start, InterviewSession.window_start < end)
        .where(the_gate.scope(actor, InterviewSession, "view", purpose))
        .order_by(InterviewSession.window_start)
    )
    return [(row[0], row[1]) for row in db.execute(stmt)]


def score_distributions(
    the_gate: Gate, actor: Actor, db: Session, purpose: str, job_ids: list[int]
) -> dict[int, list[float]]:
    """AI overall scores per job, read through the gate (one event per person)."""
    stmt = (
        select(ScoreReport, Application.job_id)
        .join(Application, ScoreReport.application_id == Application.id)
        .where(Application.job_id.in_(job_ids))
        .where(the_gate.scope(actor, ScoreReport, "view", purpose))
        .order_by(ScoreReport.updated_at.desc())
        .limit(REPORTS_READ)
    )
    found = [(row[0], row[1]) for row in db.execute(stmt)]
    shown = the_gate.view_many(
        actor, [r for r, _job in found], purpose, ("score_reports.report",), "list"
    )
    scores: dict[int, list[float]] = {job_id: [] for job_id in job_ids}
    for report, (_row, job_id) in zip(shown, found, strict=True):
        numbers = score_numbers(report)
        if numbers is not None and numbers["overall"] is not None:
            scores[job_id].append(numbers["overall"])
    return scores


def recent_comments(
    the_gate: Gate, actor: Actor, db: Session, purpose: str, job_ids: list[int]
) -> list[dict[str, Any]]:
    """The latest comments in scope with whom they are about, as the gate shows them."""
    stmt = (
        select(Comment)
        .where(_in_jobs(Comment, job_ids))
        .where(the_gate.scope(actor, Comment, "view", purpose))
        .order_by(Comment.created_at.desc(), Comment.id.desc())
        .limit(RECENT)
    )
    comments = list(db.scalars(stmt))
    applications = {c.id: db.get(Application, c.application_id) for c in comments}
    people = {a.candidate.id: a.candidate for a in applications.values() if a is not None}
    shown = the_gate.view_many(
        actor, [*comments, *people.values()], purpose, DASHBOARD_FIELDS, "list"
    )
    names = {s.id: s for s in shown[len(comments) :]}
    listed = []
    for comment in shown[: len(comments)]:
        application = applications[comment.id]
        if not comment.values or application is None:
            continue  # a comment the role sees nothing of is not listed (webapp.api)
        listed.append(
            {
                "comment": comment,
                "candidate": names.get(application.candidate_id),
                "candidate_id": application.candidate_id,
                "job": application.job,
            }
        )
    return listed


def recent_recordings(
    the_gate: Gate, actor: Actor, db: Session, purpose: str, job_ids: list[int]
) -> list[dict[str, Any]]:
    """The latest complete recordings in scope: links only; playing one is the gate's
    `stream` decision, recorded when it happens."""
    if not the_gate.may(actor, "stream", purpose):
        return []
    stmt = (
        select(Recording, Answer.session_id, Application.job_id)
        .join(Answer, Recording.answer_id == Answer.id)
        .join(InterviewSession, Answer.session_id == InterviewSession.id)
        .join(Application, InterviewSession.application_id == Application.id)
        .where(Application.job_id.in_(job_ids), Recording.complete.is_(True))
        .where(the_gate.scope(actor, Recording, "stream", purpose))
        .order_by(Recording.created_at.desc(), Recording.id.desc())
        .limit(RECENT)
    )
    return [
        {"recording": row[0], "session_id": row[1], "job_id": row[2]} for row in db.execute(stmt)
    ]


def build_panels(
    the_gate: Gate,
    actor: Actor,
    db: Session,
    purpose: str,
    jobs: list[Job],
    today: list[tuple[InterviewSession, int]],
) -> list[Department]:
    """Per department (the job's org unit), each job's pipeline, today's count and histogram."""
    job_ids = [j.id for j in jobs]
    counts = pipeline_counts(the_gate, actor, db, purpose, job_ids)
    panels = {j.id: JobPanel(j, counts[j.id]) for j in jobs}
    for _session, job_id in today:
        panels[job_id].today += 1
    for job_id, scores in score_distributions(the_gate, actor, db, purpose, job_ids).items():
        panels[job_id].histogram = histogram(scores)
        panels[job_id].scored = len(scores)
    names = department_names(db, jobs)
    departments: dict[int, Department] = {}
    for job in jobs:
        unit = departments.setdefault(
            job.org_unit_id, Department(names.get(job.org_unit_id, "—"), [])
        )
        unit.jobs.append(panels[job.id])
    return sorted(departments.values(), key=lambda d: d.name)


@bp.get("/dashboard")
def index() -> Any:
    """The dashboard of all jobs in scope, or of one (`?job=<id>`)."""
    actor, the_gate = current_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    job_id = id_arg("job")
    if not the_gate.may(actor, "view", purpose):
        return render_template("dashboard/index.html", allowed=False, purpose=purpose)
    with appliance_store.store.session() as db:
        jobs = scoped_jobs(the_gate, actor, db, purpose)
        if job_id is not None:
            jobs = [j for j in jobs if j.id == job_id]
            if not jobs:
                abort(404, _("没有这个职位，或它不在您的权限范围内。"))
        job_ids = [j.id for j in jobs]
        today = interviews_today(the_gate, actor, db, purpose, job_ids)
        return render_template(
            "dashboard/index.html",
            allowed=True,
            purpose=purpose,
            selected=job_id,
            departments=build_panels(the_gate, actor, db, purpose, jobs, today),
            today=today,
            titles={j.id: j.title for j in jobs},
            comments=recent_comments(the_gate, actor, db, purpose, job_ids),
            recordings=recent_recordings(the_gate, actor, db, purpose, job_ids),
            stages=[s.value for s in Stage],
            can_export=the_gate.may(actor, "export", purpose),
            clock=box_clock,
        )


def box_clock(moment: datetime | None) -> str:
    """A stored UTC time as the hospital's wall clock (HH:MM)."""
    if moment is None:
        return "—"
    settings: Settings = current_app.config["SETTINGS"]
    return moment.astimezone(settings.zone).strftime("%H:%M")


def export_headers() -> dict[str, str]:
    return {
        "name": _("姓名"),
        "phone": _("手机"),
        "email": _("邮箱"),
        "id_number": _("身份证号"),
        "address": _("地址"),
    }


@bp.get("/exports/candidates.xlsx")
def export_candidates() -> Any:
    """The candidates in scope (of one job with `?job=<id>`) as an Excel workbook."""
    actor, the_gate = current_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    job_id = id_arg("job")
    with appliance_store.store.session() as db:
        if job_id is not None and not scoped_jobs(the_gate, actor, db, purpose, job_id):
            abort(404, _("没有这个职位，或它不在您的权限范围内。"))
        rows = export_rows(the_gate, actor, db, purpose, EXPORT_FIELDS, job_id)
    return export_xlsx(rows, EXPORT_FIELDS, export_headers(), export_filename(job_id))


register_denials(bp)
