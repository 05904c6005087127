"""Jobs (issue 6, item 2): requisitions per department, scoring templates, interview
questions, the question bank per competency and offline suggested questions.

Who: HR edits the jobs, templates and bank questions of its own org subtree, HR admin
(granted at HQ) all of them and the hospital-wide ones; interviewers may look at the
jobs of their subtree but edit nothing. Jobs are not personal data, so the gate's field
rules do not apply, but row scope is the same org-subtree rule (`_units_clause`).
Every create and edit is an audit event naming the fields changed (never values).

Bad input (empty title, unknown department, weights not adding up to 100 %, negative
times) re-renders the form with a zh/en message and saves nothing: each form is one
transaction. Plain HTML forms; `static/jobs.js` only adds "another row" buttons.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session

from appliance.records import (
    Answer,
    BankQuestion,
    InterviewPlan,
    InterviewQuestion,
    Job,
    JobStatus,
    OrgUnit,
    Role,
    RubricLine,
    ScoringDimension,
    ScoringTemplate,
    utcnow,
)
from compliance import audit
from compliance.actors import Actor
from webapp.auth import current_actor, requires
from webapp.extensions import appliance_store
from workers import questions as suggester

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

PURPOSE = "screening"
"""Designing a requisition serves the screening of its applicants (policy purposes)."""
EDITORS = (Role.HR, Role.HR_ADMIN)
VIEWERS = (Role.HR, Role.HR_ADMIN, Role.INTERVIEWER)
DEFAULT_TEMPLATE = "default"
PREFILLED_SUGGESTIONS = 3
MAX_SECONDS = 3600
MAX_RETAKES = 10
_LIST_SPLIT = re.compile(r"[,，、;；\n]+")
_RUBRIC_LINE = re.compile(r"^\s*([1-5])\s*[:：|]\s*(\S.*)$")

DEFAULT_DIMENSIONS: tuple[tuple[str, int, tuple[tuple[int, str], ...]], ...] = (
    (
        "沟通能力",
        25,
        ((1, "未体现"), (3, "基本清楚，缺少具体例子"), (5, "表达清楚，能倾听并回应关切")),
    ),
    (
        "团队协作",
        20,
        ((1, "未体现"), (3, "能配合，分工不够明确"), (5, "主动配合，能在多学科团队中分工与支援")),
    ),
    (
        "专业知识",
        25,
        ((1, "未体现"), (3, "基本正确，有遗漏"), (5, "专业判断准确，符合诊疗规范与操作流程")),
    ),
    (
        "应变能力",
        15,
        ((1, "未体现"), (3, "能处理，但排序不清"), (5, "面对突发情况冷静，能排序并及时上报")),
    ),
    ("语言逻辑", 15, ((1, "未体现"), (3, "有条理，结论不突出"), (5, "条理清楚，先结论后依据"))),
)
"""The hospital's default scoring template (the five dimensions of issue 6), in percent."""


class FormError(ValueError):
    """Input a person must correct; the message is already in their language."""


# --- scope ----------------------------------------------------------------------------


def _paths(actor: Actor, roles: Iterable[Role]) -> list[str]:
    wanted = set(roles)
    return [g.org_path for g in actor.grants if g.role in wanted and g.org_path]


def _units_clause(actor: Actor, roles: Iterable[Role]) -> ColumnElement[bool]:
    """Org units in the subtrees the actor holds one of `roles` in (compliance/gate.py's
    org-subtree rule, asked of the same materialised path)."""
    paths = _paths(actor, roles)
    return or_(false(), *(OrgUnit.path.startswith(p, autoescape=True) for p in paths))


def units_in_scope(db: Session, actor: Actor, roles: Iterable[Role] = EDITORS) -> list[OrgUnit]:
    """The departments (and branches) the actor may file jobs under, in tree order."""
    return list(
        db.scalars(select(OrgUnit).where(_units_clause(actor, roles)).order_by(OrgUnit.path))
    )


def _unit_ids(actor: Actor, roles: Iterable[Role]) -> Any:
    return select(OrgUnit.id).where(_units_clause(actor, roles))


def _hospital_wide_editor(actor: Actor) -> bool:
    return Role.HR_ADMIN in actor.roles


def _owned_clause(column: Any, actor: Actor, roles: Iterable[Role], editing: bool) -> Any:
    """Rows owned by a unit in scope, or hospital-wide (owner NULL): everyone in `roles`
    uses them, only HR admin edits them."""
    in_scope = column.in_(_unit_ids(actor, roles))
    if editing and not _hospital_wide_editor(actor):
        return in_scope
    return or_(in_scope, column.is_(None))


def _job_or_404(db: Session, actor: Actor, job_id: int, roles: Iterable[Role]) -> Job:
    job = db.scalars(
        select(Job).where(Job.id == job_id, Job.org_unit_id.in_(_unit_ids(actor, roles)))
    ).first()
    if job is None:
        # As the gate does: out of scope reads as absent (404), and the attempt is recorded.
        audit.record(appliance_store.store, actor, "job.open", f"jobs:{job_id}", PURPOSE, "denied")
        abort(404)
    return job


