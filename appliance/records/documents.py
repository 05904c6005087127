"""Documents a person sent us: parsed resumes.

The upload itself is an encrypted blob (`appliance.blobs`) under the subject's
key; the parsed fields (name, contacts, education, experience, ...) are one
JSON document sealed under the same key, so shredding the subject shreds both.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.personal import PersonalField
from appliance.records.base import Base, UTCDateTime, utcnow


class ResumeParse(Base):
    __tablename__ = "resume_parses"

    id: Mapped[int] = mapped_column(primary_key=True)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    rq_job_id: Mapped[str | None] = mapped_column(String(64))
    parser_version: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    """Why the file could not be parsed (size, format, damage): never its content."""
    duplicate_group: Mapped[str | None] = mapped_column(String(32), index=True)
    """Blob id of the first file of the same person in the batch (same e-mail, mobile,
    or name and school); None when the file has no duplicate."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    parsed_sealed: Mapped[bytes | None] = mapped_column("parsed", LargeBinary)
    parsed = PersonalField("parsed_sealed")
    """The parsed resume as JSON (the CLI's JSON Lines object)."""
