"""Jurisdiction profiles as code (issue #8): under the EU profile no expression result can
be produced; under Illinois a deletion request is due in 30 days; NYC asks for notice ten
business days ahead and a bias audit within a year; changing the profile is logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from appliance.records import (
    Answer,
    AuditEvent,
    ExpressionSignals,
    FaceSignals,
    JurisdictionChange,
    RequestKind,
)
from appliance.settings import Settings
from appliance.store import Store
from compliance import bias, pia, profiles, register, requests
from compliance.actors import Actor
from tests.privacy.privacy_helpers import add_person

DPO = Actor(kind="system", name="cli:dpo")
APPROVER = Actor(kind="system", name="cli:security-admin")
ASSESSMENT = {
    "purpose_and_method": "Estimates from the interview video.",
    "necessity": "Advisory signal only.",
    "impact_and_risks": "Sensitive data; weak signal.",
    "measures": "Separate consent, sealed, never decisive.",
    "conclusion": "Acceptable where the law allows it.",
}


def allow_everything(store: Store, subject_id: str) -> None:
    """Approved assessments and consents: only the profile is left to say no."""
    for feature in profiles.FEATURES:
        row = pia.record(store, DPO, feature, "v1", feature, ASSESSMENT)
        pia.approve(store, APPROVER, row.id)
    for purpose in ("face_analysis", "ai_scoring"):
        notice = register.publish_notice(store, DPO, purpose, "v1", f"{purpose} notice")
        register.record_consent(store, DPO, subject_id, purpose, True, notice.id)


def test_the_profiles_load_and_say_what_the_law_says() -> None:
    eu, pipl = profiles.load_profile("eu"), profiles.load_profile("pipl")
    illinois, nyc = profiles.load_profile("illinois"), profiles.load_profile("nyc")
    assert not eu.expression_analysis and not eu.allows("expression_analysis")
    assert eu.allows("face_analysis") and eu.allows("ai_scoring")
    assert pipl.allows("expression_analysis") and pipl.separate_sensitive_consent
    assert illinois.consent_before_interview
    assert illinois.deadline_for("delete").count == 30
    assert nyc.notice_lead_business_days == 10 and nyc.bias_audit_max_age_days == 365
    assert eu.deadline_for("access").unit == "months"
    assert all(
        isinstance(line, str) for n in profiles.NAMES for line in profiles.load_profile(n).law
    )
    with pytest.raises(ValueError):
        profiles.load_profile("mars")


def test_under_the_eu_profile_no_expression_result_can_be_written(demo: Store) -> None:
    """Even with face consent and approved assessments: `may_process` says no, and a session
    asked to store an expression result refuses at flush, whatever code tries."""
    person = add_person(demo, "Eu")
    allow_everything(demo, person.subject_id)
    with demo.session() as db:
        assert register.may_process(db, person.subject_id, "expression_analysis")  # pipl
    profiles.activate(demo, "eu", DPO.name)
    with demo.session() as db:
        assert not register.may_process(db, person.subject_id, "expression_analysis")
        assert register.may_process(db, person.subject_id, "face_analysis")
        answer_id = db.scalars(
            select(FaceSignals.answer_id).where(FaceSignals.subject_id == person.subject_id)
        ).one()
    with demo.transaction() as db:  # clear the row the helper made under the pipl profile
        db.execute(ExpressionSignals.__table__.delete())
    with pytest.raises(profiles.FeatureForbidden), demo.transaction() as db:
        db.add(ExpressionSignals(answer_id=answer_id, subject_id=person.subject_id))
    # A process still believing in another profile cannot write one either: the box's
    # recorded profile is EU.
    profiles._activated = "pipl"
    with pytest.raises(profiles.FeatureForbidden), demo.transaction() as db:
        row = ExpressionSignals(answer_id=answer_id, subject_id=person.subject_id)
        db.add(row)
        db.flush()
    with demo.session() as db:
        assert db.scalars(select(ExpressionSignals)).all() == []
    # Face signals, which the EU profile allows with consent, still can be written.
    with demo.transaction() as db:
        face = db.scalars(select(FaceSignals).where(FaceSignals.answer_id == answer_id)).one()
        face.timeline = '{"ranges": []}'
    with demo.session() as db:
        face = db.scalars(select(FaceSignals).where(FaceSignals.answer_id == answer_id)).one()
        assert face.timeline == '{"ranges": []}'


def test_changing_the_profile_is_logged(demo: Store) -> None:
    assert profiles.activate(demo, "pipl", "cli:it") is not None  # first record
    assert profiles.activate(demo, "pipl", "cli:it") is None  # unchanged: nothing new
    change = profiles.activate(demo, "eu", "cli:it")
    assert change is not None and (change.from_profile, change.to_profile) == ("pipl", "eu")
    with demo.session() as db:
        rows = db.scalars(select(JurisdictionChange).order_by(JurisdictionChange.id)).all()
        events = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "jurisdiction.change")
        ).all()
        assert profiles.recorded_profile(db) == "eu"
    assert [(r.from_profile, r.to_profile) for r in rows] == [(None, "pipl"), ("pipl", "eu")]
    assert [e.fields for e in events] == [["profile:-->pipl"], ["profile:pipl->eu"]]


def test_under_illinois_a_deletion_request_is_due_in_30_days(
    demo: Store, settings: Settings
) -> None:
    person = add_person(demo, "Il")
    illinois = settings.model_copy(
        update={"jurisdiction": "illinois", "timezone": "America/Chicago"}
    )
    received = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 09:00 in Chicago
    delete = requests.receive(
        demo, illinois, DPO, person.subject_id, RequestKind.DELETE, "link", received_at=received
    )
    local_due = delete.due_at.astimezone(illinois.zone)
    assert local_due.date() == (received.astimezone(illinois.zone) + timedelta(days=30)).date()
    assert (local_due.hour, local_due.minute) == (23, 59)
    assert "820 ILCS 42/15" in delete.deadline_rule
    # Other requests there follow the hospital's working-day deadline.
    access = requests.receive(
        demo, illinois, DPO, person.subject_id, RequestKind.ACCESS, "link", received_at=received
    )
    assert "15 working days" in access.deadline_rule
    # Under the GDPR: one month.
    eu = settings.model_copy(update={"jurisdiction": "eu", "timezone": "Europe/Berlin"})
    gdpr = requests.receive(
        demo, eu, DPO, person.subject_id, RequestKind.DELETE, "hr",
        received_at=datetime(2026, 1, 31, 10, 0, tzinfo=UTC),
    )  # fmt: skip
    assert gdpr.due_at.astimezone(eu.zone).date().isoformat() == "2026-02-28"


def test_nyc_needs_a_bias_audit_and_notice_ten_business_days_ahead(demo: Store) -> None:
    person = add_person(demo, "Nyc")
    allow_everything(demo, person.subject_id)  # notified and consenting now
    profiles.activate(demo, "nyc", DPO.name)
    now = datetime.now(UTC)
    two_weeks = now + timedelta(days=15)  # at least 10 business days on
    with demo.session() as db:
        assert not register.may_process(db, person.subject_id, "ai_scoring", two_weeks)
        assert register.may_process(db, person.subject_id, "face_analysis")
    bias.run_audit(demo, Actor.system("bias-1"))
    with demo.session() as db:
        assert not register.may_process(db, person.subject_id, "ai_scoring", now)  # notice
        assert register.may_process(db, person.subject_id, "ai_scoring", two_weeks)
        assert not register.may_process(
            db, person.subject_id, "ai_scoring", now + timedelta(days=400)
        )  # the audit is over a year old by then
    assert (
        register.business_days_between(
            datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC)
        )
        == 10
    )  # Friday to Friday two weeks on


def test_under_illinois_ai_consent_must_come_before_the_interview(demo: Store) -> None:
    person = add_person(demo, "Before")
    profiles.activate(demo, "illinois", DPO.name)
    with demo.transaction() as db:
        answer = db.get(Answer, person.answer_id)
        assert answer is not None
        answer.started_at = datetime.now(UTC) - timedelta(hours=1)
    allow_everything(demo, person.subject_id)  # consent only after the first answer
    with demo.session() as db:
        assert not register.may_process(db, person.subject_id, "ai_scoring")
    with demo.transaction() as db:
        answer = db.get(Answer, person.answer_id)
        assert answer is not None
        answer.started_at = datetime.now(UTC) + timedelta(hours=1)
    with demo.session() as db:
        assert register.may_process(db, person.subject_id, "ai_scoring")


def test_a_process_that_never_activated_a_profile_follows_its_settings(
    demo: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker on an EU box refuses expression results even before anyone recorded the
    profile: it reads `settings.jurisdiction` itself."""
    person = add_person(demo, "Worker")
    monkeypatch.setenv("ENCLAVE_CONFIG", "")
    monkeypatch.setenv("ENCLAVE_SECRETS", "/nonexistent/secrets.toml")
    monkeypatch.setenv("ENCLAVE_JURISDICTION", "eu")
    profiles._activated = None
    with demo.session() as db:
        assert profiles.recorded_profile(db) is None
        assert not profiles.feature_allowed(db, "expression_analysis")
    with pytest.raises(profiles.FeatureForbidden), demo.transaction() as db:
        row = db.scalars(
            select(ExpressionSignals).where(ExpressionSignals.subject_id == person.subject_id)
        ).one()
        row.signals = '{"note": "rewritten"}'
