"""The consent register: purposes, versioned notice texts, consents and withdrawals.

- Purposes (`PURPOSES`) say what each consent covers and what stops when it is
  withdrawn. Face analysis is sensitive personal information (PIPL Art. 28-29,
  GDPR Art. 9, BIPA): its consent is always its own step, never bundled with another
  (`record_consent` takes exactly one purpose and one notice text).
- Notice texts are versioned per purpose and language. Publishing a new version
  retires the old one: consents given under the old text stop holding
  (`compliance.consent.holds`) and the processing they covered pauses until the person
  consents again (`needs_new_consent` lists who must be asked).
- Withdrawal is possible at any time (PIPL Art. 15, GDPR Art. 7(3)). It stops the
  processing (`holds` is false from that moment) and deletes what that processing
  produced (PIPL Art. 47(1)(3)): withdrawing face consent deletes the face and
  expression signals (embeddings included); withdrawing AI scoring deletes the score
  reports (with the overrides made on them) and the per-answer signals that fed them;
  withdrawing recording deletes the recordings, transcripts and all derived from them.
- `may_process` is what a pipeline asks before a step and again before writing: the
  profile allows the feature, an approved impact assessment exists, and the person's
  consent holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from appliance.records import (
    Answer,
    AnswerAnalysis,
    Consent,
    ConsentPurpose,
    ExpressionSignals,
    FaceSignals,
    NoticeText,
    Recording,
    ScoreOverride,
    ScoreReport,
    Subject,
    utcnow,
)
from appliance.store import Store
from compliance import audit, bias, consent, pia, profiles
from compliance.actors import Actor
from compliance.deletion import JobCanceller, delete_blobs, delete_rows, footprint


@dataclass(frozen=True)
class Purpose:
    value: str
    title_zh: str
    title_en: str
    sensitive: bool
    """Sensitive personal information: a separate consent (PIPL Art. 29)."""
    covers: str
    on_withdrawal: str
    """What withdrawing deletes (PIPL Art. 47(1)(3))."""


PURPOSES: dict[str, Purpose] = {
    p.value: p
    for p in (
        Purpose(
            "screening",
            "简历筛选",
            "Screening",
            False,
            "Reading and matching the application and resume against the job.",
            "The application leaves screening; a deletion request removes the rest.",
        ),
        Purpose(
            "recording",
            "面试录制与转写",
            "Recording and transcription",
            False,
            "Recording the interview answers and transcribing them on the box.",
            "Recordings, transcripts and everything derived from them are deleted.",
        ),
        Purpose(
            "ai_scoring",
            "AI 辅助评分",
            "AI scoring",
            False,
            "Automated scoring of the answers; it advises, a named person decides.",
            "Score reports (with overrides made on them) and per-answer signals are deleted; "
            "a person evaluates instead (PIPL Art. 24).",
        ),
        Purpose(
            "face_analysis",
            "人脸分析（敏感个人信息）",
            "Face analysis (sensitive)",
            True,
            "Face presence, gaze and identity consistency and, where the profile allows, "
            "expression estimates, from the interview video.",
            "Face and expression signals, identity embeddings included, are deleted.",
        ),
        Purpose(
            "background_check",
            "背景调查",
            "Background check",
            False,
            "Checking licences, degrees and references with their issuers.",
            "Background check results are deleted.",
        ),
        Purpose(
            "talent_pool",
            "人才库保留",
            "Talent pool",
            False,
            "Keeping the file after the job closes, to offer later openings.",
            "The file leaves the talent pool and follows the retention schedule.",
        ),
    )
}


class RegisterError(ValueError):
    """A consent or notice that cannot be recorded as given; the message says why."""


def purpose_enum(purpose: str) -> ConsentPurpose:
    """The stored consent purpose; RegisterError for one the records cannot store yet."""
    if purpose not in PURPOSES:
        raise RegisterError(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    try:
        return ConsentPurpose(purpose)
    except ValueError:
        raise RegisterError(
            f"consents for {purpose!r} cannot be stored yet: ConsentPurpose has no such member"
        ) from None


def text_sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# --- notice texts ---------------------------------------------------------------------


def current_notice(db: Session, purpose: str, language: str = "zh-CN") -> NoticeText | None:
    return db.scalars(
        select(NoticeText)
        .where(
            NoticeText.purpose == purpose,
            NoticeText.language == language,
            NoticeText.retired_at.is_(None),
        )
        .order_by(NoticeText.published_at.desc(), NoticeText.id.desc())
        .limit(1)
    ).first()


def publish_notice(
    store: Store, actor: Actor, purpose: str, version: str, body: str, language: str = "zh-CN"
) -> NoticeText:
    """Publish a new notice text; the previous one of the purpose and language retires, and
    every consent given under it stops holding until the person consents again."""
    if purpose not in PURPOSES:
        raise RegisterError(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    if not body.strip() or not version.strip():
        raise RegisterError("a notice needs a version and a text")
    with store.transaction() as db:
        now = utcnow()
        db.execute(
            update(NoticeText)
            .where(
                NoticeText.purpose == purpose,
                NoticeText.language == language,
                NoticeText.retired_at.is_(None),
            )
            .values(retired_at=now)
        )
        notice = NoticeText(
            purpose=purpose,
            version=version.strip(),
            language=language,
            body=body,
            sha256=text_sha256(body),
            published_at=now,
            published_by=actor.name,
        )
        db.add(notice)
        db.flush()
    audit.record(store, actor, "notice.publish", f"notice_texts:{notice.id}", "processing")
    return notice


# --- consents -------------------------------------------------------------------------


def record_consent(
    store: Store,
    actor: Actor,
    subject_id: str,
    purpose: str,
    granted: bool,
    notice_id: int,
    channel: str = "kiosk",
) -> Consent:
    """One person's answer to one current notice. One purpose per call: a sensitive
    purpose is never consented to together with another (PIPL Art. 29)."""
    stored = purpose_enum(purpose)
    with store.transaction() as db:
        if db.get(Subject, subject_id) is None:
            raise RegisterError(f"no subject {subject_id}")
        notice = db.get(NoticeText, notice_id)
        if notice is None or notice.purpose != purpose:
            raise RegisterError(f"notice {notice_id} is not a notice for {purpose!r}")
        if notice.retired_at is not None:
            raise RegisterError(
                f"notice {notice_id} ({purpose} {notice.version}) was replaced; show the "
                "current text and ask again"
            )
        row = Consent(
            subject_id=subject_id,
            purpose=stored,
            granted=granted,
            notice_version=notice.version,
            text_sha256=notice.sha256,
            channel=channel,
            given_at=utcnow(),
        )
        db.add(row)
        db.flush()
    audit.record(
        store,
        actor,
        "consent.give" if granted else "consent.decline",
        f"consents:{row.id}",
        "processing",
        subject_ids=[subject_id],
        fields=[f"purpose:{purpose}"],
    )
    return row


def needs_new_consent(db: Session, purpose: str) -> list[str]:
    """Subjects whose latest answer was yes, not withdrawn, but under a retired text: their
    processing for `purpose` is paused until they consent to the current one."""
    stored = purpose_enum(purpose)
    hashes = consent.current_text_hashes(db, purpose)
    if hashes is None:
        return []
    return sorted(
        row.subject_id
        for row in _latest_rows(db, stored)
        if row.granted and row.withdrawn_at is None and row.text_sha256 not in hashes
    )


def _latest_rows(db: Session, purpose: ConsentPurpose) -> list[Consent]:
    newest = (
        select(Consent.subject_id, func.max(Consent.id).label("id"))
        .where(Consent.purpose == purpose)
        .group_by(Consent.subject_id)
        .subquery()
    )
    return list(db.scalars(select(Consent).join(newest, Consent.id == newest.c.id)))


def statistics(db: Session) -> dict[str, dict[str, int]]:
    """Per purpose, by each person's latest answer: granted (holding), stale (granted under
    a retired text), declined and withdrawn. For the register page and the audit pack."""
    out: dict[str, dict[str, int]] = {}
    for stored in ConsentPurpose:
        hashes = consent.current_text_hashes(db, stored.value)
        counts = {"granted": 0, "stale": 0, "declined": 0, "withdrawn": 0}
        for row in _latest_rows(db, stored):
            if row.withdrawn_at is not None:
                counts["withdrawn"] += 1
            elif not row.granted:
                counts["declined"] += 1
            elif hashes is not None and row.text_sha256 not in hashes:
                counts["stale"] += 1
            else:
                counts["granted"] += 1
        out[stored.value] = counts
    return out


# --- withdrawal -----------------------------------------------------------------------

# What each purpose's processing produced, deleted when its consent is withdrawn.
_PRODUCED: dict[ConsentPurpose, tuple[type[Any], ...]] = {
    ConsentPurpose.FACE_ANALYSIS: (ExpressionSignals, FaceSignals),
    ConsentPurpose.AI_SCORING: (ScoreOverride, ScoreReport, AnswerAnalysis),
    ConsentPurpose.RECORDING: (
        ScoreOverride,
        ScoreReport,
        ExpressionSignals,
        FaceSignals,
        AnswerAnalysis,
        Recording,
    ),
}


@dataclass
class Withdrawal:
    subject_id: str
    purpose: str
    consent_id: int | None
    deleted: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    jobs_cancelled: list[str] = field(default_factory=list)


def withdraw(
    store: Store,
    actor: Actor,
    subject_id: str,
    purpose: str,
    cancel_jobs: JobCanceller | None = None,
) -> Withdrawal:
    """Withdraw the person's consent for `purpose`: the processing stops now (`holds` turns
    false before anything else happens) and what it produced is deleted."""
    stored = purpose_enum(purpose)
    with store.transaction() as db:
        row = consent.latest(db, subject_id, stored)
        if row is not None and row.withdrawn_at is None:
            row.withdrawn_at = utcnow()
        consent_id = row.id if row is not None else None
    result = Withdrawal(subject_id, purpose, consent_id)
    produced = _PRODUCED.get(stored, ())
    with store.session() as db:
        rows = {
            model.__tablename__: list(
                db.scalars(select(model.id).where(model.subject_id == subject_id))
            )
            for model in produced
        }
        blob_ids = (
            list(db.scalars(select(Recording.blob_id).where(Recording.subject_id == subject_id)))
            if Recording in produced
            else []
        )
    if cancel_jobs is not None:
        with store.session() as db:
            everything = footprint(db, subject_id)
        everything.purpose = purpose
        result.jobs_cancelled = sorted(cancel_jobs(everything))
    with store.transaction() as db:
        result.deleted = {t: n for t, n in delete_rows(db, rows).items() if n}
        if stored is ConsentPurpose.RECORDING:
            db.execute(
                update(Answer).where(Answer.subject_id == subject_id).values(transcript_sealed=None)
            )
    result.blobs = delete_blobs(store, blob_ids)
    audit.record(
        store,
        actor,
        "consent.withdraw",
        f"consents:{consent_id}" if consent_id is not None else f"subjects:{subject_id}",
        "data_request",
        subject_ids=[subject_id],
        fields=[f"purpose:{purpose}", *(f"deleted:{t}" for t in sorted(result.deleted))],
    )
    return result


# --- the pipeline's question ----------------------------------------------------------

_FEATURE_PURPOSE = {
    "face_analysis": ConsentPurpose.FACE_ANALYSIS,
    "expression_analysis": ConsentPurpose.FACE_ANALYSIS,
    "ai_scoring": ConsentPurpose.AI_SCORING,
}


def may_process(db: Session, subject_id: str, feature: str, now: datetime | None = None) -> bool:
    """Whether `feature` may run for this person now. All of:

    - the jurisdiction profile allows it (never expression under the EU profile);
    - its impact assessment is approved and in force (PIPL Art. 55);
    - for AI scoring, a bias audit recent enough where the profile asks for one
      (NYC 20-871(a)), the person notified far enough ahead (NYC 20-871(b): 10
      business days), and consent given before the interview where the profile says so
      (820 ILCS 42/5);
    - the person's consent holds, under the notice text in force.
    """
    moment = now or utcnow()
    if not (profiles.feature_allowed(db, feature) and pia.required_ok(db, feature)):
        return False
    purpose = _FEATURE_PURPOSE[feature]
    if not consent.holds(db, subject_id, purpose):
        return False
    profile = profiles.profile_in_force(db)
    given = consent.latest(db, subject_id, purpose)
    if feature != "ai_scoring" or given is None:
        return True
    max_age = profile.bias_audit_max_age_days
    if max_age is not None and not bias.audit_current(db, max_age, moment):
        return False
    lead = profile.notice_lead_business_days
    if lead and business_days_between(given.given_at, moment) < lead:
        return False
    return not (profile.consent_before_interview and not _before_interviews(db, given))


def business_days_between(start: datetime, end: datetime) -> int:
    """Monday-to-Friday days after `start`'s date up to and including `end`'s."""
    day, last, count = start.date(), end.date(), 0
    while day < last:
        day += timedelta(days=1)
        count += day.weekday() < 5
    return count


def _before_interviews(db: Session, given: Consent) -> bool:
    """The consent came before the person's first answer was recorded (820 ILCS 42/5)."""
    first = db.scalar(
        select(func.min(Answer.started_at)).where(Answer.subject_id == given.subject_id)
    )
    return first is None or given.given_at <= first


def subjects_with(db: Session, purpose: str, subject_ids: Iterable[str]) -> set[str]:
    """Of `subject_ids`, those whose consent for `purpose` holds now."""
    stored = purpose_enum(purpose)
    return {s for s in subject_ids if consent.holds(db, s, stored)}
