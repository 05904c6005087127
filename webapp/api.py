"""The JSON API (`/api/v1/...`) over personal data, and the one list of personal-data endpoints.

`ENDPOINTS` declares every portal and API endpoint that shows personal data: its
route, the policy action it needs and the personal fields it may show. Views take
their field set from it (a field not declared here is never opened), and
tests/webapp/test_permission_matrix.py enumerates it against the policy file and
checks it against the app's URL map, so a new endpoint or field cannot skip the
matrix.

Out-of-scope rows answer 404 (not 403): a 403 would tell an HR of the west branch
that candidate 42 exists in the east. 403 means the account's role may not do this
at all (admins and auditors on candidate data, a download nobody is granted).
Both are recorded as denied by the gate.

No personal data in URLs (ARCHITECTURE.md): searches by phone or e-mail are POSTs
with the value in the body, never a query string that lands in access logs.

For the hospital's other systems (issue 6, item 8) the API also lists applications,
interviews and scores (names and AI numbers through the gate), exports the list as
Excel, and serves requisitions from `jobs_bp` (no personal data, so outside ENDPOINTS,
but scoped by org subtree and refused like the rest). Query parameters are checked
(`id_arg`, `choice_arg`, `day_arg`): a bad one is a 400 with a message, an id beyond
SQLite's integers a 404, never a server error. `webapp.openapi` documents all of it.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, NoReturn

from flask import Blueprint, Response, abort, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import ColumnElement, Select, false, func, or_, select
from sqlalchemy.orm import Session, object_session
from werkzeug.exceptions import Forbidden, NotFound

from appliance.blobs import BlobReader
from appliance.recordings import MEDIA_TYPE as RTP_LOG
from appliance.recordings import to_playable
from appliance.records import (
    Answer,
    AnswerAnalysis,
    Application,
    Candidate,
    Comment,
    Evaluation,
    ExpressionSignals,
    FaceSignals,
    InterviewSession,
    Job,
    JobStatus,
    OrgUnit,
    Recording,
    Referral,
    ScoreOverride,
    ScoreReport,
    SessionStatus,
    Stage,
    User,
)
from appliance.settings import Settings
from compliance.actors import Actor
from compliance.gate import (
    MEDIA_FIELD,
    AccessDenied,
    Gate,
    NotInScope,
    Shown,
    table_of,
)
from compliance.overrides import OverrideRefused, effective_overrides, override_score
from compliance.policy import RowScope
from webapp.auth import current_actor, load_actor
from webapp.extensions import appliance_store

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@dataclass(frozen=True)
class Endpoint:
    name: str
    """Flask endpoint name (blueprint.view)."""
    rule: str
    method: str
    action: str
    """What the policy must allow: view, search, export, a media mode (stream, download), or
    update (a write: the field rule of every declared field must be write)."""
    entity: str
    """The table of the row the endpoint is about (or lists)."""
    fields: tuple[str, ...]
    """Every personal field (table.field) the endpoint may show; the gate decides how."""


CANDIDATE_FIELDS = tuple(
    f"candidates.{f}" for f in ("name", "phone", "email", "id_number", "address")
)
LIST_FIELDS = ("candidates.name", "candidates.phone", "candidates.email")
ONE_FIELDS = (*CANDIDATE_FIELDS, "comments.body", "referrals.note", "score_reports.report")
"""The candidate file; `score_reports.report` gives each interview's AI summary (issue #5)."""
EXPORT_FIELDS = CANDIDATE_FIELDS
INTERVIEW_FIELDS = (
    "candidates.name",
    "answers.transcript",
    "evaluations.notes",
    # What the local AI derived (issue #5). Not `face_signals.embedding`: the identity
    # embedding is biometric and no staff screen shows it (policy.yaml).
    "answer_analyses.signals",
    "face_signals.timeline",
    "expression_signals.signals",
    "score_reports.report",
    "score_overrides.reason",
)
REPORT_FIELDS = ("candidates.name", "score_reports.report", "score_overrides.reason")
"""The PDF of a score report: who it is about, the report, the overrides with reasons."""
EXPLANATION_FIELDS = ("score_reports.report", "score_overrides.reason")
"""The explanation a candidate can be given (PIPL Art. 24): the report, not the candidate file."""
OVERRIDE_FIELDS = ("score_overrides.reason",)
MEDIA_FIELDS = (MEDIA_FIELD,)
NAME_FIELDS = ("candidates.name",)
"""Applications and interviews list whose they are by name only: other systems match people
by their own records, and contact data stays with the candidate file."""
SCORE_FIELDS = ("candidates.name", "score_reports.report")
"""Scores: the AI report's numbers and summary; override reasons and evidence stay on
`/interviews/<id>` (the API gives the numbers, a person's reasons stay in the portal)."""


def _both(
    view: str, path: str, method: str, action: str, entity: str, fields: tuple[str, ...]
) -> tuple[Endpoint, Endpoint]:
    return (
        Endpoint(f"portal.{view}", f"/portal{path}", method, action, entity, fields),
        Endpoint(f"api.{view}", f"/api/v1{path}", method, action, entity, fields),
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    *_both("candidates", "/candidates", "GET", "view", "candidates", LIST_FIELDS),
    *_both("search_candidates", "/candidates/search", "POST", "search", "candidates", LIST_FIELDS),
    *_both("candidate", "/candidates/<int:candidate_id>", "GET", "view", "candidates", ONE_FIELDS),
    *_both(
        "export_candidates", "/candidates/export.csv", "GET", "export", "candidates", EXPORT_FIELDS
    ),
    *_both(
        "interview",
        "/interviews/<int:session_id>",
        "GET",
        "view",
        "interview_sessions",
        INTERVIEW_FIELDS,
    ),
    *_both(
        "score_report_pdf",
        "/interviews/<int:session_id>/report.pdf",
        "GET",
        "export",
        "score_reports",
        REPORT_FIELDS,
    ),
    *_both(
        "score_explanation",
        "/interviews/<int:session_id>/explanation",
        "GET",
        "view",
        "score_reports",
        EXPLANATION_FIELDS,
    ),
    *_both(
        "override_score",
        "/interviews/<int:session_id>/overrides",
        "POST",
        "update",
        "score_overrides",
        OVERRIDE_FIELDS,
    ),
    *_both(
        "stream_recording",
        "/recordings/<int:recording_id>/stream",
        "GET",
        "stream",
        "recordings",
        MEDIA_FIELDS,
    ),
    *_both(
        "download_recording",
        "/recordings/<int:recording_id>/download",
        "GET",
        "download",
        "recordings",
        MEDIA_FIELDS,
    ),
    # For the hospital's other systems (issue 6, item 8); the portal shows these on its own
    # pages (dashboard, pipeline board), so they are API-only here.
    Endpoint(
        "api.export_candidates_xlsx",
        "/api/v1/candidates/export.xlsx",
        "GET",
        "export",
        "candidates",
        EXPORT_FIELDS,
    ),
    Endpoint(
        "api.applications", "/api/v1/applications", "GET", "view", "applications", NAME_FIELDS
    ),
    Endpoint(
        "api.interviews", "/api/v1/interviews", "GET", "view", "interview_sessions", NAME_FIELDS
    ),
    Endpoint("api.scores", "/api/v1/scores", "GET", "view", "score_reports", SCORE_FIELDS),
)
BY_NAME = {e.name: e for e in ENDPOINTS}


