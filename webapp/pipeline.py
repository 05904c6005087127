"""The pipeline (issue 6, item 3): a board per job, bulk decisions, adding and importing
candidates, and merging duplicates. HR and HR admins only; every personal field through
the gate, every decision by a named person with a reason (`compliance.decisions`).

Uploads stay in memory. Werkzeug spools an upload over 500 KB to a temporary file on
disk; a candidate list or a resume is personal data, which must never sit on disk
unencrypted (ARCHITECTURE.md). `InMemoryUploadRequest` (installed as the app's request
class when this blueprint is registered) keeps every uploaded file in a `BytesIO`, and
caps the body per route *before* reading it (`UPLOAD_LIMITS`): a candidate list may be
10 MB (`workers.candidate_import.MAX_SHEET_BYTES`), the import page's whole body (list
plus resumes) 32 MB, the add-one page's (one resume) 21 MB. A larger body is refused
with 413 and a page that says so in Chinese or English; nothing is read or written.

Routes (ids only in URLs, never personal data):
    GET       /jobs/<job_id>/board               pipeline.board
    POST      /jobs/<job_id>/board/move          pipeline.move (application*, to_stage, reason)
    POST      /jobs/<job_id>/board/invite        pipeline.invite (application*) -> 303 to
              /invitations/new?application=<id>&application=<id>...
    GET/POST  /jobs/<job_id>/import              pipeline.import_candidates (file, resumes*)
    GET/POST  /jobs/<job_id>/candidates/new      pipeline.new_candidate
              (name, phone, email, source, referrer, resume)
    GET       /candidates/duplicates             pipeline.duplicates
    POST      /candidates/merge                  pipeline.merge (survivor, merged, reason)
"""

from __future__ import annotations

import io
from typing import IO, Any

