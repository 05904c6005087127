"""What the local AI derived from an interview (issue #5): signals per answer and a score
report per session.

Everything derived from a person's voice, face or words is personal data, so the
content is sealed under the subject's key (PersonalField) and read only through
the gate. What stays in the clear is bookkeeping: status, which step failed and
why (never content), model versions, times.

Face data lives in its own tables (`face_signals`, `expression_signals`) so that
"no face data exists for this candidate" is one query: rows there exist only
with the candidate's separate face consent (PIPL Art. 28-29), and
`expression_signals` only where the jurisdiction profile allows expression
analysis at all (never under the EU profile: AI Act Art. 5(1)(f)).

Re-running an analysis replaces these rows (unique per answer / per session);
it never adds a second one.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.personal import PersonalField
from appliance.records.base import Base, UTCDateTime, utcnow


class AnalysisStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class AnswerAnalysis(Base):
    """Speech and content signals of one answer (one take); its transcript is on `Answer`."""

    __tablename__ = "answer_analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id"), unique=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    status: Mapped[AnalysisStatus] = mapped_column(
        Enum(AnalysisStatus, native_enum=False, length=16), default=AnalysisStatus.QUEUED
    )
    step: Mapped[str | None] = mapped_column(String(32))
    """The step running, or the one that failed (asr, speech, face, expression, score)."""
    error: Mapped[str | None] = mapped_column(Text)
    """Why the step failed, for IT: never a word of content."""
    language: Mapped[str | None] = mapped_column(String(8))
    duration_s: Mapped[float | None]
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    signals_sealed: Mapped[bytes | None] = mapped_column("signals", LargeBinary)
    signals = PersonalField("signals_sealed")
    """JSON: speaking rate, pauses, fillers, structure, keyword and competency matches."""


class FaceSignals(Base):
    """Face timeline of one answer: presence, count, gaze, identity. Only with face consent."""

    __tablename__ = "face_signals"

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id"), unique=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    timeline_sealed: Mapped[bytes | None] = mapped_column("timeline", LargeBinary)
    timeline = PersonalField("timeline_sealed")
    """JSON: the `appliance faces` object (fps, samples, ranges) plus summary shares."""
    embedding_sealed: Mapped[bytes | None] = mapped_column("embedding", LargeBinary)
    embedding = PersonalField("embedding_sealed")
    """JSON list: the answer's reference identity embedding (biometric: PIPL Art. 28)."""


class ExpressionSignals(Base):
    """Expression estimates of one answer: a signal with its uncertainty, never a decision.
    Only with face consent and where the jurisdiction profile allows it."""

    __tablename__ = "expression_signals"

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id"), unique=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    signals_sealed: Mapped[bytes | None] = mapped_column("signals", LargeBinary)
    signals = PersonalField("signals_sealed")


class ScoreReport(Base):
    """The AI's advice on one interview session: per dimension a score, confidence and
    evidence. Advises only: status changes need a named person (issue #5, PIPL Art. 24)."""

    __tablename__ = "score_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("interview_sessions.id"), unique=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    report_sealed: Mapped[bytes | None] = mapped_column("report", LargeBinary)
    report = PersonalField("report_sealed")
    """JSON: dimensions [{id, name, weight, score, confidence, evidence, rubric, signals}],
    overall, summary."""


class ScoreOverride(Base):
    """A person replacing an AI score of one dimension, with their reason."""

    __tablename__ = "score_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("score_reports.id"), index=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    dimension_id: Mapped[int] = mapped_column(ForeignKey("scoring_dimensions.id"))
    score: Mapped[float]
    by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    reason_sealed: Mapped[bytes | None] = mapped_column("reason", LargeBinary)
    reason = PersonalField("reason_sealed")
