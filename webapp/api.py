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
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import Forbidden, NotFound

from appliance.records import (
    Answer,
    Application,
    Candidate,
    Comment,
    Evaluation,
    InterviewSession,
    Recording,
    Referral,
)
from compliance.actors import Actor
from compliance.gate import MEDIA_FIELD, AccessDenied, Gate, NotInScope, Shown
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
    """What the policy must allow: view, search, export, or a media mode (stream, download)."""
    entity: str
    """The table of the row the endpoint is about (or lists)."""
    fields: tuple[str, ...]
    """Every personal field (table.field) the endpoint may show; the gate decides how."""


CANDIDATE_FIELDS = tuple(
    f"candidates.{f}" for f in ("name", "phone", "email", "id_number", "address")
)
LIST_FIELDS = ("candidates.name", "candidates.phone", "candidates.email")
ONE_FIELDS = (*CANDIDATE_FIELDS, "comments.body", "referrals.note")
EXPORT_FIELDS = CANDIDATE_FIELDS
INTERVIEW_FIELDS = ("candidates.name", "answers.transcript", "evaluations.notes")
MEDIA_FIELDS = (MEDIA_FIELD,)


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
) -> tuple[Shown, list[Shown], list[Shown], list[Application]]:
    """One candidate with the comments and referrals about them: one audit event.

    Related rows are queried through the gate's scope too, so an interviewer (who
    reaches the candidate through an assigned session) never pulls HR's comments in.
    """
    candidate = db.get(Candidate, candidate_id)
    if candidate is None:
        abort(404)
    fields = fields_of(endpoint)
    comments = list(
        db.scalars(
            select(Comment)
            .join(Application, Comment.application_id == Application.id)
            .where(
                Application.candidate_id == candidate_id,
                the_gate.scope(actor, Comment, "view", purpose),
            )
            .order_by(Comment.created_at, Comment.id)
        )
    )
    referrals = list(
        db.scalars(
            select(Referral)
            .where(
                Referral.candidate_id == candidate_id,
                the_gate.scope(actor, Referral, "view", purpose),
            )
            .order_by(Referral.id)
        )
    )
    applications = list(
        db.scalars(
            select(Application)
            .where(
                Application.candidate_id == candidate_id,
                the_gate.scope(actor, Application, "view", purpose),
            )
            .order_by(Application.id)
        )
    )
    shown = the_gate.view_many(actor, [candidate, *comments, *referrals], purpose, fields)
    # A comment or referral the role sees nothing of is left out, not listed empty: its
    # existence ("HR wrote something about them") is itself not for that role.
    about = [s for s in shown[1:] if s.values]
    return (
        shown[0],
        [s for s in about if s.entity == "comments"],
        [s for s in about if s.entity == "referrals"],
        applications,
    )


@dataclass
class InterviewFile:
    session: InterviewSession
    candidate: Shown
    answers: list[Shown]
    evaluations: list[Shown]
    recordings: list[Recording]


def interview_file(
    the_gate: Gate, actor: Actor, db: Session, session_id: int, purpose: str, endpoint: str
) -> InterviewFile:
    """One interview session: its candidate's name, answers, evaluations, recordings (one event)."""
    session = db.get(InterviewSession, session_id)
    if session is None:
        abort(404)
    scope = the_gate.scope
    answers = list(
        db.scalars(
            select(Answer)
            .where(Answer.session_id == session_id, scope(actor, Answer, "view", purpose))
            .order_by(Answer.question_id, Answer.attempt, Answer.id)
        )
    )
    evaluations = list(
        db.scalars(
            select(Evaluation)
            .where(Evaluation.session_id == session_id, scope(actor, Evaluation, "view", purpose))
            .order_by(Evaluation.id)
        )
    )
    recordings = list(
        db.scalars(
            select(Recording)
            .join(Answer, Recording.answer_id == Answer.id)
            .where(Answer.session_id == session_id, scope(actor, Recording, "view", purpose))
            .order_by(Recording.id)
        )
    )
    candidate = session.application.candidate
    shown = the_gate.view_many(
        actor,
        [session, candidate, *answers, *evaluations, *recordings],
        purpose,
        fields_of(endpoint),
    )
    return InterviewFile(
        session=session,
        candidate=shown[1],
        answers=shown[2 : 2 + len(answers)],
        evaluations=shown[2 + len(answers) : 2 + len(answers) + len(evaluations)],
        recordings=recordings,
    )


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
        person, comments, referrals, applications = candidate_file(
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
            }
        )


@bp.get("/candidates/export.csv")
def export_candidates() -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    with appliance_store.store.session() as db:
        rows = the_gate.export(actor, db, Candidate, purpose, fields_of("api.export_candidates"))
    return export_csv(rows, fields_of("api.export_candidates"))


@bp.get("/interviews/<int:session_id>")
def interview(session_id: int) -> Any:
    actor, the_gate = request_actor(), gate()
    purpose = request_purpose(the_gate, actor)
    the_gate.require(actor, "view", purpose, f"interview_sessions:{session_id}", "read")
    with appliance_store.store.session() as db:
        found = interview_file(the_gate, actor, db, session_id, purpose, "api.interview")
        return jsonify(
            {
                "purpose": purpose,
                "interview": {
                    "id": found.session.id,
                    "application_id": found.session.application_id,
                    "status": found.session.status,
                },
                "candidate": found.candidate.as_dict(),
                "answers": [
                    {**a.as_dict(), "question_id": a.row.question_id, "attempt": a.row.attempt}
                    for a in found.answers
                ],
                "evaluations": [
                    {**e.as_dict(), "kind": e.row.kind, "overall": e.row.overall}
                    for e in found.evaluations
                ],
                "recordings": [
                    {"id": r.id, "answer_id": r.answer_id, "media_type": r.media_type}
                    for r in found.recordings
                ],
            }
        )


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


register_denials(bp)