def _may_edit(actor: Actor) -> bool:
    return bool(actor.roles & set(EDITORS))


# --- parsing --------------------------------------------------------------------------


def _split(value: str) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in _LIST_SPLIT.split(value or "") if p.strip()))


def _int(value: str | None, label: str, default: int, upper: int) -> int:
    text = (value or "").strip()
    if not text:
        return default
    try:
        number = int(text)
    except ValueError:
        raise FormError(_("%(field)s 必须是整数。", field=label)) from None
    if number < 0:
        raise FormError(_("%(field)s 不能为负数。", field=label))
    if number > upper:
        raise FormError(_("%(field)s 不能超过 %(upper)s。", field=label, upper=upper))
    return number


@dataclass
class QuestionRow:
    """One interview question as the form carries it."""

    text: str
    competency: str = ""
    think_seconds: int = suggester.DEFAULT_THINK_SECONDS
    answer_seconds: int = suggester.DEFAULT_ANSWER_SECONDS
    retakes: int = suggester.DEFAULT_RETAKES
    id: int | None = None
    source: str = "manual"
    bank_question_id: int | None = None
    reasons: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, s: suggester.Suggestion) -> QuestionRow:
        return cls(
            text=s.text,
            competency=s.competency,
            think_seconds=s.think_seconds,
            answer_seconds=s.answer_seconds,
            retakes=s.retakes,
            source="bank" if s.source == "bank" else "suggested",
            bank_question_id=s.bank_question_id,
            reasons=s.reasons_as_dicts(),
        )

    @property
    def reasons_json(self) -> str:
        return json.dumps(self.reasons or [], ensure_ascii=False)


def _reasons(value: str) -> list[dict[str, Any]] | None:
    """The hidden reasons of a suggested row, kept only if they have the suggester's shape."""
    try:
        data = json.loads(value or "[]")
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    clean = [
        {"kind": str(r["kind"]), "terms": [str(t) for t in r["terms"]]}
        for r in data
        if isinstance(r, dict)
        and isinstance(r.get("kind"), str)
        and isinstance(r.get("terms"), list)
    ]
    return clean or None


def _question_rows(form: Any) -> list[QuestionRow]:
    """The question rows of a form (blank rows dropped), checked."""
    columns = [
        form.getlist(name)
        for name in ("q_text", "q_competency", "q_think", "q_answer", "q_retakes", "q_id")
    ]
    sources, banks, reasons = (
        form.getlist("q_source"),
        form.getlist("q_bank_id"),
        form.getlist("q_reasons"),
    )
    rows = []
    for i, text in enumerate(columns[0]):
        cell = [c[i] if i < len(c) else "" for c in columns]
        qid = cell[5].strip()
        if not text.strip():
            if qid:
                rows.append(QuestionRow(text="", id=int(qid) if qid.isdigit() else None))
            continue
        n = i + 1
        source = (
            sources[i]
            if i < len(sources) and sources[i] in ("manual", "bank", "suggested")
            else "manual"
        )
        bank_id = banks[i] if i < len(banks) else ""
        rows.append(
            QuestionRow(
                text=text.strip(),
                competency=cell[1].strip()[:120],
                think_seconds=_int(cell[2], _("第 %(n)s 题的思考时间", n=n), 30, MAX_SECONDS),
                answer_seconds=_answer_seconds(cell[3], n),
                retakes=_int(cell[4], _("第 %(n)s 题的重答次数", n=n), 1, MAX_RETAKES),
                id=int(qid) if qid.isdigit() else None,
                source=source,
                bank_question_id=int(bank_id) if bank_id.isdigit() else None,
                reasons=_reasons(reasons[i]) if i < len(reasons) and source != "manual" else None,
            )
        )
    return rows


def _answer_seconds(value: str, n: int) -> int:
    seconds = _int(value, _("第 %(n)s 题的作答时间", n=n), 120, MAX_SECONDS)
    if seconds == 0:
        raise FormError(_("第 %(n)s 题的作答时间必须大于 0 秒。", n=n))
    return seconds