def fields_of(endpoint: str) -> tuple[str, ...]:
    return BY_NAME[endpoint].fields


# --- shared by the portal and the API ---------------------------------------------------------

_PURPOSE = re.compile(r"[a-z_]{1,40}")


def request_actor() -> Actor:
    """Staff (signed in, second factor done) or a candidate through their token."""
    actor = load_actor()
    if actor is not None and actor.kind == "candidate":
        return actor
    return current_actor()


def gate() -> Gate:
    return Gate(appliance_store.store)


def request_purpose(the_gate: Gate, actor: Actor) -> str:
    """`?purpose=` (a policy purpose name, never personal data) or the actor's default."""
    given = request.args.get("purpose")
    if given is not None:
        if not _PURPOSE.fullmatch(given):
            abort(400, "purpose must be a purpose name from the policy")
        return given
    # An actor whose roles have no purpose at all is refused by the gate under this name.
    return the_gate.default_purpose(actor) or "unspecified"


def answer_denied(exc: AccessDenied) -> Any:
    """404 for a row outside scope, 403 for what the role may not do (the gate recorded it)."""
    error = NotFound() if isinstance(exc, NotInScope) else Forbidden()
    return current_app.handle_http_exception(error)


def no_store(response: Response) -> Response:
    """Personal data never sits in a browser or proxy cache."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def search_term() -> tuple[str, str]:
    """(phone or email, value) from a POST body: a form for the portal, JSON for the API."""
    data: Any = request.get_json(silent=True) if request.is_json else request.form
    data = data if isinstance(data, dict) or hasattr(data, "get") else {}
    for by in ("phone", "email"):
        value = data.get(by)
        if isinstance(value, str) and value.strip():
            return by, value.strip()
    abort(400, "give a phone number or an e-mail address to search for")


def candidate_file(
    the_gate: Gate, actor: Actor, db: Session, candidate_id: int, purpose: str, endpoint: str
) -> tuple[Shown, list[Shown], list[Shown], list[Application], list[dict[str, Any]]]:
    """One candidate with the comments and referrals about them and their interviews (with
    each one's AI summary where the role may read the report): one audit event.

    Related rows are queried through the gate's scope too, so an interviewer (who
    reaches the candidate through an assigned session) never pulls HR's comments in.
    """
    candidate = db.get(Candidate, candidate_id)
    if candidate is None:
        abort(404)
    fields = fields_of(endpoint)
    comments = _scoped(
        the_gate,
        actor,
        db,
        select(Comment)
        .join(Application, Comment.application_id == Application.id)
        .where(Application.candidate_id == candidate_id)
        .order_by(Comment.created_at, Comment.id),
        Comment,
        purpose,
    )
    referrals = _scoped(
        the_gate,
        actor,
        db,
        select(Referral).where(Referral.candidate_id == candidate_id).order_by(Referral.id),
        Referral,
        purpose,
    )
    applications = _scoped(
        the_gate,
        actor,
        db,
        select(Application)
        .where(Application.candidate_id == candidate_id)
        .order_by(Application.id),
        Application,
        purpose,
    )
    own = select(Application.id).where(Application.candidate_id == candidate_id)
    sessions = _scoped(
        the_gate,
        actor,
        db,
        select(InterviewSession)
        .where(InterviewSession.application_id.in_(own))
        .order_by(InterviewSession.id),
        InterviewSession,
        purpose,
    )
    reports = _scoped(
        the_gate,
        actor,
        db,
        select(ScoreReport).where(ScoreReport.application_id.in_(own)).order_by(ScoreReport.id),
        ScoreReport,
        purpose,
    )
    shown = the_gate.view_many(actor, [candidate, *comments, *referrals, *reports], purpose, fields)
    # A comment or referral the role sees nothing of is left out, not listed empty: its
    # existence ("HR wrote something about them") is itself not for that role.
    about = [s for s in shown[1:] if s.values]
    summaries = {s.row.session_id: s for s in about if s.entity == "score_reports"}
    return (
        shown[0],
        [s for s in about if s.entity == "comments"],
        [s for s in about if s.entity == "referrals"],
        applications,
        [_interview_summary(session, summaries.get(session.id)) for session in sessions],
    )


def _interview_summary(session: InterviewSession, report: Shown | None) -> dict[str, Any]:
    """An interview in the candidate file: its state and, if shown, the AI's summary."""
    data = shown_json(report, "report")
    data = data if isinstance(data, dict) else {}
    return {
        "id": session.id,
        "application_id": session.application_id,
        "status": session.status.value,
        "analysis_status": session.analysis_status,
        "summary": data.get("summary"),
        "overall": data.get("overall"),
    }


@dataclass
class InterviewFile:
    """One interview as the actor may see it. Rows the actor sees nothing of are left out
    (like comments: that an expression estimate exists is itself not an interviewer's)."""

    session: InterviewSession
    candidate: Shown
    answers: list[Shown]
    evaluations: list[Shown]
    recordings: list[Recording]
    analyses: list[Shown] = field(default_factory=list)
    faces: list[Shown] = field(default_factory=list)
    expressions: list[Shown] = field(default_factory=list)
    report: Shown | None = None
    overrides: list[Shown] = field(default_factory=list)

    def of_answer(self, rows: list[Shown], answer_id: int) -> Shown | None:
        return next((r for r in rows if r.row.answer_id == answer_id), None)

    def answer_views(self) -> list[dict[str, Any]]:
        """Per answer: transcript, signals, face timeline and expression, parsed for display."""
        views = []
        for answer in self.answers:
            analysis = self.of_answer(self.analyses, answer.id)
            face = self.of_answer(self.faces, answer.id)
            expression = self.of_answer(self.expressions, answer.id)
            views.append(
                {
                    "shown": answer,
                    "id": answer.id,
                    "question_id": answer.row.question_id,
                    "attempt": answer.row.attempt,
                    "transcript": transcript_view(answer),
                    "analysis": analysis_view(analysis),
                    "face": shown_json(face, "timeline"),
                    "expression": shown_json(expression, "signals"),
                    "recordings": [r for r in self.recordings if r.answer_id == answer.id],
                }
            )
        return views