from flask import (
    Blueprint,
    Request,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException

from appliance.records import (
    Application,
    Candidate,
    ImportStatus,
    Job,
    MergeReason,
    OrgUnit,
    Role,
    Stage,
)
from compliance.actors import Actor
from compliance.decisions import (
    DecisionRefused,
    NewCandidate,
    create_candidates,
    duplicate_pairs,
    merge_candidates,
    move_stage,
)
from compliance.gate import AccessDenied, Gate
from webapp import N_
from webapp.api import answer_denied, gate, no_store, request_actor, request_purpose
from webapp.auth import requires
from webapp.errors import wants_json_response
from webapp.extensions import appliance_store
from workers import candidate_import
from workers.candidate_import import ImportRejected, RowProblem, import_sheet, read_sheet
from workers.resumes.limits import DEFAULT_LIMITS

bp = Blueprint("pipeline", __name__)

MB = 1024 * 1024
UPLOAD_LIMITS = {
    "pipeline.import_candidates": 32 * MB,
    "pipeline.new_candidate": DEFAULT_LIMITS.max_bytes + MB,
}
"""Whole request body, per endpoint (the app's MAX_CONTENT_LENGTH, 64 MB, for the rest)."""
STAFF = (Role.HR, Role.HR_ADMIN)
BOARD_FIELDS = ("candidates.name",)
DUPLICATE_FIELDS = ("candidates.name", "candidates.phone", "candidates.email")


class InMemoryUploadRequest(Request):
    """Flask's request, with uploads in memory and a body limit per endpoint (see above)."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()

    @property
    def max_content_length(self) -> int | None:
        if self._max_content_length is not None:
            return self._max_content_length
        endpoint = self.url_rule.endpoint if self.url_rule is not None else None
        if endpoint in UPLOAD_LIMITS:
            return UPLOAD_LIMITS[endpoint]
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value


@bp.record_once
def _keep_uploads_in_memory(state: Any) -> None:
    state.app.request_class = InMemoryUploadRequest


# --- messages (msgids are the Chinese text; N_ marks them for the catalog) -------------------

STAGE_LABELS = {
    Stage.APPLIED: N_("已申请"),
    Stage.SCREENED: N_("已筛选"),
    Stage.INVITED: N_("已邀请"),
    Stage.INTERVIEWED: N_("已面试"),
    Stage.REVIEWED: N_("已评审"),
    Stage.OFFER: N_("录用意向"),
    Stage.HIRED: N_("已录用"),
    Stage.REJECTED: N_("未通过"),
}
COLUMN_LABELS = {
    "name": N_("姓名"),
    "phone": N_("手机"),
    "email": N_("邮箱"),
    "source": N_("来源"),
    "referrer": N_("推荐人"),
    "resume": N_("简历"),
    "": N_("整个文件"),
}
MERGE_LABELS = {
    MergeReason.SAME_PHONE: N_("手机号相同"),
    MergeReason.SAME_EMAIL: N_("邮箱相同"),
    MergeReason.SAME_PERSON: N_("确认为同一人"),
}
FILE_PROBLEMS = {
    "too_large": N_("名单文件太大：最多 10 MB。"),
    "not_a_spreadsheet": N_("无法读取该文件：请上传 CSV 或 Excel（.xlsx）文件。"),
    "old_excel": N_("不支持旧版 Excel（.xls）文件：请在 Excel 中另存为 .xlsx 或 CSV 后重试。"),
    "bad_file": N_("文件已损坏，或不是有效的 Excel（.xlsx）/CSV 文件。"),
    "empty": N_("文件中没有候选人数据。"),
    "missing_columns": N_("缺少必需的列：%(columns)s。第一行应是列名，例如：姓名、手机、邮箱。"),
    "too_many_rows": N_("行数过多：一次最多导入 5000 行。"),
    "too_many_columns": N_("列数过多：最多 50 列。"),
    "no_file": N_("请选择要上传的名单文件（CSV 或 .xlsx）。"),
}
PROBLEMS = {
    "missing_name": N_("缺少姓名"),
    "bad_phone": N_("手机号格式不正确（应为 11 位中国大陆手机号）"),
    "bad_email": N_("邮箱格式不正确"),
    "no_contact": N_("手机号和邮箱至少填写一项"),
    "too_long": N_("内容过长（最多 200 个字符）"),
    "duplicate_row": N_("与第 %(other)s 行是同一人（手机号或邮箱相同）"),
    "unknown_resume": N_("该行指定的简历文件没有随名单一起上传"),
    "resume_too_large": N_("简历文件太大（最多 20 MB）"),
    "duplicate_in_request": N_("名单中有重复的人"),
}
DECISION_PROBLEMS = {
    "no_reason": N_("请填写理由：每个决定都需要理由。"),
    "reason_too_long": N_("理由太长：最多 2000 个字。"),
    "no_actor": N_("只有署名的工作人员可以做决定。"),
    "no_selection": N_("请至少选择一位候选人。"),
    "bad_stage": N_("请选择目标阶段。"),
    "same_record": N_("不能把一条记录与它自己合并。"),
    "no_contact": N_("请填写姓名，并至少填写手机号或邮箱之一。"),
    "duplicate_in_request": N_("名单中有重复的人。"),
    "conflict": N_("这两条记录无法自动合并，请联系管理员。"),
    "bad_phone": N_("手机号格式不正确（应为 11 位中国大陆手机号）"),
    "bad_email": N_("邮箱格式不正确"),
    "too_long": N_("内容过长（最多 200 个字符）"),
}


FALLBACK = N_("无法完成此操作。")


def problem_text(problem: RowProblem) -> str:
    template = PROBLEMS.get(problem.problem) or DECISION_PROBLEMS.get(problem.problem)
    return _(template or FALLBACK, other=problem.other or "")


def decision_text(code: str) -> str:
    """A refusal's code (compliance.decisions, workers.candidate_import) in the user's language."""
    return _(DECISION_PROBLEMS.get(code) or PROBLEMS.get(code) or FALLBACK, other="")


def file_problem_text(exc: ImportRejected) -> str:
    columns = "、".join(_(COLUMN_LABELS[c]) for c in exc.columns)
    template = FILE_PROBLEMS.get(exc.code) or FILE_PROBLEMS["bad_file"]
    return _(template, columns=columns)


# --- helpers ---------------------------------------------------------------------------------


def _job_or_404(db: Session, actor: Actor, job_id: int) -> Job:
    """The job, if its department lies in the subtree of one of the actor's HR roles."""
    job = db.get(Job, job_id)
    unit = db.get(OrgUnit, job.org_unit_id) if job is not None else None
    if job is None or unit is None:
        abort(404)
    paths = [g.org_path for g in actor.grants if g.role in STAFF]
    if not any(unit.path.startswith(path) for path in paths):
        abort(404)  # another department's job: not even its existence (like the gate)
    return job


def _context(job_id: int) -> tuple[Actor, Gate, str]:
    actor, the_gate = request_actor(), gate()
    return actor, the_gate, request_purpose(the_gate, actor)


def _ids(name: str) -> list[int]:
    ids = []
    for value in request.form.getlist(name):
        if not value.isdigit():
            abort(400, _("所选的申请无效。"))
        ids.append(int(value))
    return ids


def _board_rows(
    the_gate: Gate, actor: Actor, db: Session, job_id: int, purpose: str
) -> dict[Stage, list[dict[str, Any]]]:
    scope = the_gate.scope(actor, Application, "view", purpose)
    apps = list(
        db.scalars(
            select(Application).where(Application.job_id == job_id, scope).order_by(Application.id)
        )
    )
    people = {a.candidate_id: a.candidate for a in apps}
    shown = the_gate.view_many(actor, list(people.values()), purpose, BOARD_FIELDS, "list")
    names = {s.id: s.get("name") for s in shown}
    columns: dict[Stage, list[dict[str, Any]]] = {stage: [] for stage in Stage}
    for app in apps:
        columns[app.stage].append(
            {"id": app.id, "candidate_id": app.candidate_id, "name": names.get(app.candidate_id)}
        )
    return columns


def _render_board(job_id: int, error: str | None = None, status: int = 200) -> Any:
    actor, the_gate, purpose = _context(job_id)
    with appliance_store.store.session() as db:
        job = _job_or_404(db, actor, job_id)
        columns = _board_rows(the_gate, actor, db, job_id, purpose)
        page = render_template(
            "pipeline/board.html",
            job=job,
            columns=columns,
            stage_labels=STAGE_LABELS,
            purpose=purpose,
            error=error,
            moved=request.args.get("moved", type=int),
        )
    return no_store(current_app.make_response((page, status)))


# --- the board and bulk decisions ------------------------------------------------------------


@bp.get("/jobs/<int:job_id>/board")
@requires(*STAFF)
def board(job_id: int) -> Any:
    return _render_board(job_id)


@bp.post("/jobs/<int:job_id>/board/move")
@requires(*STAFF)
def move(job_id: int) -> Any:
    """Move the ticked applications to one stage, with one reason: all or none."""
    actor, the_gate, purpose = _context(job_id)
    with appliance_store.store.session() as db:
        _job_or_404(db, actor, job_id)
        ids = _ids("application")
        on_job = set(
            db.scalars(
                select(Application.id).where(Application.id.in_(ids), Application.job_id == job_id)
            )
        )
    if on_job != set(ids):
        abort(404)
    try:
        changes = move_stage(
            appliance_store.store,
            the_gate,
            actor,
            ids,
            request.form.get("to_stage", ""),
            request.form.get("reason"),
            purpose,
        )
    except DecisionRefused as exc:
        return _render_board(job_id, decision_text(exc.code), 400)
    except AccessDenied as exc:
        return answer_denied(exc)
    return redirect(url_for("pipeline.board", job_id=job_id, moved=len(changes)), code=303)


@bp.post("/jobs/<int:job_id>/board/invite")
@requires(*STAFF)
def invite(job_id: int) -> Any:
    """On to the invitation page with the ticked applications (ids only in its URL)."""
    actor, _gate, _purpose = _context(job_id)
    ids = _ids("application")
    if not ids:
        return _render_board(job_id, decision_text("no_selection"), 400)
    with appliance_store.store.session() as db:
        _job_or_404(db, actor, job_id)
    if "invitations.new" in current_app.view_functions:
        target = url_for("invitations.new", application=ids)
    else:
        target = "/invitations/new?" + "&".join(f"application={i}" for i in ids)
    return redirect(target, code=303)


# --- import ----------------------------------------------------------------------------------


def _file_bytes(upload: FileStorage | None) -> bytes:
    if upload is None:
        return b""
    return upload.stream.read()


def _render_import(job: Job, status: int = 200, **context: Any) -> Any:
    page = render_template(
        "pipeline/import.html",
        job=job,
        columns=COLUMN_LABELS,
        max_sheet_mb=candidate_import.MAX_SHEET_BYTES // MB,
        max_body_mb=UPLOAD_LIMITS["pipeline.import_candidates"] // MB,
        problem_text=problem_text,
        **context,
    )
    return no_store(current_app.make_response((page, status)))


@bp.route("/jobs/<int:job_id>/import", methods=["GET", "POST"])
@requires(*STAFF)
def import_candidates(job_id: int) -> Any:
    """Upload a CSV/.xlsx list (and resumes it names): checked whole, imported whole."""
    actor, the_gate, purpose = _context(job_id)
    with appliance_store.store.session() as db:
        job = _job_or_404(db, actor, job_id)
        db.expunge(job)
    if request.method == "GET":
        return _render_import(job)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _render_import(job, 400, error=file_problem_text(ImportRejected("no_file")))
    try:
        sheet = read_sheet(_file_bytes(upload), upload.filename)
    except ImportRejected as exc:
        return _render_import(job, 400, error=file_problem_text(exc))
    resumes = {f.filename: _file_bytes(f) for f in request.files.getlist("resumes") if f.filename}
    try:
        outcome = import_sheet(
            appliance_store.store, the_gate, actor, job_id, sheet, purpose, resumes, _redis()
        )
    except AccessDenied as exc:
        return answer_denied(exc)
    if outcome.status is ImportStatus.REJECTED:
        return _render_import(job, 400, outcome=outcome)
    return _render_import(job, 200, outcome=outcome)


def _redis() -> Any:
    try:
        return appliance_store.redis
    except KeyError:
        return None


# --- add one ---------------------------------------------------------------------------------


def _person_from_form() -> tuple[NewCandidate, dict[str, str]]:
    form = {
        k: (request.form.get(k) or "").strip()
        for k in ("name", "phone", "email", "source", "referrer")
    }
    return (
        NewCandidate(
            name=form["name"],
            phone=candidate_import.clean_phone(form["phone"]) or None,
            email=form["email"] or None,
            source=form["source"] or "manual",
            referrer=form["referrer"] or None,
        ),
        form,
    )


def _check_person(person: NewCandidate) -> str | None:
    """The same checks as a row of an imported list (one rule for both ways in)."""
    sheet = candidate_import.Sheet("form")
    cells = [person.name, person.phone or "", person.email or "", "", "", ""]
    columns = {
        name: i for i, name in enumerate(("name", "phone", "email", "source", "referrer", "resume"))
    }
    candidate_import._add_row(sheet, 2, columns, cells)
    for value in (person.source, person.referrer):
        if value and len(value) > candidate_import.MAX_CELL:
            return decision_text("too_long")
    if sheet.problems:
        return "；".join(problem_text(p) for p in sheet.problems)
    return None


@bp.route("/jobs/<int:job_id>/candidates/new", methods=["GET", "POST"])
@requires(*STAFF)
def new_candidate(job_id: int) -> Any:
    actor, the_gate, purpose = _context(job_id)
    with appliance_store.store.session() as db:
        job = _job_or_404(db, actor, job_id)
        db.expunge(job)
    if request.method == "GET":
        return _render_new(job, {})
    person, form = _person_from_form()
    error = _check_person(person)
    resume = request.files.get("resume")
    data = _file_bytes(resume) if resume is not None and resume.filename else b""
    if error is None and len(data) > DEFAULT_LIMITS.max_bytes:
        error = decision_text("resume_too_large")
    if error is not None:
        return _render_new(job, form, error, 400)
    try:
        created = create_candidates(
            appliance_store.store, the_gate, actor, job_id, [person], purpose
        )
    except DecisionRefused as exc:
        return _render_new(job, form, decision_text(exc.code), 400)
    except AccessDenied as exc:
        return answer_denied(exc)
    if data:
        blob = appliance_store.store.blobs.put(created.subject_ids[0], [data])
        candidate_import.queue_resumes(appliance_store.store, _redis(), [blob])
    target = url_for("portal.candidate", candidate_id=created.candidate_ids[0], purpose=purpose)
    return redirect(target, code=303)


def _render_new(job: Job, form: dict[str, str], error: str | None = None, status: int = 200) -> Any:
    page = render_template("pipeline/new.html", job=job, form=form, error=error)
    return no_store(current_app.make_response((page, status)))


# --- duplicates and merges -------------------------------------------------------------------


@bp.get("/candidates/duplicates")
@requires(*STAFF)
def duplicates() -> Any:
    """Pairs of records in scope with the same phone or e-mail, side by side, to merge."""
    return _render_duplicates()


def _render_duplicates(error: str | None = None, status: int = 200) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        pairs = duplicate_pairs(the_gate, actor, db, purpose)
        ids = sorted({i for p in pairs for i in (p.first_id, p.second_id)})
        rows = list(
            db.scalars(select(Candidate).where(Candidate.id.in_(ids)).order_by(Candidate.id))
        )
        shown = {
            s.id: s for s in the_gate.view_many(actor, rows, purpose, DUPLICATE_FIELDS, "list")
        }
        page = render_template(
            "pipeline/duplicates.html",
            pairs=pairs,
            shown=shown,
            merge_labels=MERGE_LABELS,
            purpose=purpose,
            error=error,
            merged=request.args.get("merged", type=int),
        )
    return no_store(current_app.make_response((page, status)))


@bp.post("/candidates/merge")
@requires(*STAFF)
def merge() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    survivor, merged = request.form.get("survivor", ""), request.form.get("merged", "")
    reason = request.form.get("reason", "")
    if not (survivor.isdigit() and merged.isdigit()) or reason not in set(MergeReason):
        return _render_duplicates(_(N_("请选择要保留的记录和合并原因。")), 400)
    try:
        merge_candidates(
            appliance_store.store, the_gate, actor, int(survivor), int(merged), reason, purpose
        )
    except DecisionRefused as exc:
        return _render_duplicates(decision_text(exc.code), 400)
    except AccessDenied as exc:
        return answer_denied(exc)
    target = url_for("portal.candidate", candidate_id=int(survivor), purpose=purpose, merged=merged)
    return redirect(target, code=303)


# --- 413: a clear page, in the user's language -----------------------------------------------


@bp.app_errorhandler(413)
def too_large(exc: HTTPException) -> Any:
    """The body was over this page's limit: said plainly; nothing was read or stored."""
    endpoint = request.url_rule.endpoint if request.url_rule is not None else ""
    limit = UPLOAD_LIMITS.get(endpoint) or current_app.config.get("MAX_CONTENT_LENGTH") or 0
    message = _(
        "上传的内容太大：此页面最多接受 %(limit)s MB。没有导入或保存任何内容。",
        limit=limit // MB,
    )
    if wants_json_response():
        return {"error": "Request Entity Too Large", "message": message}, 413
    return render_template("pipeline/too_large.html", message=message), 413