@dataclass
class JobForm:
    """The job form's fields, as typed (re-shown on error) and as checked."""

    title: str = ""
    org_unit_id: str = ""
    description: str = ""
    education: str = ""
    licences: str = ""
    professional_title: str = ""
    years: str = ""
    keywords: str = ""
    competencies: str = ""
    status: str = JobStatus.OPEN.value
    """Open by default: HR creates a job to recruit for it now (issue 6's one-minute flow)."""
    template: str = DEFAULT_TEMPLATE
    questions: list[QuestionRow] = field(default_factory=list)

    @classmethod
    def from_request(cls, form: Any) -> JobForm:
        names = [f for f in cls.__dataclass_fields__ if f != "questions"]
        values: dict[str, Any] = {n: (form.get(n) or "").strip() for n in names}
        return cls(**values)

    @classmethod
    def of_job(cls, job: Job) -> JobForm:
        req = job.requirements or {}
        plan = _first_plan(job)
        return cls(
            title=job.title,
            org_unit_id=str(job.org_unit_id),
            description=job.description or "",
            education=str(req.get("education") or ""),
            licences="、".join(suggester._as_list(req.get("licences"))),
            professional_title=str(req.get("professional_title") or ""),
            years=str(req["years"]) if isinstance(req.get("years"), int) else "",
            keywords="、".join(suggester._as_list(req.get("keywords"))),
            competencies="、".join(job.competencies or []),
            status=job.status.value,
            template=str(job.scoring_template_id or DEFAULT_TEMPLATE),
            questions=[_row_of(q) for q in plan.questions] if plan else [],
        )

    def requirements(self, keep: dict[str, Any] | None = None) -> dict[str, Any]:
        """`Job.requirements` from the form; keys this form does not edit (language,
        skills...) are kept from `keep`."""
        req = {k: v for k, v in (keep or {}).items() if k not in _REQUIREMENT_KEYS}
        req["education"] = self.education
        req["licences"] = _split(self.licences)
        req["professional_title"] = self.professional_title
        req["years"] = _int(self.years, _("工作年限"), 0, 60)
        req["keywords"] = _split(self.keywords)
        return req

    def profile(self, competencies: Sequence[str]) -> suggester.JobProfile:
        return suggester.JobProfile(
            title=self.title,
            description=self.description,
            requirements=self.requirements(),
            competencies=tuple(competencies),
        )


_REQUIREMENT_KEYS = ("education", "licences", "professional_title", "years", "keywords")


def _row_of(q: InterviewQuestion) -> QuestionRow:
    return QuestionRow(
        text=q.text,
        competency=q.competency or "",
        think_seconds=q.think_seconds,
        answer_seconds=q.answer_seconds,
        retakes=q.retakes,
        id=q.id,
        source=q.source,
        bank_question_id=q.bank_question_id,
        reasons=q.suggestion_reasons,
    )


def _first_plan(job: Job) -> InterviewPlan | None:
    plans = sorted(job.plans, key=lambda p: (p.round_no, p.id or 0))
    return next((p for p in plans if p.mode == "async"), plans[0] if plans else None)


# --- checks shared by the job forms ---------------------------------------------------


def _check_job(db: Session, actor: Actor, form: JobForm) -> tuple[OrgUnit, ScoringTemplate | None]:
    if not form.title:
        raise FormError(_("请填写职位名称。"))
    if len(form.title) > 200:
        raise FormError(_("职位名称不能超过 200 个字。"))
    if form.status not in {s.value for s in JobStatus}:
        raise FormError(_("未知的职位状态。"))
    unit_id = int(form.org_unit_id) if form.org_unit_id.isdigit() else None
    units = {u.id: u for u in units_in_scope(db, actor)}
    if unit_id is None or unit_id not in units:
        raise FormError(_("未知的科室，或您无权在该科室下建职位。"))
    form.requirements()  # checks years
    if form.template == DEFAULT_TEMPLATE:
        return units[unit_id], None
    template = _template_in_scope(db, actor, form.template, editing=False)
    if template is None:
        raise FormError(_("未知的评分模板。"))
    return units[unit_id], template


def _template_in_scope(
    db: Session, actor: Actor, value: str, editing: bool
) -> ScoringTemplate | None:
    if not str(value).isdigit():
        return None
    stmt = select(ScoringTemplate).where(
        ScoringTemplate.id == int(value),
        _owned_clause(ScoringTemplate.org_unit_id, actor, EDITORS, editing),
    )
    return db.scalars(stmt).first()


def _default_template(name: str, unit_id: int | None) -> ScoringTemplate:
    template = ScoringTemplate(name=name, org_unit_id=unit_id)
    for position, (dim_name, percent, lines) in enumerate(DEFAULT_DIMENSIONS):
        dim = ScoringDimension(name=dim_name, weight=percent / 100, position=position)
        dim.rubric = [RubricLine(score=s, text=t) for s, t in lines]
        template.dimensions.append(dim)
    return template


def _competencies(form: JobForm, template: ScoringTemplate | None) -> list[str]:
    """What HR listed, else the template's dimensions (they are what will be scored)."""
    listed = _split(form.competencies)
    if listed:
        return listed
    if template is not None:
        return [d.name for d in template.dimensions]
    return [name for name, _p, _l in DEFAULT_DIMENSIONS]


def _bank(db: Session, actor: Actor) -> list[suggester.BankEntry]:
    rows = db.scalars(
        select(BankQuestion).where(
            BankQuestion.active.is_(True),
            _owned_clause(BankQuestion.org_unit_id, actor, EDITORS, editing=False),
        )
    )
    return [
        suggester.BankEntry(
            id=r.id,
            competency=r.competency,
            text=r.text,
            keywords=tuple(r.keywords or ()),
            think_seconds=r.think_seconds,
            answer_seconds=r.answer_seconds,
            retakes=r.retakes,
        )
        for r in rows
    ]


def _suggestions(
    db: Session, actor: Actor, profile: suggester.JobProfile
) -> list[suggester.Suggestion]:
    return suggester.suggest(profile, _bank(db, actor))