def _scoped(
    the_gate: Gate, actor: Actor, db: Session, stmt: Select[Any], model: type[Any], purpose: str
) -> list[Any]:
    return list(db.scalars(stmt.where(the_gate.scope(actor, model, "view", purpose))))


def _answer_rows(
    the_gate: Gate, actor: Actor, db: Session, model: type[Any], session_id: int, purpose: str
) -> list[Any]:
    stmt = (
        select(model)
        .join(Answer, model.answer_id == Answer.id)
        .where(Answer.session_id == session_id)
        .order_by(model.id)
    )
    return _scoped(the_gate, actor, db, stmt, model, purpose)


def _report_rows(
    the_gate: Gate, actor: Actor, db: Session, session_id: int, purpose: str
) -> tuple[list[ScoreReport], list[ScoreOverride]]:
    reports = _scoped(
        the_gate,
        actor,
        db,
        select(ScoreReport).where(ScoreReport.session_id == session_id),
        ScoreReport,
        purpose,
    )
    overrides = _scoped(
        the_gate,
        actor,
        db,
        select(ScoreOverride)
        .join(ScoreReport, ScoreOverride.report_id == ScoreReport.id)
        .where(ScoreReport.session_id == session_id)
        .order_by(ScoreOverride.created_at, ScoreOverride.id),
        ScoreOverride,
        purpose,
    )
    return reports, overrides


def _split(shown: list[Shown], sizes: list[int]) -> list[list[Shown]]:
    parts, start = [], 0
    for size in sizes:
        parts.append(shown[start : start + size])
        start += size
    return parts


def _seen(rows: list[Shown]) -> list[Shown]:
    return [s for s in rows if s.values]


def interview_file(
    the_gate: Gate, actor: Actor, db: Session, session_id: int, purpose: str, endpoint: str
) -> InterviewFile:
    """One interview session: its candidate's name, answers, evaluations, recordings, what the
    local AI derived and the score report with its overrides (one audit event per person)."""
    session = db.get(InterviewSession, session_id)
    if session is None:
        abort(404)
    answers = _scoped(
        the_gate,
        actor,
        db,
        select(Answer)
        .where(Answer.session_id == session_id)
        .order_by(Answer.question_id, Answer.attempt, Answer.id),
        Answer,
        purpose,
    )
    evaluations = _scoped(
        the_gate,
        actor,
        db,
        select(Evaluation).where(Evaluation.session_id == session_id).order_by(Evaluation.id),
        Evaluation,
        purpose,
    )
    recordings = _answer_rows(the_gate, actor, db, Recording, session_id, purpose)
    analyses = _answer_rows(the_gate, actor, db, AnswerAnalysis, session_id, purpose)
    faces = _answer_rows(the_gate, actor, db, FaceSignals, session_id, purpose)
    expressions = _answer_rows(the_gate, actor, db, ExpressionSignals, session_id, purpose)
    reports, overrides = _report_rows(the_gate, actor, db, session_id, purpose)
    candidate = session.application.candidate
    groups = [answers, evaluations, recordings, analyses, faces, expressions, reports, overrides]
    shown = the_gate.view_many(
        actor,
        [session, candidate, *(row for group in groups for row in group)],
        purpose,
        fields_of(endpoint),
    )
    parts = _split(shown[2:], [len(g) for g in groups])
    report = _seen(parts[6])
    return InterviewFile(
        session=session,
        candidate=shown[1],
        answers=parts[0],
        evaluations=parts[1],
        recordings=recordings,
        analyses=_seen(parts[3]),
        faces=_seen(parts[4]),
        expressions=_seen(parts[5]),
        report=report[0] if report else None,
        overrides=_seen(parts[7]) if report else [],
    )


@dataclass
class ReportFile:
    """A session's score report with its overrides, as the actor may see them."""

    session: InterviewSession
    candidate: Shown | None
    report: Shown | None
    overrides: list[Shown]


def report_file(
    the_gate: Gate,
    actor: Actor,
    db: Session,
    session_id: int,
    purpose: str,
    endpoint: str,
    action: str = "read",
) -> ReportFile:
    """The report of one session (and, for the PDF, whom it is about): one audit event.

    The session must be in the actor's scope (404 otherwise, recorded); a session without
    a report (not scored yet, or a human-only evaluation) answers 404 after that check.
    """
    session = db.get(InterviewSession, session_id)
    if session is None:
        abort(404)
    fields = fields_of(endpoint)
    reports, overrides = _report_rows(the_gate, actor, db, session_id, purpose)
    with_candidate = "candidates.name" in fields
    rows: list[Any] = [session]
    if with_candidate:
        rows.append(session.application.candidate)
    policy_action = BY_NAME[endpoint].action
    shown = the_gate.view_many(
        actor, [*rows, *reports, *overrides], purpose, fields, action, policy_action
    )
    report = shown[len(rows) : len(rows) + len(reports)]
    if not report:
        abort(404)
    return ReportFile(
        session=session,
        candidate=shown[1] if with_candidate else None,
        report=report[0] if report[0].values else None,
        overrides=_seen(shown[len(rows) + len(reports) :]),
    )


# --- what the views show of the AI's output ----------------------------------------------------


