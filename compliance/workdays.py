"""Working days in the hospital's calendar, for data-subject request deadlines.

A request's deadline is counted in the hospital's own zone: a request received on a
Friday evening in Shanghai is a Friday request, whatever the UTC date says. A day
counts as a working day when it is Monday to Friday and not a public holiday, or
when it is a weekend day made a working day in exchange (调休). Both lists come from
`settings.privacy` and are the hospital's to keep up to date (they change yearly).

A deadline "N working days after receipt" ends at the end of the Nth working day
after the day of receipt (the day of receipt does not count), local time.
"""

from __future__ import annotations

import calendar as _calendar  # stdlib (this module is not named calendar: it would shadow it)
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from appliance.settings import Settings


@dataclass(frozen=True)
class WorkingCalendar:
    zone: ZoneInfo
    holidays: frozenset[date] = field(default_factory=frozenset)
    make_up_workdays: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def of(cls, settings: Settings) -> WorkingCalendar:
        return cls(
            settings.zone,
            frozenset(settings.privacy.holidays),
            frozenset(settings.privacy.make_up_workdays),
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.make_up_workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def add_working_days(self, start: date, count: int) -> date:
        """The `count`th working day after `start` (`start` itself never counts)."""
        day = start
        left = count
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (negative when end < start)."""
        if end < start:
            return -self.working_days_between(end, start)
        return sum(1 for d in _days(start + timedelta(days=1), end) if self.is_working_day(d))

    def end_of_day(self, day: date) -> datetime:
        """The last moment of `day` in the hospital's zone, as aware UTC."""
        local = datetime.combine(day, time(23, 59, 59), tzinfo=self.zone)
        return local.astimezone(UTC)

    def due_in_working_days(self, received: datetime, count: int) -> datetime:
        return self.end_of_day(self.add_working_days(self.local_day(received), count))

    def due_in_days(self, received: datetime, count: int) -> datetime:
        """Calendar days (Illinois: "within 30 days"): the end of the day `count` days on."""
        return self.end_of_day(self.local_day(received) + timedelta(days=count))

    def due_in_months(self, received: datetime, count: int) -> datetime:
        """GDPR Art. 12(3) "within one month": the same date `count` months on, or the
        month's last day when it has no such date (31 January -> 28/29 February)."""
        day = self.local_day(received)
        month_index = day.month - 1 + count
        year, month = day.year + month_index // 12, month_index % 12 + 1
        last = _calendar.monthrange(year, month)[1]
        return self.end_of_day(date(year, month, min(day.day, last)))


def _days(start: date, end: date) -> Iterable[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)
