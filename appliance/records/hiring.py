"""Requisitions, their scoring templates and interview plans, and applications to them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.personal import PersonalField
from appliance.records.base import Base, UTCDateTime, utcnow
from appliance.records.people import Candidate


class JobStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class Stage(enum.StrEnum):
    """The pipeline board's columns, in order."""

    APPLIED = "applied"
    SCREENED = "screened"
    INVITED = "invited"
    INTERVIEWED = "interviewed"
    REVIEWED = "reviewed"
    OFFER = "offer"
    HIRED = "hired"
    REJECTED = "rejected"


class ScoringTemplate(Base):
    """How answers are scored: weighted dimensions, each with rubric lines.

    `org_unit_id` is whose it is: None for a hospital-wide template (HR admin edits it,
    every HR may use it), else a unit whose subtree's HR may use and edit it (issue 6).
    """

    __tablename__ = "scoring_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    dimensions: Mapped[list[ScoringDimension]] = relationship(
        back_populates="template",
        cascade="all, delete-orphan",
        order_by="ScoringDimension.position",
    )


class ScoringDimension(Base):
    """E.g. 沟通能力 with weight 0.25; weights of a template add up to 1."""

    __tablename__ = "scoring_dimensions"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("scoring_templates.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(120))
    weight: Mapped[float]

    template: Mapped[ScoringTemplate] = relationship(back_populates="dimensions")
    rubric: Mapped[list[RubricLine]] = relationship(
        back_populates="dimension", cascade="all, delete-orphan", order_by="RubricLine.score"
    )


class RubricLine(Base):
    """What an answer worth `score` (1-5) shows on one dimension."""

    __tablename__ = "rubric_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    dimension_id: Mapped[int] = mapped_column(
        ForeignKey("scoring_dimensions.id", ondelete="CASCADE")
    )
    score: Mapped[int]
    text: Mapped[str] = mapped_column(Text)

    dimension: Mapped[ScoringDimension] = relationship(back_populates="rubric")


class Job(Base):
    """A requisition of one department. `requirements` holds the hard ones (degree, licence,
    title, years) as a JSON object the resume matcher reads."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    requirements: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Keys: education (str), licences (list, e.g. 执业医师资格证), professional_title (e.g.
    主治医师), years (int, experience), keywords (list), language (zh/en, the interview's)."""
    competencies: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    """What the interview probes (沟通能力, 团队协作...): the question bank's groups."""
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=16), default=JobStatus.DRAFT
    )
    scoring_template_id: Mapped[int | None] = mapped_column(ForeignKey("scoring_templates.id"))
    live_captions: Mapped[bool] = mapped_column(default=False)
    """Show the candidate live captions of their own answer while they speak (issue #5)."""
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    scoring_template: Mapped[ScoringTemplate | None] = relationship()
    plans: Mapped[list[InterviewPlan]] = relationship(back_populates="job")


class InterviewPlan(Base):
    """One round of a job's interview: async (recorded answers) or live panel."""

    __tablename__ = "interview_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16), default="async")
    round_no: Mapped[int] = mapped_column(default=1)

    job: Mapped[Job] = relationship(back_populates="plans")
    questions: Mapped[list[InterviewQuestion]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="InterviewQuestion.position"
    )


class InterviewQuestion(Base):
    __tablename__ = "interview_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("interview_plans.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    text: Mapped[str] = mapped_column(Text)
    competency: Mapped[str | None] = mapped_column(String(120))
    think_seconds: Mapped[int] = mapped_column(default=30)
    answer_seconds: Mapped[int] = mapped_column(default=120)
    retakes: Mapped[int] = mapped_column(default=1)
    source: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    """manual (typed by HR), bank (taken from the question bank) or suggested."""
    bank_question_id: Mapped[int | None] = mapped_column(
        ForeignKey("question_bank.id", ondelete="SET NULL")
    )
    suggestion_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Why it was suggested (`workers.questions.Reason.as_dict()`), kept so HR can tell later."""

    plan: Mapped[InterviewPlan] = relationship(back_populates="questions")


class BankQuestion(Base):
    """A reusable interview question of the question bank, filed under one competency.

    `keywords` are what the offline suggester (`workers.questions`) matches against a
    job's requirements and description; `org_unit_id` None means hospital-wide.
    Retired questions stay (`active` False): interview questions copied from them keep
    their link.
    """

    __tablename__ = "question_bank"

    id: Mapped[int] = mapped_column(primary_key=True)
    competency: Mapped[str] = mapped_column(String(120), index=True)
    text: Mapped[str] = mapped_column(Text)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    think_seconds: Mapped[int] = mapped_column(default=30)
    answer_seconds: Mapped[int] = mapped_column(default=120)
    retakes: Mapped[int] = mapped_column(default=1)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Application(Base):
    """A candidate applying to a job; the unit the pipeline board moves."""

    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("candidate_id", "job_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    stage: Mapped[Stage] = mapped_column(
        Enum(Stage, native_enum=False, length=16), default=Stage.APPLIED, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    candidate: Mapped[Candidate] = relationship(back_populates="applications")
    job: Mapped[Job] = relationship()


class Comment(Base):
    """Free text by staff about a candidate: personal, so sealed under their key."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    body_sealed: Mapped[bytes | None] = mapped_column("body", LargeBinary)
    body = PersonalField("body_sealed")