def parse_json(value: str | None) -> Any:
    """A sealed JSON field as data; a value that is not JSON (a masked value, text written
    before issue #5) as it is."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def shown_json(shown: Shown | None, name: str) -> Any:
    if shown is None or name not in shown:
        return None
    return parse_json(shown[name])


def transcript_view(answer: Shown) -> dict[str, Any] | None:
    """{language, text, segments: [{start, end, text}]} of `Answer.transcript` (stored by the
    worker as `Transcript.stored()`), or {text} for plain text; None when hidden or empty."""
    data = shown_json(answer, "transcript")
    if data is None:
        return None
    if not isinstance(data, dict):
        return {"language": None, "text": str(data), "segments": []}
    segments = [
        {"start": s.get("start"), "end": s.get("end"), "text": s.get("text", "")}
        for s in data.get("segments") or []
        if isinstance(s, dict)
    ]
    return {"language": data.get("language"), "text": data.get("text", ""), "segments": segments}


def analysis_view(analysis: Shown | None) -> dict[str, Any] | None:
    if analysis is None:
        return None
    row: AnswerAnalysis = analysis.row
    return {
        "status": row.status.value if row.status else None,
        "step": row.step,
        "error": row.error,
        "language": row.language,
        "duration_s": row.duration_s,
        "model_versions": row.model_versions,
        "signals": shown_json(analysis, "signals"),
    }


def report_view(
    report: Shown | None, overrides: list[Shown], usernames: dict[int, str]
) -> dict[str, Any] | None:
    """The report for display: per dimension the AI's score, confidence and evidence, and the
    override in force (score, reason, who, when) beside it: the AI's advice is never rewritten."""
    if report is None or "report" not in report:
        return None
    data = parse_json(report["report"])
    if not isinstance(data, dict):
        data = {"summary": None if data is None else str(data), "dimensions": []}
    in_force = {str(k): v for k, v in effective_overrides(overrides).items()}
    dimensions = []
    for dim in data.get("dimensions") or []:
        if not isinstance(dim, dict):
            continue
        override = in_force.get(str(dim.get("id")))
        entry = {**dim, "evidence": list(dim.get("evidence") or []), "override": None}
        if override is not None:
            entry["override"] = _override_view(override, usernames)
        entry["effective"] = (
            entry["override"]["score"] if override is not None else dim.get("score")
        )
        dimensions.append(entry)
    return {
        **data,
        "id": report.id,
        "dimensions": dimensions,
        "model_versions": data.get("model_versions") or report.row.model_versions,
        "overrides": [_override_view(o, usernames) for o in overrides],
        "dimension_names": {str(d.get("id")): d.get("name") for d in dimensions},
    }


def _override_view(override: Shown, usernames: dict[int, str]) -> dict[str, Any]:
    row: ScoreOverride = override.row
    return {
        "id": row.id,
        "dimension_id": row.dimension_id,
        "score": row.score,
        "by": usernames.get(row.by_id, f"#{row.by_id}"),
        "at": row.created_at.isoformat(),
        "reason": override.get("reason") if "reason" in override else None,
    }


def override_authors(db: Session, overrides: list[Shown]) -> dict[int, str]:
    """Staff usernames of the overrides' authors (staff accounts, not candidate data)."""
    ids = {o.row.by_id for o in overrides}
    if not ids:
        return {}
    rows = db.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {uid: username for uid, username in rows}


LANGUAGES: tuple[Literal["zh"], Literal["en"]] = ("zh", "en")


def request_language() -> Literal["zh", "en"]:
    """`?lang=zh|en` for the report PDF and the explanation; Chinese by default."""
    lang = request.args.get("lang", "zh")
    if lang == "en":
        return "en"
    if lang != "zh":
        abort(400, "lang must be zh or en")
    return "zh"


HUMAN_REVIEW = {
    "zh": (
        "本报告由本机的人工智能生成，仅供招聘人员参考，不会自动作出任何录用决定；"
        "每一项决定都由具名的工作人员作出。您有权要求说明，也有权拒绝仅凭自动化决策作出的决定，"
        "并要求由人工重新评估（《个人信息保护法》第二十四条）。如需人工复核，"
        "请联系向您发出面试邀请的医院人事部门，说明面试编号 {session_id}；"
        "人事部门将安排未参与本次评分的人员复核，并答复您。"
    ),
    "en": (
        "This report was produced by AI running on the hospital's own server. It only advises "
        "the recruiters and decides nothing by itself: every decision is made by a named member "
        "of staff. You may ask for an explanation and refuse a decision made solely by automated "
        "means, and ask for a human review (PIPL Art. 24). To ask for one, contact the hospital's "
        "HR department that invited you, quoting interview number {session_id}; HR will have "
        "someone who did not take part in this assessment review it and answer you."
    ),
}


