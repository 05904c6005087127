"""Personal-information impact assessments (PIPL Art. 55-56; GDPR Art. 35).

PIPL Art. 55 asks for an assessment before processing sensitive personal
information (face data) and before using personal information for automated
decisions (AI scoring); Art. 56 says what it covers and that it is kept for at
least three years. So:

- `record` stores an assessment of one feature with the four parts Art. 56 names
  (purpose and method lawful, proper and necessary; the impact on the person and
  the risks; whether the protective measures are lawful, effective and proportionate;
  the conclusion), who made it, and keeps it `KEEP_YEARS` years.
- `approve` is a second, named person (the DPO) signing it off.
- `required_ok(db, feature)` is what the pipeline and the switch for a feature ask:
  an approved assessment, not withdrawn, not past its review date, for the feature,
  wherever the profile in force asks for one. Without it the feature stays off.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.records import ImpactAssessment, utcnow
from appliance.store import Store
from compliance import audit, profiles
from compliance.actors import Actor

KEEP_YEARS = 3
"""PIPL Art. 56: assessment reports and processing records kept at least three years."""
REVIEW_DAYS = 365
"""Reviewed at least yearly, and whenever the processing changes."""
SECTIONS = ("purpose_and_method", "necessity", "impact_and_risks", "measures", "conclusion")
"""PIPL Art. 56(1)-(3) and the conclusion; every section must be filled."""


class AssessmentIncomplete(ValueError):
    """An assessment without one of the parts the law asks for; names the missing ones."""


def record(
    store: Store,
    actor: Actor,
    feature: str,
    version: str,
    title: str,
    body: dict[str, Any],
    review_days: int = REVIEW_DAYS,
) -> ImpactAssessment:
    if feature not in profiles.FEATURES:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(profiles.FEATURES)}")
    missing = [s for s in SECTIONS if not str(body.get(s, "")).strip()]
    if missing:
        raise AssessmentIncomplete(
            f"the assessment lacks {', '.join(missing)} (PIPL Art. 56 asks for each)"
        )
    now = utcnow()
    raw = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    with store.transaction() as db:
        row = ImpactAssessment(
            feature=feature,
            version=version,
            title=title,
            body=body,
            sha256=hashlib.sha256(raw).hexdigest(),
            assessed_by=actor.name,
            assessed_at=now,
            review_by=now + timedelta(days=review_days),
            keep_until=now + timedelta(days=365 * KEEP_YEARS + 1),
        )
        db.add(row)
        db.flush()
    audit.record(store, actor, "pia.record", f"impact_assessments:{row.id}", "processing")
    return row


def approve(store: Store, actor: Actor, assessment_id: int) -> None:
    """The sign-off by a second person: whoever wrote it cannot approve it."""
    with store.transaction() as db:
        row = db.get(ImpactAssessment, assessment_id)
        if row is None or row.withdrawn_at is not None:
            raise ValueError(f"no assessment {assessment_id} to approve")
        if row.assessed_by == actor.name:
            raise PermissionError("an assessment is approved by someone other than its author")
        row.approved_by, row.approved_at = actor.name, utcnow()
    audit.record(store, actor, "pia.approve", f"impact_assessments:{assessment_id}", "processing")


def withdraw(store: Store, actor: Actor, assessment_id: int) -> None:
    """The processing changed, or the assessment no longer holds: the feature stops."""
    with store.transaction() as db:
        row = db.get(ImpactAssessment, assessment_id)
        if row is None:
            raise ValueError(f"no assessment {assessment_id}")
        row.withdrawn_at = utcnow()
    audit.record(store, actor, "pia.withdraw", f"impact_assessments:{assessment_id}", "processing")


def current(db: Session, feature: str, now: datetime | None = None) -> ImpactAssessment | None:
    """The newest approved assessment of `feature` still in force."""
    moment = now or utcnow()
    return db.scalars(
        select(ImpactAssessment)
        .where(
            ImpactAssessment.feature == feature,
            ImpactAssessment.approved_at.is_not(None),
            ImpactAssessment.withdrawn_at.is_(None),
            ImpactAssessment.review_by > moment,
        )
        .order_by(ImpactAssessment.approved_at.desc(), ImpactAssessment.id.desc())
        .limit(1)
    ).first()


def required_ok(db: Session, feature: str) -> bool:
    """True when `feature` may be switched on as far as assessments go: the profile in force
    asks for none, or an approved one is in force. The pipeline asks before each run."""
    if feature not in profiles.profile_in_force(db).impact_assessment:
        return True
    return current(db, feature) is not None


def listing(db: Session) -> list[dict[str, Any]]:
    """Every assessment, for the audit pack and the record of processing."""
    rows = db.scalars(select(ImpactAssessment).order_by(ImpactAssessment.id))
    return [
        {
            "id": r.id,
            "feature": r.feature,
            "version": r.version,
            "title": r.title,
            "sha256": r.sha256,
            "assessed_by": r.assessed_by,
            "assessed_at": audit.format_time(r.assessed_at),
            "approved_by": r.approved_by,
            "approved_at": None if r.approved_at is None else audit.format_time(r.approved_at),
            "review_by": audit.format_time(r.review_by),
            "keep_until": audit.format_time(r.keep_until),
            "withdrawn_at": None if r.withdrawn_at is None else audit.format_time(r.withdrawn_at),
            "body": r.body,
        }
        for r in rows
    ]
