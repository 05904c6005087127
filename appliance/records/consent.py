"""Consents: what a person agreed to (or declined), under which notice text.

Issue #7 records them at the kiosk before any capture; issue #8 builds the full
register (notice texts, withdrawal, re-consent) on these rows. A consent is a
fact about a person, not personal content: the purpose, notice version and the
sha256 of the notice text they saw are stored in the clear, so the workers can
check them without opening anyone's key (PIPL Art. 14: consent must be
informed, specific and given freely; Art. 29: separate consent for sensitive
personal information such as face data).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.records.base import Base, UTCDateTime, utcnow


class ConsentPurpose(enum.StrEnum):
    RECORDING = "recording"
    """Recording the interview (audio and video) and transcribing it."""
    AI_SCORING = "ai_scoring"
    """Automated scoring of the answers; declined = a human-only evaluation (PIPL Art. 24)."""
    FACE_ANALYSIS = "face_analysis"
    """Face presence, gaze, identity consistency and, where the profile allows, expression:
    sensitive personal information (PIPL Art. 28-29), always a separate step."""
    SCREENING = "screening"
    """Reviewing the application and resume for the requisition applied to."""
    BACKGROUND_CHECK = "background_check"
    """Verifying licences, titles and references with their issuers (issue #8)."""
    TALENT_POOL = "talent_pool"
    """Keeping the file after the requisition closes, for later openings (issue #8)."""


class Consent(Base):
    """One answer of a person to one notice. The latest row per purpose is what holds."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    purpose: Mapped[ConsentPurpose] = mapped_column(
        Enum(ConsentPurpose, native_enum=False, length=32)
    )
    granted: Mapped[bool]
    """False: the person declined (recorded too, so the box can prove it did not ask twice)."""
    notice_version: Mapped[str] = mapped_column(String(40))
    text_sha256: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16), default="kiosk")
    given_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