def explanation_text(report: dict[str, Any], lang: str) -> str:
    """The scoring module's plain-language explanation of the report (PIPL Art. 24)."""
    from workers.analysis import scoring  # the text is the scorer's: it knows how it scored

    return str(scoring.explanation(report, lang))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_csv(rows: list[Shown], fields: tuple[str, ...]) -> Response:
    """The export as CSV: a column for each declared field some row shows; hidden cells empty."""
    names = [f.split(".", 1)[1] for f in fields]
    columns = [n for n in names if any(n in r for r in rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", *columns])
    for row in rows:
        writer.writerow([row.id, *(_cell(row.get(c)) for c in columns)])
    # UTF-8 with BOM: what Excel on a hospital's Windows desktop opens as UTF-8.
    response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="candidates.csv"'
    return response


def media_response(
    the_gate: Gate, actor: Actor, db: Session, recording_id: int, mode: str, purpose: str
) -> Response:
    """Stream a recording's plaintext through the gate, one chunk in memory at a time."""
    recording = db.get(Recording, recording_id)
    if recording is None:
        abort(404)
    reader = the_gate.open_media(actor, recording, mode, purpose)
    if recording.media_type == RTP_LOG:
        return _remuxed(recording, reader, mode)

    def chunks() -> Iterator[bytes]:
        with reader:
            yield from reader

    response = Response(chunks(), mimetype=recording.media_type)
    response.call_on_close(reader.close)
    if mode == "download":
        extension = recording.media_type.split("/")[-1].split(";")[0] or "bin"
        response.headers["Content-Disposition"] = (
            f'attachment; filename="recording-{recording.id}.{extension}"'
        )
    return response


def _remuxed(recording: Recording, reader: BlobReader, mode: str) -> Response:
    """A WebRTC answer (issue 7) is stored as the received RTP: remuxed in memory (never
    re-encoded, never on disk) into WebM/Matroska that HR's browser plays."""
    with reader:
        playable = to_playable(reader, complete=recording.complete)
    response = Response(playable.data, mimetype=playable.media_type)
    if mode == "download":
        extension = "webm" if playable.media_type == "video/webm" else "mkv"
        response.headers["Content-Disposition"] = (
            f'attachment; filename="recording-{recording.id}.{extension}"'
        )
    return response


def register_denials(blueprint: Blueprint) -> None:
    blueprint.register_error_handler(AccessDenied, answer_denied)
    blueprint.after_request(no_store)


# --- the API views ------------------------------------------------------------------------------


def _candidates_json(rows: list[Shown]) -> list[dict[str, Any]]:
    return [{**r.as_dict(), "org_unit_id": r.row.org_unit_id} for r in rows]


@bp.get("/candidates")
def candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        rows = the_gate.list_rows(actor, db, Candidate, purpose, fields_of("api.candidates"))
        return jsonify({"purpose": purpose, "candidates": _candidates_json(rows)})


@bp.post("/candidates/search")
def search_candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    by, value = search_term()
    with appliance_store.store.session() as db:
        rows = the_gate.search(actor, db, by, value, purpose, fields_of("api.search_candidates"))
        return jsonify({"purpose": purpose, "candidates": _candidates_json(rows)})


@bp.get("/candidates/<int:candidate_id>")
def candidate(candidate_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"candidates:{candidate_id}", "read")
    with appliance_store.store.session() as db:
        person, comments, referrals, applications, interviews = candidate_file(
            the_gate, actor, db, candidate_id, purpose, "api.candidate"
        )
        return jsonify(
            {
                "purpose": purpose,
                "candidate": {**person.as_dict(), "org_unit_id": person.row.org_unit_id},
                "applications": [
                    {"id": a.id, "job_id": a.job_id, "job_title": a.job.title, "stage": a.stage}
                    for a in applications
                ],
                "comments": [
                    {**c.as_dict(), "application_id": c.row.application_id} for c in comments
                ],
                "referrals": [{**r.as_dict(), "channel": r.row.channel} for r in referrals],
                "interviews": interviews,
            }
        )


@bp.get("/candidates/export.csv")
def export_candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        rows = the_gate.export(actor, db, Candidate, purpose, fields_of("api.export_candidates"))
    return export_csv(rows, fields_of("api.export_candidates"))


def interview_json(found: InterviewFile, db: Session) -> dict[str, Any]:
    """The interview as JSON: each answer's transcript (with segment times), signals, face
    timeline and expression estimates where they exist and the role may see them, and the
    score report with its evidence and overrides."""
    return {
        "interview": {
            "id": found.session.id,
            "application_id": found.session.application_id,
            "status": found.session.status,
            "analysis_status": found.session.analysis_status,
            "analysis_error": found.session.analysis_error,
        },
        "candidate": found.candidate.as_dict(),
        "answers": [
            {
                "id": view["id"],
                "question_id": view["question_id"],
                "attempt": view["attempt"],
                "masked": sorted(view["shown"].masked),
                "transcript": view["transcript"],
                "analysis": view["analysis"],
                "face": view["face"],
                "expression": view["expression"],
            }
            for view in found.answer_views()
        ],
        "evaluations": [
            {**e.as_dict(), "kind": e.row.kind, "overall": e.row.overall} for e in found.evaluations
        ],
        "recordings": [
            {"id": r.id, "answer_id": r.answer_id, "media_type": r.media_type}
            for r in found.recordings
        ],
        "report": report_view(found.report, found.overrides, override_authors(db, found.overrides)),
    }


@bp.get("/interviews/<int:session_id>")
def interview(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"interview_sessions:{session_id}", "read")
    with appliance_store.store.session() as db:
        found = interview_file(the_gate, actor, db, session_id, purpose, "api.interview")
        return jsonify({"purpose": purpose, **interview_json(found, db)})


def report_pdf_response(
    the_gate: Gate, actor: Actor, session_id: int, purpose: str, endpoint: str
) -> Response:
    """The score report as a PDF (`?lang=zh|en`), recorded like an export: the file leaves
    the box's screens, so the event says `export`, not `read`."""
    lang = request_language()
    the_gate.require(actor, "export", purpose, f"interview_sessions:{session_id}", "export")
    with appliance_store.store.session() as db:
        found = report_file(the_gate, actor, db, session_id, purpose, endpoint, "export")
        view = report_view(found.report, found.overrides, override_authors(db, found.overrides))
        label = _candidate_label(found.candidate, session_id)
        title = found.session.application.job.title
    from workers.analysis.report_pdf import render_pdf  # reportlab loads on the first PDF only

    pdf = render_pdf(
        with_override_notes(view, lang) if view else _WITHHELD_REPORT, lang, label, title
    )
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="interview-{session_id}-report-{lang}.pdf"'
    )
    return response


OVERRIDE_NOTE = {
    "zh": "人工调整为 {score:.1f} 分（{by}，{at}）。理由：{reason}",
    "en": "Overridden to {score:.1f} by {by} ({at}). Reason: {reason}",
}
REASON_WITHHELD = {"zh": "（无权查看）", "en": "(not shown to your role)"}


def with_override_notes(view: dict[str, Any], lang: str) -> dict[str, Any]:
    """The report for the PDF: each overridden dimension keeps the AI's score and gets a note
    (in the report's own note format) saying who changed it, to what, and why."""
    dimensions = []
    for dim in view["dimensions"]:
        override = dim.get("override")
        notes = list(dim.get("notes") or [])
        if override is not None:
            note = {"code": "override"}
            for language in LANGUAGES:
                reason = override["reason"]
                note[language] = OVERRIDE_NOTE[language].format(
                    score=override["score"],
                    by=override["by"],
                    at=override["at"][:10],
                    reason=REASON_WITHHELD[language] if reason is None else reason,
                )
            notes.append(note)
        dimensions.append({**dim, "notes": notes})
    return {**view, "dimensions": dimensions}


_WITHHELD_REPORT: dict[str, Any] = {"summary": "—", "dimensions": [], "overrides": []}
"""What a PDF holds for a role that may export but not read the report (policy: hidden)."""


def _candidate_label(candidate: Shown | None, session_id: int) -> str:
    """The candidate's name as the role may see it (masked or full), else the interview number."""
    name = candidate.get("name") if candidate is not None and "name" in candidate else None
    return name or f"#{session_id}"


def explanation_view(
    the_gate: Gate, actor: Actor, db: Session, session_id: int, purpose: str, endpoint: str
) -> dict[str, Any]:
    """What the explanation page shows: the report's dimensions, the scorer's explanation in
    the asked language, and how to ask for a human review (PIPL Art. 24)."""
    lang = request_language()
    found = report_file(the_gate, actor, db, session_id, purpose, endpoint)
    # The page is given to the candidate: overrides say "HR", not which staff account.
    hr = dict.fromkeys((o.row.by_id for o in found.overrides), "HR")
    view = report_view(found.report, found.overrides, hr)
    return {
        "session_id": session_id,
        "lang": lang,
        "report": view,
        "explanation": explanation_text(view, lang) if view is not None else None,
        "human_review": HUMAN_REVIEW[lang].format(session_id=session_id),
    }


@bp.get("/interviews/<int:session_id>/report.pdf")
def score_report_pdf(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    return report_pdf_response(the_gate, actor, session_id, purpose, "api.score_report_pdf")


@bp.get("/interviews/<int:session_id>/explanation")
def score_explanation(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"interview_sessions:{session_id}", "read")
    with appliance_store.store.session() as db:
        view = explanation_view(the_gate, actor, db, session_id, purpose, "api.score_explanation")
    return jsonify({"purpose": purpose, **view})


def override_request(actor: Actor, session_id: int, purpose: str) -> int:
    """Record an override from the request body (form or JSON): dimension_id, score, reason.

    400 for a malformed one, 404 when the session has no report (or is out of scope), 403
    when the role may not override; refusals are recorded by compliance.overrides.
    """
    data: Any = request.get_json(silent=True) if request.is_json else request.form
    data = data if isinstance(data, dict) or hasattr(data, "get") else {}
    try:
        dimension_id = int(data.get("dimension_id"))
        score = float(data.get("score"))
    except (TypeError, ValueError, OverflowError):
        abort(400, "give dimension_id (a number) and score (a number)")
    if not 0 < dimension_id <= MAX_ID:
        abort(400, "dimension_id must be the id of one of the report's dimensions")
    reason = data.get("reason")
    if not isinstance(reason, str):
        abort(400, "give the reason for the override: it is required")
    try:
        return override_score(
            appliance_store.store, actor, session_id, dimension_id, score, reason, purpose
        )
    except OverrideRefused as exc:
        abort(400, str(exc))
    except LookupError:
        abort(404)


@bp.post("/interviews/<int:session_id>/overrides", endpoint="override_score")
def override_score_view(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    override_id = override_request(actor, session_id, purpose)
    return jsonify({"id": override_id, "session_id": session_id}), 201


@bp.get("/recordings/<int:recording_id>/stream")
def stream_recording(recording_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        return media_response(the_gate, actor, db, recording_id, "stream", purpose)


@bp.get("/recordings/<int:recording_id>/download")
def download_recording(recording_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        return media_response(the_gate, actor, db, recording_id, "download", purpose)


# --- query parameters: bad ones answer 400 with a message, never 500 ------------------------

MAX_ID = 2**63 - 1
"""SQLite's largest integer: a bigger id cannot name a row (and would overflow the driver)."""
_ID = re.compile(r"[0-9]{1,19}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def bad_request(message: str) -> NoReturn:
    abort(400, message)


def id_arg(name: str) -> int | None:
    """A positive id from the query string (`?job=3`), None when absent; 400 otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not _ID.fullmatch(raw) or not 0 < int(raw) <= MAX_ID:
        bad_request(_("参数 %(name)s 必须是正整数编号。", name=name))
    return int(raw)


def choice_arg(name: str, choices: type[enum.StrEnum]) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    allowed = [c.value for c in choices]
    if raw not in allowed:
        bad_request(_("参数 %(name)s 只能是：%(allowed)s。", name=name, allowed=", ".join(allowed)))
    return raw


def day_arg(name: str) -> date | None:
    """A calendar day (`?date=2026-11-26`) in the box's time zone."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        bad_request(_("参数 %(name)s 必须是日期，格式为 YYYY-MM-DD。", name=name))


def ids_in_range(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """A path id beyond SQLite's integers names no row: 404, like any unknown id."""
    for value in (values or {}).values():
        if isinstance(value, int) and value > MAX_ID:
            abort(404)


def box_day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants a calendar day of the box's time zone runs between (times are stored
    in UTC; `Settings.timezone` is the hospital's clock)."""
    settings: Settings = current_app.config["SETTINGS"]
    zone = settings.zone
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def box_today() -> date:
    settings: Settings = current_app.config["SETTINGS"]
    return datetime.now(settings.zone).date()


# --- jobs, applications, interviews, scores (issue 6, item 8) ---------------------------------


def job_scope(the_gate: Gate, actor: Actor, purpose: str) -> ColumnElement[bool]:
    """The jobs an actor may list: those of the org subtrees its roles see candidates in (HR
    of the east branch: east jobs), and those its in-scope applications are for (an
    interviewer's assigned interviews, a candidate's own applications). Jobs hold no
    personal data, but which departments are hiring is still not every account's business."""
    applied = select(Application.job_id).where(the_gate.scope(actor, Application, "view", purpose))
    clauses: list[ColumnElement[bool]] = [Job.id.in_(applied)]
    for grant in actor.grants:
        role = the_gate.policy.role(grant.role.value)
        if (
            role.rows is RowScope.ORG_SUBTREE
            and "view" in role.actions
            and purpose in role.purposes
        ):
            units = select(OrgUnit.id).where(
                OrgUnit.path.startswith(grant.org_path, autoescape=True)
            )
            clauses.append(Job.org_unit_id.in_(units))
    return or_(false(), *clauses)


JOB_SUMMARY_KEYS = ("id", "org_unit_id", "department", "title", "status", "created_at", "pipeline")
JOB_DETAIL_KEYS = (*JOB_SUMMARY_KEYS, "description", "requirements", "scoring_template", "plans")
"""What the API says of a job (the OpenAPI schema in webapp.openapi is built from these)."""


def pipeline_counts(
    the_gate: Gate, actor: Actor, db: Session, purpose: str, job_ids: list[int]
) -> dict[int, dict[str, int]]:
    """Applications per stage of each job, counting only applications in the actor's scope
    (a count of an east candidate is not a west HR's)."""
    counts = {job_id: dict.fromkeys((s.value for s in Stage), 0) for job_id in job_ids}
    if not job_ids:
        return counts
    rows = db.execute(
        select(Application.job_id, Application.stage, func.count())
        .where(Application.job_id.in_(job_ids))
        .where(the_gate.scope(actor, Application, "view", purpose))
        .group_by(Application.job_id, Application.stage)
    )
    for job_id, stage, count in rows:
        counts[job_id][Stage(stage).value] = int(count)
    return counts


def department_names(db: Session, jobs: list[Job]) -> dict[int, str]:
    ids = {j.org_unit_id for j in jobs}
    return dict(db.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ids))).all())


def job_json(
    job: Job, counts: dict[str, int], departments: dict[int, str], detail: bool = False
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "org_unit_id": job.org_unit_id,
        "department": departments.get(job.org_unit_id),
        "title": job.title,
        "status": JobStatus(job.status).value,
        "created_at": job.created_at.isoformat(),
        "pipeline": counts,
    }
    if not detail:
        return data
    template = job.scoring_template
    return {
        **data,
        "description": job.description,
        "requirements": job.requirements or {},
        "scoring_template": None
        if template is None
        else {
            "id": template.id,
            "name": template.name,
            "dimensions": [
                {"id": d.id, "name": d.name, "weight": d.weight} for d in template.dimensions
            ],
        },
        "plans": [
            {
                "id": plan.id,
                "name": plan.name,
                "mode": plan.mode,
                "round_no": plan.round_no,
                "questions": [
                    {
                        "id": q.id,
                        "text": q.text,
                        "competency": q.competency,
                        "think_seconds": q.think_seconds,
                        "answer_seconds": q.answer_seconds,
                        "retakes": q.retakes,
                    }
                    for q in plan.questions
                ],
            }
            for plan in job.plans
        ],
    }


def scoped_jobs(
    the_gate: Gate, actor: Actor, db: Session, purpose: str, job_id: int | None = None
) -> list[Job]:
    """Jobs in the actor's scope (one, when `job_id`): refused (recorded) for roles that see
    no candidate data at all."""
    the_gate.require(actor, "view", purpose, "jobs", "list")
    stmt = select(Job).where(job_scope(the_gate, actor, purpose)).order_by(Job.id)
    if job_id is not None:
        stmt = stmt.where(Job.id == job_id)
    return list(db.scalars(stmt))


jobs_bp = Blueprint("api_jobs", __name__, url_prefix="/api/v1")
"""Requisitions: no personal data, so not in ENDPOINTS (the permission matrix's list), yet
scoped and refused like the rest (`scoped_jobs`)."""


@jobs_bp.get("/jobs")
def jobs() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    status = choice_arg("status", JobStatus)
    with appliance_store.store.session() as db:
        found = [j for j in scoped_jobs(the_gate, actor, db, purpose) if status in (None, j.status)]
        counts = pipeline_counts(the_gate, actor, db, purpose, [j.id for j in found])
        names = department_names(db, found)
        listed = [job_json(j, counts[j.id], names) for j in found]
        return jsonify({"purpose": purpose, "jobs": listed})


@jobs_bp.get("/jobs/<int:job_id>")
def job(job_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        found = scoped_jobs(the_gate, actor, db, purpose, job_id)
        if not found:
            abort(404)
        counts = pipeline_counts(the_gate, actor, db, purpose, [job_id])
        names = department_names(db, found)
        return jsonify({"purpose": purpose, "job": job_json(found[0], counts[job_id], names, True)})


def named_rows(
    the_gate: Gate,
    actor: Actor,
    db: Session,
    model: type[Any],
    stmt: Select[Any],
    purpose: str,
    endpoint: str,
    candidate_of: Any,
) -> tuple[list[Any], dict[int, Shown]]:
    """Rows of `model` in scope (which hold no personal field themselves), and their
    candidates as shown by the gate, by candidate id: one `list` event per person, naming
    the fields the endpoint declares."""
    fields = fields_of(endpoint)
    the_gate.require(actor, "view", purpose, table_of(model), "list", fields)
    rows = list(db.scalars(stmt.where(the_gate.scope(actor, model, "view", purpose))))
    people = list({candidate_of(r).id: candidate_of(r) for r in rows}.values())
    shown = the_gate.view_many(actor, people, purpose, fields, "list")
    return rows, {s.id: s for s in shown}


def _name(people: dict[int, Shown], candidate_id: int) -> str | None:
    person = people.get(candidate_id)
    return person.get("name") if person is not None else None


@bp.get("/applications")
def applications() -> Any:
    """Applications in scope (`?job=`, `?stage=`): the pipeline as other systems sync it."""
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    job_id, stage = id_arg("job"), choice_arg("stage", Stage)
    stmt = select(Application).order_by(Application.id)
    if job_id is not None:
        stmt = stmt.where(Application.job_id == job_id)
    if stage is not None:
        stmt = stmt.where(Application.stage == Stage(stage))
    with appliance_store.store.session() as db:
        rows, people = named_rows(
            the_gate, actor, db, Application, stmt, purpose, "api.applications", _candidate_of
        )
        return jsonify(
            {
                "purpose": purpose,
                "applications": [
                    {
                        "id": a.id,
                        "candidate_id": a.candidate_id,
                        "candidate_name": _name(people, a.candidate_id),
                        "job_id": a.job_id,
                        "job_title": a.job.title,
                        "stage": Stage(a.stage).value,
                        "created_at": a.created_at.isoformat(),
                        "updated_at": a.updated_at.isoformat(),
                    }
                    for a in rows
                ],
            }
        )


def _candidate_of(row: Any) -> Candidate:
    if isinstance(row, Application):
        return row.candidate
    if isinstance(row, InterviewSession):
        return row.application.candidate
    candidate: Candidate = db_application(row).candidate
    return candidate


def db_application(row: Any) -> Application:
    """The application a row with `application_id` (a score report, a comment) belongs to."""
    session = object_session(row)
    found = session.get(Application, row.application_id) if session is not None else None
    if found is None:
        raise LookupError(f"{table_of(row)} {row.id} has no application in this session")
    return found


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@bp.get("/interviews")
def interviews() -> Any:
    """Interview sessions in scope (`?job=`, `?status=`, `?date=` a day of the box's clock,
    by the start of the session's window)."""
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    job_id, status, day = id_arg("job"), choice_arg("status", SessionStatus), day_arg("date")
    stmt = select(InterviewSession).order_by(InterviewSession.id)
    if job_id is not None:
        stmt = stmt.where(
            InterviewSession.application_id.in_(
                select(Application.id).where(Application.job_id == job_id)
            )
        )
    if status is not None:
        stmt = stmt.where(InterviewSession.status == SessionStatus(status))
    if day is not None:
        start, end = box_day_bounds(day)
        stmt = stmt.where(InterviewSession.window_start >= start)
        stmt = stmt.where(InterviewSession.window_start < end)
    with appliance_store.store.session() as db:
        rows, people = named_rows(
            the_gate, actor, db, InterviewSession, stmt, purpose, "api.interviews", _candidate_of
        )
        return jsonify({"purpose": purpose, "interviews": [_session_json(s, people) for s in rows]})


def _session_json(session: InterviewSession, people: dict[int, Shown]) -> dict[str, Any]:
    application = session.application
    return {
        "id": session.id,
        "application_id": session.application_id,
        "candidate_id": application.candidate_id,
        "candidate_name": _name(people, application.candidate_id),
        "job_id": application.job_id,
        "status": SessionStatus(session.status).value,
        "window_start": _when(session.window_start),
        "window_end": _when(session.window_end),
        "started_at": _when(session.started_at),
        "completed_at": _when(session.completed_at),
        "analysis_status": session.analysis_status,
    }


def score_numbers(report: Shown | None) -> dict[str, Any] | None:
    """The numbers of an AI report the role may read: overall, summary, per dimension the
    score and confidence (no evidence quotes: those stay on the interview)."""
    data = shown_json(report, "report")
    if not isinstance(data, dict):
        return None
    dimensions = [
        {
            "id": str(d.get("id")),
            "name": d.get("name"),
            "weight": _number(d.get("weight")),
            "score": _number(d.get("score")),
            "confidence": _number(d.get("confidence")),
        }
        for d in data.get("dimensions") or []
        if isinstance(d, dict)
    ]
    return {
        "overall": _number(data.get("overall")),
        "summary": data.get("summary") if isinstance(data.get("summary"), str) else None,
        "dimensions": dimensions,
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def latest_overrides(db: Session, report_ids: list[int]) -> dict[int, dict[str, float]]:
    """Per report, the score a person set for each dimension (the latest override): numbers
    only, which are not personal; the reasons are read through the gate on the interview."""
    found: dict[int, dict[str, float]] = {rid: {} for rid in report_ids}
    if not report_ids:
        return found
    stmt = (
        select(ScoreOverride)
        .where(ScoreOverride.report_id.in_(report_ids))
        .order_by(ScoreOverride.created_at, ScoreOverride.id)
    )
    for row in db.scalars(stmt):
        found[row.report_id][str(row.dimension_id)] = row.score
    return found


@bp.get("/scores")
def scores() -> Any:
    """AI score reports in scope (`?job=`) with the overrides people made, and the panel's
    evaluations (their overall numbers): AI scores advise, a named person decides."""
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    job_id = id_arg("job")
    stmt = select(ScoreReport).order_by(ScoreReport.id)
    if job_id is not None:
        stmt = stmt.where(
            ScoreReport.application_id.in_(
                select(Application.id).where(Application.job_id == job_id)
            )
        )
    with appliance_store.store.session() as db:
        fields = fields_of("api.scores")
        the_gate.require(actor, "view", purpose, "score_reports", "list", fields)
        reports = list(db.scalars(stmt.where(the_gate.scope(actor, ScoreReport, "view", purpose))))
        people = list({r.application_id: db_application(r).candidate for r in reports}.values())
        shown = the_gate.view_many(
            actor, [*{p.id: p for p in people}.values(), *reports], purpose, fields, "list"
        )
        names = {s.id: s for s in shown if s.entity == "candidates"}
        by_report = {s.id: s for s in shown if s.entity == "score_reports"}
        overrides = latest_overrides(db, [r.id for r in reports])
        return jsonify(
            {
                "purpose": purpose,
                "scores": [
                    _score_json(db, r, by_report[r.id], names, overrides[r.id]) for r in reports
                ],
            }
        )


def _score_json(
    db: Session,
    report: ScoreReport,
    shown: Shown,
    names: dict[int, Shown],
    overrides: dict[str, float],
) -> dict[str, Any]:
    application = db_application(report)
    numbers = score_numbers(shown)
    return {
        "id": report.id,
        "session_id": report.session_id,
        "application_id": report.application_id,
        "candidate_id": application.candidate_id,
        "candidate_name": _name(names, application.candidate_id),
        "job_id": application.job_id,
        "ai": numbers,
        "overrides": overrides if numbers is not None else {},
        "updated_at": report.updated_at.isoformat(),
    }


# --- Excel exports (issue 6, item 7) ----------------------------------------------------------

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export_rows(
    the_gate: Gate,
    actor: Actor,
    db: Session,
    purpose: str,
    fields: tuple[str, ...],
    job_id: int | None,
) -> list[Shown]:
    """The candidates an export may hold (of one job, or all in scope), shown as the gate says:
    one `export` event per person (PIPL Art. 51: the file leaves the box's screens)."""
    stmt = select(Candidate).order_by(Candidate.id)
    if job_id is not None:
        stmt = stmt.where(
            Candidate.id.in_(select(Application.candidate_id).where(Application.job_id == job_id))
        )
    return the_gate.list_rows(actor, db, Candidate, purpose, fields, "export", "export", stmt)


def xlsx_text(value: Any) -> str:
    """A cell's text: no formula (a leading = + - @ is kept as text, see `export_xlsx`), and
    none of the control characters the XLSX format cannot hold."""
    text = "" if value is None else str(value)
    return ILLEGAL_CHARACTERS_RE.sub("", text)


def export_xlsx(
    rows: list[Shown], fields: tuple[str, ...], headers: dict[str, str], filename: str
) -> Response:
    """The export as an Excel workbook built in memory (no temp file with personal data): a
    column per declared field some row shows; hidden cells empty, masked ones as masked."""
    names = [f.split(".", 1)[1] for f in fields]
    columns = [n for n in names if any(n in r for r in rows)]
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # noqa: S101 (a new workbook has its sheet)
    sheet.title = "candidates"
    sheet.append(["id", "org_unit_id", *(headers.get(c, c) for c in columns)])
    for row in rows:
        sheet.append([row.id, row.row.org_unit_id])
        line = sheet.max_row
        for offset, column in enumerate(columns, start=3):
            cell = sheet.cell(row=line, column=offset, value=xlsx_text(row.get(column)))
            cell.data_type = "s"  # never a formula, whatever the text starts with
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    response = Response(buffer.getvalue(), mimetype=XLSX)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_filename(job_id: int | None) -> str:
    return f"candidates-job-{job_id}.xlsx" if job_id is not None else "candidates.xlsx"


@bp.get("/candidates/export.xlsx")
def export_candidates_xlsx() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    job_id = id_arg("job")
    endpoint = "api.export_candidates_xlsx"
    with appliance_store.store.session() as db:
        rows = export_rows(the_gate, actor, db, purpose, fields_of(endpoint), job_id)
    return export_xlsx(rows, fields_of(endpoint), {}, export_filename(job_id))


def _register_companions(state: BlueprintSetupState) -> None:
    """The jobs API and the OpenAPI document share /api/v1 but show no personal data, so they
    are blueprints of their own (outside the permission matrix), registered with this one."""
    from webapp.openapi import bp as document_bp

    state.app.register_blueprint(jobs_bp)
    state.app.register_blueprint(document_bp)


for _blueprint in (bp, jobs_bp):
    register_denials(_blueprint)
    _blueprint.url_value_preprocessor(ids_in_range)
bp.record_once(_register_companions)
