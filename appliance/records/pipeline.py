"""The pipeline's own record (issue 6, item 3): decisions, merges of duplicates, imports.

None of these rows holds personal data in the clear:

- a decision's reason is an opinion about the candidate, so it is stored as a
  `Comment` (sealed under the candidate's key, `comments.body` in policy.yaml,
  read through the gate) and the `StageChange` points at it;
- a merge records ids, who, when and a reason *code* (same phone, same e-mail,
  confirmed the same person), never the phone or e-mail that matched;
- an import batch holds counts, row numbers and problem codes, never a cell's value.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.records.base import Base, UTCDateTime, utcnow
from appliance.records.hiring import Stage


class StageChange(Base):
    """One decision on one application: who moved it from which stage to which, and why.

    `from_stage` is None for the first entry (the application was created). Every
    decision names a person (`actor_id`, PIPL Art. 24: a named human decides, the AI
    only advises) and a reason (`reason_comment_id`). Moves made together share `batch`.
    """

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    from_stage: Mapped[Stage | None] = mapped_column(Enum(Stage, native_enum=False, length=16))
    to_stage: Mapped[Stage] = mapped_column(Enum(Stage, native_enum=False, length=16))
    reason_comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"))
    batch: Mapped[str | None] = mapped_column(String(32), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MergeReason(enum.StrEnum):
    SAME_PHONE = "same_phone"
    SAME_EMAIL = "same_email"
    SAME_PERSON = "same_person"
    """Staff confirmed the two records are one person (no contact data matched)."""


class CandidateMerge(Base):
    """Two records of one person made one: the merged record's rows moved to the survivor.

    The merged candidate row is deleted; its subject is kept (files sealed under its
    key, e.g. recordings, stay readable) and named here, so erasing the person
    (PIPL Art. 47) shreds both keys.
    """

    __tablename__ = "candidate_merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    merged_candidate_id: Mapped[int]
    """The deleted record's id (no foreign key: the row is gone)."""
    merged_subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[MergeReason] = mapped_column(Enum(MergeReason, native_enum=False, length=16))
    moved: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Rows moved, per table ({"applications": 1, "comments": 2}): counts only."""
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImportStatus(enum.StrEnum):
    DONE = "done"
    REJECTED = "rejected"
    """Nothing was written: the file or some rows were refused (see `problems`)."""


class ImportBatch(Base):
    """One upload of a candidate list to a job: who, when, what came of it (no values)."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[ImportStatus] = mapped_column(Enum(ImportStatus, native_enum=False, length=16))
    file_kind: Mapped[str] = mapped_column(String(8))
    rows: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    """New candidate records."""
    existing: Mapped[int] = mapped_column(default=0)
    """Rows that matched a candidate already on file (in the importer's scope): applied only."""
    resumes: Mapped[int] = mapped_column(default=0)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """[{"row": 3, "column": "phone", "problem": "bad_phone"}]: codes, never cell values."""
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
