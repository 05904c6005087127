"""The portal: the front page, and the HR pages over personal data, all through the gate.

Server-rendered (templates/portal/), no inline script or style (the CSP forbids
both). Which personal fields each page may show is declared in `webapp.api.ENDPOINTS`;
what the signed-in account sees of them, and which rows, is the gate's decision.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for

from appliance.records import Candidate
from compliance.overrides import SCORE_MAX, SCORE_MIN, may_override
from webapp.api import (
    candidate_file,
    explanation_view,
    export_csv,
    fields_of,
    gate,
    interview_file,
    media_response,
    override_authors,
    override_request,
    register_denials,
    report_pdf_response,
    report_view,
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
        person, comments, referrals, applications, interviews = candidate_file(
            the_gate, actor, db, candidate_id, purpose, "portal.candidate"
        )
        return render_template(
            "portal/candidate.html",
            person=person,
            comments=comments,
            referrals=referrals,
            applications=applications,
            interviews=interviews,
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
            score_range=(SCORE_MIN, SCORE_MAX),
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


register_denials(bp)
