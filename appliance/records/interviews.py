"""Interview sessions, answers, their recordings and the evaluations of them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.personal import PersonalField
from appliance.records.base import Base, UTCDateTime, utcnow
from appliance.records.hiring import Application, InterviewPlan


class SessionStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class InterviewSession(Base):
    __tablename__ = "interview_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("interview_plans.id"))
    status: Mapped[SessionStatus] = mapped_column(
        Enum(SessionStatus, native_enum=False, length=16), default=SessionStatus.SCHEDULED
    )
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    current_position: Mapped[int] = mapped_column(default=0)
    interviewer_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    """Users assigned to review this session (the interviewer role's row scope)."""
    analysis_status: Mapped[str | None] = mapped_column(String(16))
    """None until analysed; then the `AnalysisStatus` of the whole session, or `human_only`
    when the candidate declined AI scoring (issue #5, PIPL Art. 24)."""
    analysis_error: Mapped[str | None] = mapped_column(Text)
    """Which answer and step failed and why: a clear error, not a silent gap (no content)."""

    application: Mapped[Application] = relationship()
    plan: Mapped[InterviewPlan] = relationship()
    answers: Mapped[list[Answer]] = relationship(back_populates="session")


class Answer(Base):
    """One take of one question; `transcript` is the candidate's words, so it is sealed."""

    __tablename__ = "answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("interview_sessions.id"), index=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("interview_questions.id"))
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    attempt: Mapped[int] = mapped_column(default=1)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    transcript_sealed: Mapped[bytes | None] = mapped_column("transcript", LargeBinary)
    transcript = PersonalField("transcript_sealed")

    session: Mapped[InterviewSession] = relationship(back_populates="answers")
    recordings: Mapped[list[Recording]] = relationship(back_populates="answer")


class Recording(Base):
    """A reference to an encrypted blob (the media itself never sits in the database)."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id"), index=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    media_type: Mapped[str] = mapped_column(String(80))
    duration_ms: Mapped[int | None]
    size_bytes: Mapped[int | None]
    complete: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    answer: Mapped[Answer] = relationship(back_populates="recordings")


class Evaluation(Base):
    """A score of an application, by a named person or by the AI (which only advises)."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("interview_sessions.id"))
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    evaluator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    """None for an AI evaluation."""
    kind: Mapped[str] = mapped_column(String(16))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Dimension id -> score, plus model versions and confidence for AI scores."""
    overall: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    notes_sealed: Mapped[bytes | None] = mapped_column("notes", LargeBinary)
    notes = PersonalField("notes_sealed")


class KioskCode(Base):
    """A short code reception gives a candidate at the on-site kiosk (issue #7, item 1).

    Only the code's keyed hash is kept (`code_hash`), so a database reader cannot sign in
    as anyone; the code opens one session once, and only until it expires."""

    __tablename__ = "kiosk_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("interview_sessions.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InterviewLease(Base):
    """Which browser is taking a session's interview: one live interview per token.

    `browser_hash` is the sha256 of a random id kept in that browser's session cookie; a
    second browser is refused while `seen_at` is recent (issue #7, "Must show")."""

    __tablename__ = "interview_leases"

    session_id: Mapped[int] = mapped_column(ForeignKey("interview_sessions.id"), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UploadPart(Base):
    """One chunk of a fallback upload (MediaRecorder over HTTPS, issue #7, item 6), as its own
    encrypted blob until the upload finishes and the parts become one `Recording`. Parts
    are numbered so an interrupted upload resumes at the first missing one."""

    __tablename__ = "upload_parts"
    __table_args__ = (UniqueConstraint("answer_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id"), index=True)
    seq: Mapped[int]
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    size_bytes: Mapped[int]
    media_type: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