def _apply_questions(db: Session, plan: InterviewPlan, rows: Sequence[QuestionRow]) -> None:
    """Replace the plan's questions by `rows`: existing ones updated in place (answers
    point at them), new ones added, dropped ones deleted unless someone answered them."""
    existing = {q.id: q for q in plan.questions}
    wanted = {r.bank_question_id for r in rows if r.bank_question_id is not None}
    known = set(db.scalars(select(BankQuestion.id).where(BankQuestion.id.in_(wanted))))
    kept: list[InterviewQuestion] = []
    for row in rows:
        question = existing.get(row.id) if row.id is not None else None
        if not row.text:
            continue
        if question is None:
            question = InterviewQuestion()
        question.text, question.competency = row.text, row.competency or None
        question.think_seconds, question.answer_seconds = row.think_seconds, row.answer_seconds
        question.retakes, question.source = row.retakes, row.source
        question.bank_question_id = row.bank_question_id if row.bank_question_id in known else None
        question.suggestion_reasons = row.reasons
        kept.append(question)
    dropped = [q for q in existing.values() if q not in kept]
    if dropped:
        answered = db.scalar(
            select(Answer.id).where(Answer.question_id.in_([q.id for q in dropped]))
        )
        if answered is not None:
            raise FormError(_("已有候选人回答过的问题不能删除，可以修改它的文字。"))
    for position, question in enumerate(kept):
        question.position = position
    plan.questions = kept


# --- job pages ------------------------------------------------------------------------


def _render_form(
    db: Session,
    actor: Actor,
    form: JobForm,
    job: Job | None,
    error: str | None = None,
    status: int = 200,
) -> Any:
    templates = list(
        db.scalars(
            select(ScoringTemplate)
            .where(_owned_clause(ScoringTemplate.org_unit_id, actor, EDITORS, editing=False))
            .order_by(ScoringTemplate.id)
        )
    )
    rows = list(form.questions) + [QuestionRow(text="") for _i in range(2)]
    page = render_template(
        "jobs/form.html",
        form=form,
        job=job,
        rows=rows,
        units=units_in_scope(db, actor),
        templates=templates,
        statuses=list(JobStatus),
        error=error,
        default_template=DEFAULT_TEMPLATE,
    )
    return page, status


@bp.get("")
@requires(*VIEWERS)
def index() -> Any:
    actor = current_actor()
    with appliance_store.store.session() as db:
        jobs = list(
            db.scalars(
                select(Job)
                .where(Job.org_unit_id.in_(_unit_ids(actor, VIEWERS)))
                .order_by(Job.id.desc())
            )
        )
        units = {u.id: u for u in db.scalars(select(OrgUnit))}
        return render_template("jobs/index.html", jobs=jobs, units=units, may_edit=_may_edit(actor))


@bp.route("/new", methods=["GET", "POST"])
@requires(*EDITORS)
def new() -> Any:
    actor = current_actor()
    store = appliance_store.store
    if request.method == "GET":
        with store.session() as db:
            units = units_in_scope(db, actor)
            form = JobForm(org_unit_id=str(units[-1].id) if len(units) == 1 else "")
            return _render_form(db, actor, form, None)
    form = JobForm.from_request(request.form)
    try:
        form.questions = _question_rows(request.form)
    except FormError as exc:
        with store.session() as db:
            return _render_form(db, actor, form, None, str(exc), 400)
    with store.session() as db:
        try:
            unit, template = _check_job(db, actor, form)
            competencies = _competencies(form, template)
            if request.form.get("action") == "suggest":
                picked = suggester.pick(_suggestions(db, actor, form.profile(competencies)))
                form.questions = [QuestionRow.of(s) for s in picked]
                return _render_form(db, actor, form, None)
            job = _create_job(db, actor, form, unit, template, competencies)
            db.flush()
        except FormError as exc:
            db.rollback()
            return _render_form(db, actor, form, None, str(exc), 400)
        job_id = job.id
        db.commit()
    audit.record(store, actor, "job.create", f"jobs:{job_id}", PURPOSE, fields=_JOB_FIELDS)
    return redirect(url_for("jobs.detail", job_id=job_id), 303)


_JOB_FIELDS = (
    "jobs.title",
    "jobs.org_unit_id",
    "jobs.description",
    "jobs.requirements",
    "jobs.competencies",
    "jobs.status",
    "jobs.scoring_template_id",
    "interview_questions",
)


def _create_job(
    db: Session,
    actor: Actor,
    form: JobForm,
    unit: OrgUnit,
    template: ScoringTemplate | None,
    competencies: list[str],
) -> Job:
    if template is None:
        template = _default_template(_("%(title)s 评分模板", title=form.title), unit.id)
        db.add(template)
    job = Job(
        org_unit_id=unit.id,
        title=form.title,
        description=form.description,
        requirements=form.requirements(),
        competencies=competencies,
        status=JobStatus(form.status),
        scoring_template=template,
        created_by_id=actor.user_id,
    )
    rows = form.questions or [
        QuestionRow.of(s)
        for s in suggester.pick(
            _suggestions(db, actor, form.profile(competencies)), PREFILLED_SUGGESTIONS
        )
    ]
    plan = InterviewPlan(name="AI 视频面试（第一轮）", mode="async", round_no=1)
    _apply_questions(db, plan, rows)
    job.plans.append(plan)
    db.add(job)
    return job


