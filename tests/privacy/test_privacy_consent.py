"""The consent register (issue #8): withdrawing face consent stops face analysis and deletes
the face data; a new AI-scoring notice text pauses scoring for those who consented to the
old one until they consent again; sensitive data needs its own consent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from appliance.records import (
    Answer,
    AuditEvent,
    ConsentPurpose,
    ExpressionSignals,
    FaceSignals,
    ScoreReport,
)
from appliance.store import Store
from compliance import consent, pia, register
from compliance.actors import Actor
from tests.conftest import Box
from tests.privacy.privacy_helpers import add_person, database_texts, found
from workers.jobs import JobContext, job, queue_for
from workers.privacy import canceller

DPO = Actor(kind="system", name="cli:dpo")
APPROVER = Actor(kind="system", name="cli:security-admin")
ASSESSMENT = {
    "purpose_and_method": "Face presence and identity consistency during the interview.",
    "necessity": "Checks the candidate answers alone; no decision is made from it.",
    "impact_and_risks": "Biometric data: misuse, wrong matches; mitigated below.",
    "measures": "Separate consent, sealed per person, deleted on withdrawal, no staff view.",
    "conclusion": "Proportionate with these measures.",
}


@job(queue="analysis", retries=0)
def privacy_test_face_job(ctx: JobContext, answer_id: int) -> None:
    """Stands in for the face step waiting in the queue."""


def approved(store: Store, feature: str) -> None:
    row = pia.record(store, DPO, feature, "v1", f"{feature} assessment", ASSESSMENT)
    pia.approve(store, APPROVER, row.id)


def count(store: Store, model: type, subject_id: str) -> int:
    with store.session() as db:
        return int(
            db.scalar(select(func.count()).select_from(model).where(model.subject_id == subject_id))
            or 0
        )


def test_withdrawing_face_consent_stops_face_analysis_and_deletes_its_data(
    demo: Store, redis_box: Box
) -> None:
    redis = redis_box.redis
    redis.flushdb()
    person = add_person(demo, "Face")
    other = add_person(demo, "Other")
    approved(demo, "face_analysis")
    notice = register.publish_notice(demo, DPO, "face_analysis", "2026-1", "人脸分析告知")
    for who in (person, other):
        register.record_consent(demo, DPO, who.subject_id, "face_analysis", True, notice.id)
    with demo.session() as db:
        assert register.may_process(db, person.subject_id, "face_analysis")
    waiting = privacy_test_face_job.enqueue(demo, redis, person.answer_id)

    result = register.withdraw(
        demo, DPO, person.subject_id, "face_analysis", canceller(redis, demo)
    )

    # Stops: the pipeline's question now answers no, and the waiting face job is gone.
    with demo.session() as db:
        assert not consent.holds(db, person.subject_id, ConsentPurpose.FACE_ANALYSIS)
        assert not register.may_process(db, person.subject_id, "face_analysis")
        assert not register.may_process(db, person.subject_id, "expression_analysis")
        assert register.may_process(db, other.subject_id, "face_analysis")
    assert result.jobs_cancelled == [waiting.rq_job_id]
    assert waiting.rq_job_id not in queue_for("analysis", redis).get_job_ids()
    # Deleted: face and expression signals, embeddings included; nothing else of theirs.
    assert result.deleted == {"expression_signals": 1, "face_signals": 1}
    assert count(demo, FaceSignals, person.subject_id) == 0
    assert count(demo, ExpressionSignals, person.subject_id) == 0
    face_strings = [
        person.values[k]
        for k in ("face_signals.timeline", "face_signals.embedding", "expression_signals.signals")
    ]
    assert found(face_strings, database_texts(demo)) == []
    assert count(demo, Answer, person.subject_id) == 1
    assert count(demo, ScoreReport, person.subject_id) == 1
    assert count(demo, FaceSignals, other.subject_id) == 1
    with demo.session() as db:
        event = db.scalars(select(AuditEvent).where(AuditEvent.action == "consent.withdraw")).one()
    assert event.subject_ids == [person.subject_id]
    assert "purpose:face_analysis" in event.fields


def test_a_new_ai_scoring_notice_pauses_scoring_until_consent_is_given_again(
    demo: Store,
) -> None:
    early, late = add_person(demo, "Early"), add_person(demo, "Late")
    approved(demo, "ai_scoring")
    first = register.publish_notice(demo, DPO, "ai_scoring", "v1", "AI 评分告知（第一版）")
    for who in (early, late):
        register.record_consent(demo, DPO, who.subject_id, "ai_scoring", True, first.id)
    with demo.session() as db:
        assert register.may_process(db, early.subject_id, "ai_scoring")

    second = register.publish_notice(
        demo, DPO, "ai_scoring", "v2", "AI 评分告知（第二版，新增说明）"
    )

    with demo.session() as db:
        for who in (early, late):
            assert not consent.holds(db, who.subject_id, ConsentPurpose.AI_SCORING)
            assert not register.may_process(db, who.subject_id, "ai_scoring")
        assert register.needs_new_consent(db, "ai_scoring") == sorted(
            [early.subject_id, late.subject_id]
        )
        assert register.statistics(db)["ai_scoring"]["stale"] == 2
    # The old text can no longer be consented to; the new one can, and scoring resumes.
    with pytest.raises(register.RegisterError):
        register.record_consent(demo, DPO, late.subject_id, "ai_scoring", True, first.id)
    register.record_consent(demo, DPO, late.subject_id, "ai_scoring", True, second.id)
    with demo.session() as db:
        assert consent.holds(db, late.subject_id, ConsentPurpose.AI_SCORING)
        assert register.may_process(db, late.subject_id, "ai_scoring")
        assert not register.may_process(db, early.subject_id, "ai_scoring")
        assert register.needs_new_consent(db, "ai_scoring") == [early.subject_id]


def test_face_data_needs_its_own_consent(demo: Store) -> None:
    """Consent to recording and AI scoring says nothing about face analysis (PIPL Art. 29):
    each purpose is its own answer to its own notice."""
    person = add_person(demo, "Separate")
    approved(demo, "face_analysis")
    approved(demo, "ai_scoring")
    for purpose in ("recording", "ai_scoring"):
        notice = register.publish_notice(demo, DPO, purpose, "v1", f"{purpose} 告知")
        register.record_consent(demo, DPO, person.subject_id, purpose, True, notice.id)
    face = register.publish_notice(demo, DPO, "face_analysis", "v1", "人脸分析告知")
    with demo.session() as db:
        assert register.may_process(db, person.subject_id, "ai_scoring")
        assert not register.may_process(db, person.subject_id, "face_analysis")
    with pytest.raises(register.RegisterError):  # a notice of another purpose
        register.record_consent(demo, DPO, person.subject_id, "face_analysis", True, face.id + 99)
    register.record_consent(demo, DPO, person.subject_id, "face_analysis", False, face.id)
    with demo.session() as db:
        assert not register.may_process(db, person.subject_id, "face_analysis")
        assert register.statistics(db)["face_analysis"]["declined"] == 1
    assert register.PURPOSES["face_analysis"].sensitive
    assert {p.value for p in ConsentPurpose} <= set(register.PURPOSES)


def test_withdrawing_ai_scoring_consent_deletes_the_scores(demo: Store) -> None:
    person = add_person(demo, "Scores")
    notice = register.publish_notice(demo, DPO, "ai_scoring", "v1", "AI 评分告知")
    register.record_consent(demo, DPO, person.subject_id, "ai_scoring", True, notice.id)
    result = register.withdraw(demo, DPO, person.subject_id, "ai_scoring")
    assert result.deleted == {"answer_analyses": 1, "score_overrides": 1, "score_reports": 1}
    assert found([person.values["score_reports.report"]], database_texts(demo)) == []
    assert count(demo, FaceSignals, person.subject_id) == 1  # face data is another consent's


def test_consent_without_any_notice_text_keeps_the_old_rule(demo: Store) -> None:
    """A box where no notice was published yet: the latest answer alone decides (issue #5's
    consents), and a withdrawal still ends it."""
    from appliance.records import Consent, utcnow

    person = add_person(demo, "Legacy")
    with demo.transaction() as db:
        db.add(
            Consent(
                subject_id=person.subject_id,
                purpose=ConsentPurpose.RECORDING,
                granted=True,
                notice_version="kiosk-1",
                text_sha256="0" * 64,
                given_at=utcnow() - timedelta(days=1),
            )
        )
    with demo.session() as db:
        assert consent.holds(db, person.subject_id, ConsentPurpose.RECORDING)
    register.withdraw(demo, DPO, person.subject_id, "recording")
    with demo.session() as db:
        assert not consent.holds(db, person.subject_id, ConsentPurpose.RECORDING)
    assert found([person.values["answers.transcript"]], database_texts(demo)) == []
    assert found([person.values["candidates.name"]], database_texts(demo))
