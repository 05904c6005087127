"""Facts about this box that must travel with its database (and its backups)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.records.base import Base, UTCDateTime, utcnow


class BoxInfo(Base):
    """One row. `demo` marks a demo data dir: only there is the fixed demo TOTP code
    accepted, and only when the settings say demo too (two keys for one door)."""

    __tablename__ = "box_info"

    id: Mapped[int] = mapped_column(primary_key=True)
    box_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    demo: Mapped[bool] = mapped_column(default=False)
