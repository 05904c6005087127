"""Jurisdiction profiles as code: which features, notices and deadlines the law allows.

One YAML file per profile in this folder; `Settings.jurisdiction` names the one in
force. A profile only ever narrows what the box does: a feature a profile does not
mention is off.

- pipl (default): PIPL, China. Separate consent for sensitive data (Art. 29),
  explanation and refusal of automated decisions (Art. 24), impact assessment first
  (Art. 55), requests answered within the hospital's working-day deadline.
- eu: GDPR and the AI Act. No emotion inference at all (AI Act Art. 5(1)(f)):
  `expression_analysis: false`, and `guard_features` refuses to write an expression
  result whatever code path tries. Requests within one month (GDPR Art. 12(3)).
- illinois: AI Video Interview Act. Notice, explanation and consent before the
  interview (820 ILCS 42/5); deletion within 30 days of a request (42/15).
- nyc: Local Law 144. Notice 10 business days before use, a bias audit no more
  than a year old (Admin. Code 20-871).

The profile in force is recorded in the database (`JurisdictionChange`): changing
`settings.jurisdiction` is logged (table and audit event) the next time a process
calls `activate`, never silent. Both the recorded profile and the one a process
activated must allow a feature for its results to be written.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from appliance.errors import ApplianceError
from appliance.records import (
    ExpressionSignals,
    FaceSignals,
    JurisdictionChange,
    ScoreReport,
    utcnow,
)

PROFILES = Path(__file__).parent
NAMES = ("pipl", "eu", "illinois", "nyc")
DEFAULT = "pipl"
FEATURES = ("face_analysis", "expression_analysis", "ai_scoring")
"""Processing a profile switches on or off (and that needs an impact assessment first)."""


class Deadline(BaseModel):
    """How long the box has to answer a data-subject request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: Literal["working_days", "days", "months"]
    count: int | None = Field(None, ge=1)
    """None: `settings.privacy.request_working_days` (working days only)."""
    law: str

    def describe(self, default_working_days: int) -> str:
        count = self.count if self.count is not None else default_working_days
        unit = {"working_days": "working days", "days": "days", "months": "month(s)"}[self.unit]
        return f"{count} {unit} ({self.law})"


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str
    law: list[str]
    """The provisions this profile implements, cited in notices and the audit pack."""
    expression_analysis: bool = False
    """Facial expression estimates may be produced at all (with face consent)."""
    face_analysis: bool = False
    """Face presence, gaze and identity signals may be produced (with face consent)."""
    ai_scoring: bool = False
    """Automated scoring of answers may be produced (with consent; it only advises)."""
    separate_sensitive_consent: bool = True
    """Face data needs its own consent, never bundled (PIPL Art. 29, GDPR Art. 9, BIPA)."""
    consent_before_interview: bool = False
    """AI notice, explanation and consent must precede the interview (820 ILCS 42/5)."""
    notice_lead_business_days: int = Field(0, ge=0)
    """Notice of an automated tool this many business days before its use (NYC 20-871(b))."""
    bias_audit_max_age_days: int | None = Field(None, ge=1)
    """AI scoring only with a bias audit at most this old (NYC 20-871(a): one year)."""
    impact_assessment: list[str] = ["face_analysis", "ai_scoring"]
    """Features that need an approved impact assessment before they run (PIPL Art. 55)."""
    request_deadline: Deadline = Deadline(unit="working_days", law="hospital setting")
    deadlines: dict[str, Deadline] = {}
    """Per request kind (`RequestKind` value), where the law sets its own."""
    human_review: bool = True
    """A person may ask for a human-only evaluation and review (PIPL Art. 24)."""

    def allows(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; known: {', '.join(FEATURES)}")
        allowed: bool = getattr(self, feature)
        if feature == "expression_analysis":
            # Expression estimates come from the face pipeline: never without it.
            return allowed and self.face_analysis
        return allowed

    def deadline_for(self, kind: str) -> Deadline:
        return self.deadlines.get(kind, self.request_deadline)


@cache
def load_profile(name: str) -> Profile:
    """The profile `name`; ValueError for one this box does not know."""
    if name not in NAMES:
        raise ValueError(f"unknown jurisdiction profile {name!r}; known: {', '.join(NAMES)}")
    data = yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    return Profile(name=name, **data)


class FeatureForbidden(ApplianceError):
    """The jurisdiction profile in force does not allow this processing at all."""


# --- the profile in force -------------------------------------------------------------

_activated: str | None = None


def activate(store: Any, name: str, actor: str = "system") -> JurisdictionChange | None:
    """Put profile `name` in force for this process and record it for the box.

    Called once by every process that opens the store (web app, workers, CLI) with
    `settings.jurisdiction`. When the box's recorded profile differs, the change is
    written (`jurisdiction_changes`) and audited; returns that row, or None.
    """
    global _activated
    profile = load_profile(name)
    _activated = profile.name
    with store.write_transaction() as db:  # two processes may record it at once
        current = recorded_profile(db)
        if current == profile.name:
            return None
        change = JurisdictionChange(
            at=utcnow(), from_profile=current, to_profile=profile.name, actor=actor
        )
        db.add(change)
        db.flush()
        change_id = change.id
    from compliance import audit
    from compliance.actors import Actor

    audit.record(
        store,
        Actor(kind="system", name=actor),
        "jurisdiction.change",
        f"jurisdiction_changes:{change_id}",
        "processing",
        fields=[f"profile:{current or '-'}->{profile.name}"],
    )
    return change


def recorded_profile(db: Session) -> str | None:
    """The profile last recorded for this box (None before any process activated one)."""
    return db.scalars(
        select(JurisdictionChange.to_profile)
        .order_by(JurisdictionChange.at.desc(), JurisdictionChange.id.desc())
        .limit(1)
    ).first()


def process_profile() -> str:
    """This process's profile: the one it activated, else its settings' (read once), so a
    process that never called `activate` still answers to `settings.jurisdiction`."""
    global _activated
    if _activated is None:
        from appliance.settings import load_settings

        try:
            _activated = load_profile(load_settings().jurisdiction).name
        except ApplianceError:
            return DEFAULT  # settings that do not load stop the process elsewhere
    return _activated


def profile_in_force(db: Session) -> Profile:
    """The box's recorded profile, else this process's."""
    return load_profile(recorded_profile(db) or process_profile())


def feature_allowed(db: Session, feature: str) -> bool:
    """Whether the box's recorded profile and this process's both allow `feature` (the
    stricter reading: a process on stale settings cannot widen what the box allows)."""
    names = {process_profile()}
    recorded = recorded_profile(db)
    if recorded is not None:
        names.add(recorded)
    return all(load_profile(n).allows(feature) for n in names)


# The rows each feature produces: a profile that forbids the feature forbids writing them.
_ROWS: dict[type[Any], str] = {
    ExpressionSignals: "expression_analysis",
    FaceSignals: "face_analysis",
    ScoreReport: "ai_scoring",
}


@event.listens_for(Session, "before_flush")
def guard_features(session: Session, _ctx: Any, _instances: Any) -> None:
    """The last line: no session writes a result of a feature the profile forbids (under
    the EU profile no expression result reaches the database, whichever code made it)."""
    kinds = {_ROWS[type(obj)] for obj in (*session.new, *session.dirty) if type(obj) in _ROWS}
    for feature in sorted(kinds):
        with session.no_autoflush:
            allowed = feature_allowed(session, feature)
        if not allowed:
            raise FeatureForbidden(
                f"the jurisdiction profile in force does not allow {feature}; "
                "no result of it may be stored"
            )
