"""Consent and jurisdiction in the analysis pipeline (issue #5, Must show): without face
consent, or under the EU profile, no face or expression data exists for the candidate,
checked in the database itself; a declined AI scoring gives a human-only evaluation."""

from __future__ import annotations

import json

from sqlalchemy import select

from appliance.records import Answer, AnswerAnalysis, InterviewSession
from appliance.settings import Settings
from appliance.store import Store
from compliance import register
from compliance.actors import Actor
from compliance.gate import Gate
from tests.workers.test_analysis_pipeline import (
    VIDEOS,
    approve_assessments,
    counts,
    give_consents,
    make_interview,
    own_profile_and_settings,  # noqa: F401 (autouse fixture: restores the profile in force)
    run_interview,
)
from workers.analysis import jobs as analysis
from workers.analysis.jobs import HUMAN_ONLY, analyse_answer, local_context

ONE_ANSWER = [(VIDEOS / "candidate_answer.mp4").read_bytes()]


def _session(store: Store, session_id: int) -> InterviewSession:
    with store.session() as db:
        session = db.get(InterviewSession, session_id)
        assert session is not None
        return session


def test_without_face_consent_no_face_or_expression_data_exists(
    store: Store, settings: Settings
) -> None:
    """Face consent declined (a separate consent, PIPL Art. 29): the interview is analysed
    and scored on audio and content only; the face tables hold nothing about the person."""
    analysis.configure(settings)
    approve_assessments(store)
    interview = make_interview(
        store,
        ONE_ANSWER,
        {"recording": True, "ai_scoring": True, "face_analysis": False},
    )
    run_interview(store, interview)
    assert counts(store, interview.subject_id) == {
        "answer_analyses": 1,
        "face_signals": 0,
        "expression_signals": 0,
        "score_reports": 1,
    }
    assert _session(store, interview.session_id).analysis_status == "done"


def test_withdrawn_face_consent_is_not_undone_by_a_rerun(store: Store, settings: Settings) -> None:
    """Face data made with consent is deleted on withdrawal (the register); analysing the
    answer again (a retry) does not bring any of it back."""
    analysis.configure(settings)
    approve_assessments(store)
    interview = make_interview(store, ONE_ANSWER)
    run_interview(store, interview)
    assert counts(store, interview.subject_id)["face_signals"] == 1
    register.withdraw(store, Actor.system("test-dpo"), interview.subject_id, "face_analysis")
    run_interview(store, interview)
    found = counts(store, interview.subject_id)
    assert (found["face_signals"], found["expression_signals"]) == (0, 0)
    assert (found["answer_analyses"], found["score_reports"]) == (1, 1)


def test_eu_profile_produces_no_expression_data_even_with_consent(
    store: Store, settings: Settings
) -> None:
    """Under the EU profile (AI Act Art. 5(1)(f)) with the candidate's face consent: face
    signals, which the profile allows, exist; expression estimates do not."""
    eu = settings.model_copy(update={"jurisdiction": "eu"})
    analysis.configure(eu)
    approve_assessments(store, ("face_analysis", "ai_scoring"))
    interview = make_interview(store, ONE_ANSWER)
    run_interview(store, interview)
    assert counts(store, interview.subject_id) == {
        "answer_analyses": 1,
        "face_signals": 1,
        "expression_signals": 0,
        "score_reports": 1,
    }


def test_declined_ai_scoring_means_human_only_evaluation(store: Store, settings: Settings) -> None:
    """The candidate refused automated scoring (PIPL Art. 24): the answer is transcribed for
    the people who evaluate it, no signals are derived, no report exists, and the session
    says human-only."""
    analysis.configure(settings)
    approve_assessments(store)
    interview = make_interview(
        store, ONE_ANSWER, {"recording": True, "ai_scoring": False, "face_analysis": False}
    )
    run_interview(store, interview)
    assert counts(store, interview.subject_id)["score_reports"] == 0
    assert _session(store, interview.session_id).analysis_status == HUMAN_ONLY
    with store.session() as db:
        answer = db.get(Answer, interview.answer_ids[0])
        row = db.scalars(select(AnswerAnalysis)).one()
        shown = Gate(store).view_many(Actor.system("test"), [answer, row], "processing")
    assert json.loads(shown[0]["transcript"] or "{}")["text"]
    assert shown[1]["signals"] is None and row.status.value == "done"


def test_no_recording_consent_no_analysis(store: Store, settings: Settings) -> None:
    """Without the recording consent (which covers transcription) nothing is derived, and
    the answer and session say why instead of leaving a silent gap."""
    analysis.configure(settings)
    approve_assessments(store)
    interview = make_interview(store, ONE_ANSWER, {"recording": False})
    give_consents(store, interview.subject_id, {"ai_scoring": True, "face_analysis": True})
    analyse_answer(local_context(store, analyse_answer.name), interview.answer_ids[0])
    assert counts(store, interview.subject_id) == {
        "answer_analyses": 1,
        "face_signals": 0,
        "expression_signals": 0,
        "score_reports": 0,
    }
    session = _session(store, interview.session_id)
    assert session.analysis_status == "failed"
    assert session.analysis_error == (
        f"answer {interview.answer_ids[0]}: consent: {analysis.NO_RECORDING_CONSENT}"
    )
    with store.session() as db:
        answer = db.get(Answer, interview.answer_ids[0])
        assert answer is not None and answer.transcript_sealed is None