@bp.get("/<int:job_id>")
@requires(*VIEWERS)
def detail(job_id: int) -> Any:
    actor = current_actor()
    with appliance_store.store.session() as db:
        job = _job_or_404(db, actor, job_id, VIEWERS)
        editable = _may_edit(actor) and job.org_unit_id in set(
            db.scalars(_unit_ids(actor, EDITORS))
        )
        suggestions: list[suggester.Suggestion] = []
        terms: dict[str, float] = {}
        if editable:
            profile = JobForm.of_job(job).profile(job.competencies or [])
            terms = suggester.job_terms(profile)
            asked = {q.text for p in job.plans for q in p.questions}
            suggestions = [s for s in _suggestions(db, actor, profile) if s.text not in asked]
        return render_template(
            "jobs/detail.html",
            job=job,
            unit=db.get(OrgUnit, job.org_unit_id),
            plan=_first_plan(job),
            editable=editable,
            suggestions=suggestions,
            terms=terms,
        )


@bp.route("/<int:job_id>/edit", methods=["GET", "POST"])
@requires(*EDITORS)
def edit(job_id: int) -> Any:
    actor = current_actor()
    store = appliance_store.store
    if request.method == "GET":
        with store.session() as db:
            job = _job_or_404(db, actor, job_id, EDITORS)
            return _render_form(db, actor, JobForm.of_job(job), job)
    form = JobForm.from_request(request.form)
    with store.session() as db:
        job = _job_or_404(db, actor, job_id, EDITORS)
        try:
            form.questions = _question_rows(request.form)
            unit, template = _check_job(db, actor, form)
            changed = _update_job(db, job, actor, form, unit, template)
            db.flush()
        except FormError as exc:
            db.rollback()
            job = _job_or_404(db, actor, job_id, EDITORS)
            return _render_form(db, actor, form, job, str(exc), 400)
        db.commit()
    audit.record(store, actor, "job.update", f"jobs:{job_id}", PURPOSE, fields=changed)
    return redirect(url_for("jobs.detail", job_id=job_id), 303)


def _update_job(
    db: Session,
    job: Job,
    actor: Actor,
    form: JobForm,
    unit: OrgUnit,
    template: ScoringTemplate | None,
) -> list[str]:
    """Apply the form; the names of the fields that changed (for the audit event)."""
    if template is None:
        template = _default_template(_("%(title)s 评分模板", title=form.title), unit.id)
        db.add(template)
        db.flush()
    before = JobForm.of_job(job)
    new_values: dict[str, Any] = {
        "title": form.title,
        "org_unit_id": unit.id,
        "description": form.description,
        "requirements": form.requirements(job.requirements),
        "competencies": _competencies(form, template),
        "status": JobStatus(form.status),
        "scoring_template_id": template.id,
    }
    changed = [f"jobs.{k}" for k, v in new_values.items() if getattr(job, k) != v]
    for key, value in new_values.items():
        setattr(job, key, value)
    plan = _first_plan(job)
    if plan is None:
        plan = InterviewPlan(name="AI 视频面试（第一轮）", mode="async", round_no=1)
        job.plans.append(plan)
    if [_row_key(r) for r in before.questions] != [_row_key(r) for r in form.questions if r.text]:
        changed.append("interview_questions")
    _apply_questions(db, plan, form.questions)
    job.updated_at, job.updated_by_id = utcnow(), actor.user_id
    return changed


def _row_key(row: QuestionRow) -> tuple[Any, ...]:
    return (row.id, row.text, row.competency, row.think_seconds, row.answer_seconds, row.retakes)


@bp.post("/<int:job_id>/questions")
@requires(*EDITORS)
def add_question(job_id: int) -> Any:
    """Add one question (a suggestion or a bank question) to the job's interview."""
    actor = current_actor()
    store = appliance_store.store
    with store.session() as db:
        job = _job_or_404(db, actor, job_id, EDITORS)
        try:
            rows = _question_rows(request.form)
            if not rows or not rows[0].text:
                raise FormError(_("请填写问题内容。"))
            plan = _first_plan(job)
            if plan is None:
                plan = InterviewPlan(name="AI 视频面试（第一轮）", mode="async", round_no=1)
                job.plans.append(plan)
            rows[0].id = None
            _apply_questions(db, plan, [*(_row_of(q) for q in plan.questions), rows[0]])
        except FormError as exc:
            db.rollback()
            abort(400, description=str(exc))
        job.updated_at, job.updated_by_id = utcnow(), actor.user_id
        db.commit()
    audit.record(
        store, actor, "job.update", f"jobs:{job_id}", PURPOSE, fields=["interview_questions"]
    )
    return redirect(url_for("jobs.detail", job_id=job_id, _anchor="questions"), 303)


