"""A person overriding one dimension of an AI score report, with a reason (issue #5).

AI scores advise; a named human decides (PIPL Art. 24, ARCHITECTURE.md "Interviews
and AI"). An override records who replaced which dimension's score, with what, and
why: the reason is the person's words about the candidate, so it is sealed under the
candidate's key and written through the gate (`score_overrides.reason`: HR and HR
admin write it), which records the `update` event. An override changes nothing
else: no application stage, no other dimension, no AI score (the report keeps what
the AI said, the views show both).

Why here and not in the web app: the rule "who may override, and what an override
is" belongs beside the policy it applies, and the API, the portal and any later
review tool call the same function.

Order of work: the policy and row scope are checked first (a refusal leaves a
`denied` event and no row); then the row is inserted with its non-personal columns,
and the gate writes the reason (rechecking scope and field rule in its own
transaction). Should the gate still refuse, the row is removed again. A row left
without a reason by a crash between the two steps is no override: readers skip
overrides whose reason is empty (`effective_overrides`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.records import InterviewSession, ScoreOverride, ScoreReport, ScoringDimension
from appliance.store import Store
from compliance import audit
from compliance.actors import Actor
from compliance.gate import AccessDenied, Gate, NotInScope
from compliance.policy import FieldRule

REASON_FIELD = "score_overrides.reason"
SCORE_MIN = 0.0
SCORE_MAX = 10.0
"""The report's scale (workers.analysis.scoring scores 0-10, "沟通能力 8.5")."""
REASON_LIMIT = 2000


class OverrideRefused(ValueError):
    """The override itself is malformed (unknown dimension, score off the scale, no reason):
    the message says what to correct (400)."""


def may_override(gate: Gate, actor: Actor, purpose: str) -> bool:
    """Whether some role of the actor writes override reasons for `purpose` (to show the form).

    Row scope still applies per report; candidates and the box's jobs never override.
    """
    return bool(_writer_roles(gate, actor, purpose))


def _writer_roles(gate: Gate, actor: Actor, purpose: str) -> list[str]:
    if actor.kind != "staff":
        return []
    return [
        grant.role.value
        for grant in actor.grants
        if purpose in gate.policy.role(grant.role.value).purposes
        and gate.policy.rule(grant.role.value, REASON_FIELD) >= FieldRule.WRITE
    ]


def override_score(
    store: Store,
    actor: Actor,
    session_id: int,
    dimension_id: int,
    score: float,
    reason: str,
    purpose: str,
) -> int:
    """Record `actor`'s score for one dimension of the session's report, with the reason.

    Returns the override's id. LookupError: the session has no report (404);
    AccessDenied / NotInScope: refused by the policy (403 / 404, recorded);
    OverrideRefused: bad input (400).
    """
    gate = Gate(store)
    reason = reason.strip()
    with store.session() as db:
        report = db.scalars(select(ScoreReport).where(ScoreReport.session_id == session_id)).first()
        if report is None or db.get(InterviewSession, session_id) is None:
            raise LookupError(f"interview session {session_id} has no score report")
        entity = f"score_reports:{report.id}"
        subject_id = report.subject_id
        if not _writer_roles(gate, actor, purpose):
            _deny(store, actor, entity, purpose, subject_id)
            raise AccessDenied(f"this account may not override AI scores for {purpose!r}")
        in_scope = db.scalar(
            select(ScoreReport.id).where(
                ScoreReport.id == report.id, gate.scope(actor, ScoreReport, "view", purpose)
            )
        )
        if in_scope is None:
            _deny(store, actor, entity, purpose, subject_id)
            raise NotInScope(f"score report {report.id} is outside this account's row scope")
        _check(db, report, dimension_id, score, reason)
        report_id = report.id
    with store.transaction() as db:
        row = ScoreOverride(
            report_id=report_id,
            subject_id=subject_id,
            dimension_id=dimension_id,
            score=float(score),
            by_id=actor.user_id,
        )
        db.add(row)
        db.flush()
        override_id = row.id
    try:
        with store.session() as db:
            written = db.get(ScoreOverride, override_id)
            gate.update(actor, written, {"reason": reason}, purpose)
    except BaseException:
        with store.transaction() as db:
            db.execute(delete(ScoreOverride).where(ScoreOverride.id == override_id))
        raise
    return override_id


def _check(db: Session, report: ScoreReport, dimension_id: int, score: float, reason: str) -> None:
    if not reason:
        raise OverrideRefused("give the reason for the override: it is required")
    if len(reason) > REASON_LIMIT:
        raise OverrideRefused(f"the reason may be at most {REASON_LIMIT} characters")
    if not (math.isfinite(score) and SCORE_MIN <= score <= SCORE_MAX):
        raise OverrideRefused(f"the score must lie between {SCORE_MIN:g} and {SCORE_MAX:g}")
    dimension = db.get(ScoringDimension, dimension_id)
    template_id = report_template_id(db, report)
    if dimension is None or dimension.template_id != template_id:
        raise OverrideRefused(f"dimension {dimension_id} is not one of this report's dimensions")


def report_template_id(db: Session, report: ScoreReport) -> int | None:
    """The scoring template the report's job uses (its dimensions are what may be overridden)."""
    session = db.get(InterviewSession, report.session_id)
    if session is None:
        return None
    return session.application.job.scoring_template_id


def _deny(store: Store, actor: Actor, entity: str, purpose: str, subject_id: str) -> None:
    audit.record(
        store,
        actor,
        "update",
        entity,
        purpose,
        result="denied",
        subject_ids=[subject_id],
        fields=[REASON_FIELD],
    )


def effective_overrides(overrides: Iterable[Any]) -> dict[int, Any]:
    """The override in force per dimension id: the latest one with a reason.

    `overrides` are `Shown` rows of `score_overrides` (or anything with `.row` and
    `.get("reason")`) in any order; an override the viewer may not read the reason
    of still counts (the score is not personal), one with an empty reason does not.
    """
    latest: dict[int, Any] = {}
    for shown in sorted(overrides, key=lambda s: (s.row.created_at, s.row.id)):
        hidden = "reason" in getattr(shown, "hidden", ())
        if hidden or shown.get("reason"):
            latest[shown.row.dimension_id] = shown
    return latest
