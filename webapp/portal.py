"""The portal: the front page, and the HR pages over personal data, all through the gate.

Server-rendered (templates/portal/), no inline script or style (the CSP forbids
both). Which personal fields each page may show is declared in `webapp.api.ENDPOINTS`;
what the signed-in account sees of them, and which rows, is the gate's decision.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from appliance.records import Candidate
from webapp.api import (
    candidate_file,
    export_csv,
    fields_of,
    gate,
    interview_file,
    media_response,
    register_denials,
    request_actor,
    request_purpose,
    search_term,
)
from webapp.extensions import appliance_store

bp = Blueprint("portal", __name__)


@bp.get("/")
def index() -> Any:
    return render_template("index.html")


def _list_page(rows: list[Any], purpose: str, searched: str | None, can: dict[str, bool]) -> str:
    return render_template(
        "portal/candidates.html", rows=rows, purpose=purpose, searched=searched, can=can
    )


def _abilities(the_gate: Any, actor: Any, purpose: str) -> dict[str, bool]:
    return {
        action: the_gate.may(actor, action, purpose) for action in ("search", "export", "stream")
    }


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
        person, comments, referrals, applications = candidate_file(
            the_gate, actor, db, candidate_id, purpose, "portal.candidate"
        )
        return render_template(
            "portal/candidate.html",
            person=person,
            comments=comments,
            referrals=referrals,
            applications=applications,
            purpose=purpose,
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
        return render_template(
            "portal/interview.html",
            found=found,
            purpose=purpose,
            can_stream=the_gate.may(actor, "stream", purpose),
        )


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


register_denials(bp)