# --- scoring templates ----------------------------------------------------------------


@dataclass
class DimensionRow:
    name: str
    percent: str
    rubric: str
    id: int | None = None


def _dimension_rows(form: Any) -> list[DimensionRow]:
    names, weights = form.getlist("d_name"), form.getlist("d_weight")
    rubrics, ids = form.getlist("d_rubric"), form.getlist("d_id")
    rows = []
    for i, name in enumerate(names):
        weight = weights[i].strip() if i < len(weights) else ""
        rubric = rubrics[i] if i < len(rubrics) else ""
        did = ids[i].strip() if i < len(ids) else ""
        if name.strip() or weight or rubric.strip():
            rows.append(
                DimensionRow(name.strip(), weight, rubric, int(did) if did.isdigit() else None)
            )
    return rows


def _percents(rows: Sequence[DimensionRow]) -> list[float]:
    """Weights as percent; accepts 25, 25% or fractions that add up to 1 (0.25)."""
    values = []
    for row in rows:
        text = row.percent.rstrip("%％ ").strip()
        try:
            value = float(text)
        except ValueError:
            raise FormError(_("维度「%(name)s」的权重不是数字。", name=row.name)) from None
        if value <= 0:
            raise FormError(_("维度「%(name)s」的权重必须大于 0。", name=row.name))
        values.append(value)
    if values and all(v <= 1 for v in values) and abs(sum(values) - 1) < 1e-6:
        values = [v * 100 for v in values]
    total = round(sum(values), 4)
    if abs(total - 100) > 0.01:
        raise FormError(_("各维度权重之和必须为 100%%，现在是 %(total)s%%。", total=f"{total:g}"))
    return values


def _rubric(row: DimensionRow) -> list[tuple[int, str]]:
    lines = []
    for raw in row.rubric.splitlines():
        if not raw.strip():
            continue
        match = _RUBRIC_LINE.match(raw)
        if match is None:
            raise FormError(
                _("维度「%(name)s」的评分标准每行写作「分数: 描述」，分数为 1-5。", name=row.name)
            )
        lines.append((int(match.group(1)), match.group(2).strip()))
    if not lines:
        raise FormError(_("维度「%(name)s」至少需要一条评分标准。", name=row.name))
    return sorted(lines)


@dataclass
class CheckedTemplate:
    name: str
    org_unit_id: int | None
    dimensions: list[tuple[DimensionRow, float, list[tuple[int, str]]]]


def _check_template(db: Session, actor: Actor, form: Any) -> CheckedTemplate:
    name = (form.get("name") or "").strip()
    if not name:
        raise FormError(_("请填写模板名称。"))
    owner = (form.get("org_unit_id") or "").strip()
    if not owner:
        if not _hospital_wide_editor(actor):
            raise FormError(_("只有人事管理员可以建全院通用的模板，请选择科室。"))
        unit_id = None
    else:
        allowed = {u.id for u in units_in_scope(db, actor)}
        unit_id = int(owner) if owner.isdigit() else -1
        if unit_id not in allowed:
            raise FormError(_("未知的科室，或您无权在该科室下建模板。"))
    rows = _dimension_rows(form)
    if not rows:
        raise FormError(_("评分模板至少需要一个维度。"))
    if any(not r.name for r in rows):
        raise FormError(_("每个维度都需要名称。"))
    if len({r.name for r in rows}) != len(rows):
        raise FormError(_("维度名称不能重复。"))
    percents = _percents(rows)
    return CheckedTemplate(
        name, unit_id, [(r, p, _rubric(r)) for r, p in zip(rows, percents, strict=True)]
    )


def _apply_template(template: ScoringTemplate, checked: CheckedTemplate) -> None:
    """Dimensions updated in place by id (score reports name them), others added or dropped."""
    template.name, template.org_unit_id = checked.name, checked.org_unit_id
    existing = {d.id: d for d in template.dimensions}
    dims = []
    for position, (row, percent, lines) in enumerate(checked.dimensions):
        dim = existing.get(row.id) if row.id is not None else None
        if dim is None:
            dim = ScoringDimension()
        dim.name, dim.weight, dim.position = row.name, round(percent / 100, 6), position
        dim.rubric = [RubricLine(score=s, text=t) for s, t in lines]
        dims.append(dim)
    template.dimensions = dims


def _template_form_rows(template: ScoringTemplate | None) -> list[DimensionRow]:
    if template is None:
        return [
            DimensionRow(n, str(p), "\n".join(f"{s}: {t}" for s, t in lines))
            for n, p, lines in DEFAULT_DIMENSIONS
        ]
    return [
        DimensionRow(
            d.name,
            f"{d.weight * 100:g}",
            "\n".join(f"{r.score}: {r.text}" for r in d.rubric),
            d.id,
        )
        for d in template.dimensions
    ]


