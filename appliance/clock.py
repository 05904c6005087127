"""Time: stored in UTC everywhere, shown in the hospital's zone (settings.timezone)."""

from __future__ import annotations

from datetime import datetime

from appliance.records.base import utcnow
from appliance.settings import Settings

__all__ = ["format_local", "to_local", "utcnow"]


def to_local(moment: datetime, settings: Settings) -> datetime:
    """For display only; never store the result."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times in the appliance are aware UTC")
    return moment.astimezone(settings.zone)


def format_local(moment: datetime, settings: Settings) -> str:
    return to_local(moment, settings).strftime("%Y-%m-%d %H:%M")
