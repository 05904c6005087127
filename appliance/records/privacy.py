"""Privacy operations (issue #8): the DPO's records.

Notice texts, data-subject requests, legal holds, deletion certificates, retention
runs, impact assessments, bias audits and jurisdiction changes are facts about the
box's processing, not personal content: they hold ids, dates, counts, law
citations and texts the hospital wrote for everyone (notices, assessments), so
they stay in the clear and survive a subject's deletion as its proof (PIPL
Art. 47 and 56; GDPR Art. 5(2) accountability).

Free-text columns a person writes about a case (`refusal_reason`, a hold's
`reason`) must state the ground in law, never personal content: the
functions that set them (`compliance.requests`, `compliance.deletion`) say so
to the person typing.

The one personal record here is `EqualityData`: the categories the hospital
lawfully holds for bias audits (sex, age band, ...), sealed under the subject's
key, read only through the gate, never a model input and never shown to staff
who decide (NYC Local Law 144 bias audits; PIPL Art. 24 fairness).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.personal import PersonalField
from appliance.records.base import Base, UTCDateTime, new_uuid, utcnow


class NoticeText(Base):
    """One version of the notice for one purpose and language. The current version of a
    purpose is the newest one not retired; consents given under any other text no longer
    hold (`compliance.consent.holds`)."""

    __tablename__ = "notice_texts"
    __table_args__ = (UniqueConstraint("purpose", "version", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    """A `ConsentPurpose` value (recording, ai_scoring, face_analysis, ...)."""
    version: Mapped[str] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    body: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    """Of the UTF-8 body: what `consents.text_sha256` records the person saw."""
    published_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_by: Mapped[str] = mapped_column(String(120))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RequestKind(enum.StrEnum):
    """PIPL Art. 44-48, GDPR Art. 15-22."""

    ACCESS = "access"
    """A copy of one's data (PIPL Art. 45, GDPR Art. 15)."""
    CORRECT = "correct"
    """PIPL Art. 46, GDPR Art. 16."""
    DELETE = "delete"
    """PIPL Art. 47, GDPR Art. 17, 820 ILCS 42/15."""
    WITHDRAW = "withdraw"
    """Withdraw a consent (PIPL Art. 15, GDPR Art. 7(3))."""
    EXPLAIN = "explain"
    """Explain an automated result (PIPL Art. 24, GDPR Art. 22(3))."""
    HUMAN_REVIEW = "human_review"
    """A named person reviews instead of the AI (PIPL Art. 24)."""


class RequestStatus(enum.StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    """The person's identity was checked."""
    ON_HOLD = "on_hold"
    """A legal hold pauses the deletion; the hold names the ground."""
    COMPLETED = "completed"
    REFUSED = "refused"


class DataRequest(Base):
    """A data-subject request and its deadline. Holds ids and names of fields only: a
    correction's new values go straight through the gate and are not kept here."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    kind: Mapped[RequestKind] = mapped_column(Enum(RequestKind, native_enum=False, length=16))
    channel: Mapped[str] = mapped_column(String(16))
    """kiosk, link or hr."""
    status: Mapped[RequestStatus] = mapped_column(
        Enum(RequestStatus, native_enum=False, length=16), default=RequestStatus.RECEIVED
    )
    jurisdiction: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    received_by: Mapped[str] = mapped_column(String(120))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    deadline_rule: Mapped[str] = mapped_column(String(120))
    """How `due_at` was computed, e.g. "15 working days (PIPL default)"."""
    purpose: Mapped[str | None] = mapped_column(String(32))
    """For a withdrawal: the consent purpose withdrawn."""
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    """For a correction: the personal fields (table.field) to correct."""
    identity_method: Mapped[str | None] = mapped_column(String(40))
    identity_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    identity_checked_by: Mapped[str | None] = mapped_column(String(120))
    handled_by: Mapped[str | None] = mapped_column(String(120))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    """The written ground of a refusal (required): the law and why, never personal content."""
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminders: Mapped[int] = mapped_column(default=0)
    bundle_blob_id: Mapped[str | None] = mapped_column(String(32))
    """An access or explanation request's copy: a zip sealed under the subject's key."""
    certificate_id: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Counts and ids of what completing the request did (no values)."""


class LegalHold(Base):
    """An ongoing dispute, investigation or statutory duty that pauses deletion."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    """The legal ground (e.g. "labour arbitration case pending, PIPL Art. 13(3)")."""
    placed_by: Mapped[str] = mapped_column(String(120))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(120))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeletionCertificate(Base):
    """What was deleted for one subject, when and by whom: the signed body, its
    signature, and the audit event it was entered as. Ids and counts only."""

    __tablename__ = "deletion_certificates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("data_requests.id"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    """Canonical JSON, the exact bytes signed."""
    signature: Mapped[str] = mapped_column(Text)
    """ASCII-armoured detached OpenPGP signature over `body` (the box's key)."""
    audit_seq: Mapped[int]


class RetentionRun(Base):
    """One pass of the retention schedules (or a dry run that only lists)."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dry_run: Mapped[bool] = mapped_column(default=True)
    actor: Mapped[str] = mapped_column(String(120))
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Per category: what is due (subject and row ids), what went, what a hold kept."""
    error: Mapped[str | None] = mapped_column(Text)


class JobClosure(Base):
    """When the retention pass first saw a job closed: the start of its candidates'
    retention. A job closes once; the first sighting is never earlier than the closing,
    so a retention counted from it is never shorter than the schedule says."""

    __tablename__ = "job_closures"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    seen_closed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImpactAssessment(Base):
    """A personal-information impact assessment (PIPL Art. 55-56): required before face
    analysis or AI scoring can be switched on; kept at least three years."""

    __tablename__ = "impact_assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    feature: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """purpose_and_method, necessity, impact_and_risks, measures, conclusion (Art. 56)."""
    sha256: Mapped[str] = mapped_column(String(64))
    assessed_by: Mapped[str] = mapped_column(String(120))
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(120))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_by: Mapped[datetime] = mapped_column(UTCDateTime())
    """The assessment must be redone by then (a change of processing also calls for one)."""
    keep_until: Mapped[datetime] = mapped_column(UTCDateTime())
    """At least three years after it was made (PIPL Art. 56)."""
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BiasAudit(Base):
    """A bias audit's aggregate results (NYC Local Law 144; DCWP rules 6 RCNY 5-301).
    Counts and rates per category only: no person's category or score."""

    __tablename__ = "bias_audits"

    id: Mapped[int] = mapped_column(primary_key=True)
    made_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    made_by: Mapped[str] = mapped_column(String(120))
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class JurisdictionChange(Base):
    """The profile in force changed (settings.jurisdiction): logged, never silent."""

    __tablename__ = "jurisdiction_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    from_profile: Mapped[str | None] = mapped_column(String(16))
    to_profile: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(120))


class EqualityData(Base):
    """Categories the hospital lawfully holds for bias audits, sealed: sex, age band or
    birth year, and others. Never a model input; hidden from staff who decide."""

    __tablename__ = "equality_data"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), unique=True)
    source: Mapped[str] = mapped_column(String(16), default="self_declared")
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    categories_sealed: Mapped[bytes | None] = mapped_column("categories", LargeBinary)
    categories = PersonalField("categories_sealed")
    """JSON object: category name -> value, e.g. {"sex": "female", "birth_year": "1990"}."""