def _render_template_form(
    db: Session,
    actor: Actor,
    template: ScoringTemplate | None,
    name: str,
    owner: str,
    rows: list[DimensionRow],
    error: str | None = None,
    status: int = 200,
) -> Any:
    page = render_template(
        "jobs/template_form.html",
        template=template,
        name=name,
        owner=owner,
        rows=[*rows, DimensionRow("", "", "")],
        units=units_in_scope(db, actor),
        hospital_wide=_hospital_wide_editor(actor),
        error=error,
    )
    return page, status


@bp.get("/templates")
@requires(*EDITORS)
def templates() -> Any:
    actor = current_actor()
    with appliance_store.store.session() as db:
        rows = list(
            db.scalars(
                select(ScoringTemplate)
                .where(_owned_clause(ScoringTemplate.org_unit_id, actor, EDITORS, editing=False))
                .order_by(ScoringTemplate.id)
            )
        )
        editable = {
            t.id
            for t in db.scalars(
                select(ScoringTemplate).where(
                    _owned_clause(ScoringTemplate.org_unit_id, actor, EDITORS, editing=True)
                )
            )
        }
        units = {u.id: u for u in db.scalars(select(OrgUnit))}
        return render_template(
            "jobs/templates.html", templates=rows, editable=editable, units=units
        )


@bp.route("/templates/new", methods=["GET", "POST"])
@requires(*EDITORS)
def new_template() -> Any:
    actor = current_actor()
    store = appliance_store.store
    if request.method == "GET":
        with store.session() as db:
            units = units_in_scope(db, actor)
            owner = "" if _hospital_wide_editor(actor) else str(units[0].id) if units else ""
            return _render_template_form(db, actor, None, "", owner, _template_form_rows(None))
    with store.transaction() as db:
        try:
            checked = _check_template(db, actor, request.form)
        except FormError as exc:
            return _render_template_form(
                db,
                actor,
                None,
                request.form.get("name", ""),
                request.form.get("org_unit_id", ""),
                _dimension_rows(request.form),
                str(exc),
                400,
            )
        template = ScoringTemplate(name=checked.name)
        _apply_template(template, checked)
        db.add(template)
        db.flush()
        template_id = template.id
    audit.record(
        store, actor, "scoring_template.create", f"scoring_templates:{template_id}", PURPOSE
    )
    return redirect(url_for("jobs.templates"), 303)


@bp.route("/templates/<int:template_id>/edit", methods=["GET", "POST"])
@requires(*EDITORS)
def edit_template(template_id: int) -> Any:
    actor = current_actor()
    store = appliance_store.store
    with store.transaction() as db:
        template = _template_in_scope(db, actor, str(template_id), editing=True)
        if template is None:
            audit.record(
                store,
                actor,
                "scoring_template.open",
                f"scoring_templates:{template_id}",
                PURPOSE,
                "denied",
            )
            abort(404)
        owner = str(template.org_unit_id or "")
        if request.method == "GET":
            return _render_template_form(
                db, actor, template, template.name, owner, _template_form_rows(template)
            )
        try:
            checked = _check_template(db, actor, request.form)
        except FormError as exc:
            return _render_template_form(
                db,
                actor,
                template,
                request.form.get("name", ""),
                request.form.get("org_unit_id", ""),
                _dimension_rows(request.form),
                str(exc),
                400,
            )
        _apply_template(template, checked)
        template.updated_at = utcnow()
    audit.record(
        store, actor, "scoring_template.update", f"scoring_templates:{template_id}", PURPOSE
    )
    return redirect(url_for("jobs.templates"), 303)


# --- question bank --------------------------------------------------------------------


def _check_bank_question(db: Session, actor: Actor, form: Any) -> dict[str, Any]:
    competency = (form.get("competency") or "").strip()
    text = (form.get("text") or "").strip()
    if not competency:
        raise FormError(_("请填写考察的能力（如 沟通能力）。"))
    if not text:
        raise FormError(_("请填写问题内容。"))
    owner = (form.get("org_unit_id") or "").strip()
    if not owner:
        if not _hospital_wide_editor(actor):
            raise FormError(_("只有人事管理员可以建全院通用的题目，请选择科室。"))
        unit_id = None
    else:
        unit_id = int(owner) if owner.isdigit() else -1
        if unit_id not in {u.id for u in units_in_scope(db, actor)}:
            raise FormError(_("未知的科室，或您无权在该科室下建题目。"))
    answer = _int(form.get("answer_seconds"), _("作答时间"), 120, MAX_SECONDS)
    if answer == 0:
        raise FormError(_("作答时间必须大于 0 秒。"))
    return {
        "competency": competency[:120],
        "text": text,
        "keywords": _split(form.get("keywords") or ""),
        "think_seconds": _int(form.get("think_seconds"), _("思考时间"), 30, MAX_SECONDS),
        "answer_seconds": answer,
        "retakes": _int(form.get("retakes"), _("重答次数"), 1, MAX_RETAKES),
        "org_unit_id": unit_id,
    }


def _render_bank(
    db: Session, actor: Actor, error: str | None = None, status: int = 200, typed: Any = None
) -> Any:
    rows = list(
        db.scalars(
            select(BankQuestion)
            .where(
                BankQuestion.active.is_(True),
                _owned_clause(BankQuestion.org_unit_id, actor, EDITORS, editing=False),
            )
            .order_by(BankQuestion.competency, BankQuestion.id)
        )
    )
    wanted = request.args.get("competency", "")
    groups: dict[str, list[BankQuestion]] = {}
    for row in rows:
        if not wanted or row.competency == wanted:
            groups.setdefault(row.competency, []).append(row)
    editable = {
        r.id
        for r in db.scalars(
            select(BankQuestion).where(
                _owned_clause(BankQuestion.org_unit_id, actor, EDITORS, editing=True)
            )
        )
    }
    page = render_template(
        "jobs/bank.html",
        groups=groups,
        competencies=sorted({r.competency for r in rows}),
        wanted=wanted,
        editable=editable,
        units=units_in_scope(db, actor),
        hospital_wide=_hospital_wide_editor(actor),
        typed=typed or {},
        error=error,
    )
    return page, status


@bp.get("/bank")
@requires(*EDITORS)
def bank() -> Any:
    actor = current_actor()
    with appliance_store.store.session() as db:
        return _render_bank(db, actor)


@bp.post("/bank")
@requires(*EDITORS)
def add_bank_question() -> Any:
    actor = current_actor()
    store = appliance_store.store
    with store.transaction() as db:
        try:
            values = _check_bank_question(db, actor, request.form)
        except FormError as exc:
            return _render_bank(db, actor, str(exc), 400, request.form)
        row = BankQuestion(created_by_id=actor.user_id, **values)
        db.add(row)
        db.flush()
        row_id = row.id
    audit.record(store, actor, "question_bank.create", f"question_bank:{row_id}", PURPOSE)
    return redirect(url_for("jobs.bank"), 303)


def _bank_question_or_404(db: Session, actor: Actor, question_id: int) -> BankQuestion:
    row = db.scalars(
        select(BankQuestion).where(
            BankQuestion.id == question_id,
            _owned_clause(BankQuestion.org_unit_id, actor, EDITORS, editing=True),
        )
    ).first()
    if row is None:
        audit.record(
            appliance_store.store,
            actor,
            "question_bank.open",
            f"question_bank:{question_id}",
            PURPOSE,
            "denied",
        )
        abort(404)
    return row


@bp.route("/bank/<int:question_id>/edit", methods=["GET", "POST"])
@requires(*EDITORS)
def edit_bank_question(question_id: int) -> Any:
    actor = current_actor()
    store = appliance_store.store
    with store.transaction() as db:
        row = _bank_question_or_404(db, actor, question_id)
        error = None
        if request.method == "POST":
            try:
                values = _check_bank_question(db, actor, request.form)
            except FormError as exc:
                error = str(exc)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        if request.method == "GET" or error is not None:
            page = render_template(
                "jobs/bank_form.html",
                row=row,
                units=units_in_scope(db, actor),
                hospital_wide=_hospital_wide_editor(actor),
                typed=request.form if error else None,
                error=error,
            )
            return page, 400 if error else 200
    audit.record(store, actor, "question_bank.update", f"question_bank:{question_id}", PURPOSE)
    return redirect(url_for("jobs.bank"), 303)


@bp.post("/bank/<int:question_id>/retire")
@requires(*EDITORS)
def retire_bank_question(question_id: int) -> Any:
    """Retired, not deleted: interview questions taken from it keep their link."""
    actor = current_actor()
    store = appliance_store.store
    with store.transaction() as db:
        _bank_question_or_404(db, actor, question_id).active = False
    audit.record(store, actor, "question_bank.retire", f"question_bank:{question_id}", PURPOSE)
    return redirect(url_for("jobs.bank"), 303)


@bp.app_template_filter("reason_text")
def reason_text(reason: dict[str, Any]) -> str:
    """One suggestion reason in the reader's language (kinds: workers/questions.py)."""
    terms = "、".join(reason.get("terms") or [])
    kind = reason.get("kind")
    if kind == "competency":
        return _("考察能力：%(terms)s", terms=terms)
    if kind == "keywords":
        return _("与职位关键词匹配：%(terms)s", terms=terms)
    if kind == "licence":
        return _("根据执业资格要求：%(terms)s", terms=terms)
    if kind == "professional_title":
        return _("根据职称要求：%(terms)s", terms=terms)
    if kind == "years":
        return _("根据工作年限要求：%(terms)s 年", terms=terms)
    if kind == "competency_template":
        return _("题库中没有「%(terms)s」的匹配题目，按模板生成", terms=terms)
    return terms


@bp.app_template_filter("job_status")
def job_status(status: JobStatus | str) -> str:
    value = status.value if isinstance(status, JobStatus) else str(status)
    labels = {"draft": _("草稿"), "open": _("招聘中"), "closed": _("已关闭")}
    return labels.get(value, value)


@bp.app_template_filter("question_source")
def question_source(source: str) -> str:
    labels = {"manual": _("手动填写"), "bank": _("来自题库"), "suggested": _("系统建议")}
    return labels.get(source, source)
