"""Working days, working hours and deadlines (工作日、工作时间、限时).

Owns: parsing SLA durations (``3WD`` working days, ``2WH`` working hours, ISO-8601 calendar
durations such as ``P7D``), the table of working and non-working days (the ``chinesecalendar``
package plus yearly overlay files an administrator drops into a directory), the working-hour
periods of an org unit, and deadline arithmetic: ``WorkCalendar.add`` and
``WorkCalendar.working_time_between``. Must not import the store, SpiffWorkflow or Flask, and never
reads the wall clock: every instant is an argument and must be timezone-aware.

Rules (the tests pin each one down):

- ``NWD``: N working days later at the same clock time. The start is first moved forward to the next
  working instant (a non-working day, a time before opening, in the lunch break or after closing
  moves to the start of the next period). If that instant is the opening of a working day, the
  whole day counts and the deadline is the *close* of the Nth working day counting that day
  (Monday 19:00 + 1WD → Tuesday 17:30, never Wednesday 08:30). Hence N working days always contain
  exactly N × the day's working time.
- ``NWH``: consumes only working-hour periods of working days; a deadline that uses a period up
  exactly ends at that period's end (11:00 + 1WH → 12:00, not 13:30). ``0WD`` / ``0WH`` give the next
  working instant.
- ISO durations are calendar time in the working hours' zone: ``P1D`` is one calendar day, never a
  working day; ``P1M`` is the same day next month, clamped to the month's end (Jan 31 → Feb 28).
- A year neither the package nor an overlay covers is refused (``calendar.year_not_covered``)
  unless ``provisional_ok=True``: then only weekends are off and the deadline says so.
"""

from __future__ import annotations

import hashlib
import json
import re
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import chinese_calendar

from engine.clock import SHANGHAI
from engine.errors import InvalidInput

__all__ = [
    "DEFAULT_HOURS",
    "Deadline",
    "Duration",
    "DurationUnit",
    "Overlay",
    "SkippedDay",
    "WorkCalendar",
    "WorkingHours",
    "explain",
    "load_overlay",
    "parse_duration",
]

ACCEPTED_DURATIONS = (
    "3WD (working days), 2WH, 1.5WH or 1WH30M (working hours), or an ISO-8601 calendar duration "
    "such as P7D, P2W, PT2H, PT30M, P1DT2H, P1M"
)
_WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_MAX_DAYS_OFF = 400  # more consecutive non-working days than this means the data is wrong


class DurationUnit(StrEnum):
    WORKING_DAYS = "WD"
    WORKING_HOURS = "WH"
    CALENDAR = "calendar"


@dataclass(frozen=True, slots=True)
class Duration:
    """A budget with its unit explicit: working days, working time, or calendar time."""

    unit: DurationUnit
    text: str
    working_days: int = 0
    working_time: timedelta = timedelta(0)
    months: int = 0  # calendar only; years are 12 months
    days: int = 0  # calendar only; weeks are 7 days
    clock: timedelta = timedelta(0)  # calendar only; the T part (hours, minutes, seconds)

    def __str__(self) -> str:
        return self.text


_WD_RE = re.compile(r"(\d{1,4})WD")  # bounded: 9999WD is ~40 years
_WH_RE = re.compile(r"(\d{1,6}(?:\.\d{1,6})?)WH(?:(\d{1,2})M)?")
_ISO_RE = re.compile(
    r"P(?:(?P<y>\d{1,6})Y)?(?:(?P<mo>\d{1,6})M)?(?:(?P<w>\d{1,6})W)?(?:(?P<d>\d{1,6})D)?"
    r"(?:T(?=\d)(?:(?P<h>\d{1,6})H)?(?:(?P<mi>\d{1,6})M)?(?:(?P<s>\d{1,6})S)?)?"
)


def _bad_duration(text: object, why: str = "") -> InvalidInput:
    lead = f"{text!r} is not a duration" + (f" ({why})" if why else "")
    return InvalidInput("calendar.bad_duration", f"{lead}; use {ACCEPTED_DURATIONS}", {"value": str(text)})


def parse_duration(text: str) -> Duration:
    """Read ``3WD``, ``1.5WH``, ``1WH30M`` or an ISO-8601 duration (``P1DT2H``); units are never mixed."""
    if not isinstance(text, str):
        raise _bad_duration(text)
    return _parse_duration(text)


@lru_cache(maxsize=1024)  # every clock start reads the same few texts again (a bad one is not kept)
def _parse_duration(text: str) -> Duration:
    norm = text.strip().upper()
    if m := _WD_RE.fullmatch(norm):
        return Duration(DurationUnit.WORKING_DAYS, norm, working_days=int(m[1]))
    if m := _WH_RE.fullmatch(norm):
        return Duration(DurationUnit.WORKING_HOURS, norm, working_time=_working_time(text, m[1], m[2]))
    m = _ISO_RE.fullmatch(norm)
    if m is None or not any(m.groupdict().values()):
        raise _bad_duration(text)
    g = {k: int(v or 0) for k, v in m.groupdict().items()}
    clock = timedelta(hours=g["h"], minutes=g["mi"], seconds=g["s"])
    return Duration(
        DurationUnit.CALENDAR, norm, months=g["y"] * 12 + g["mo"], days=g["w"] * 7 + g["d"], clock=clock
    )


def _working_time(text: str, hours: str, minutes: str | None) -> timedelta:
    if minutes is not None and ("." in hours or int(minutes) >= 60):
        raise _bad_duration(text, "minutes go with whole hours and must be below 60")
    total = Decimal(hours) * 60 + int(minutes or 0)
    if total != total.to_integral_value():
        raise _bad_duration(text, "working hours must come to whole minutes")
    return timedelta(minutes=int(total))


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The daily working periods of an org unit, wall-clock in ``tz``; the same on every working day."""

    periods: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))
    tz: tzinfo = field(default=SHANGHAI)

    def __post_init__(self) -> None:
        problem = _period_problem(self.periods)
        if problem:
            raise InvalidInput(
                "calendar.bad_working_hours", f"working hours: {problem}", {"periods": str(self)}
            )

    @classmethod
    def from_text(cls, text: str, *, tz: tzinfo = SHANGHAI) -> WorkingHours:
        """``"08:30-12:00, 13:30-17:30"`` → ``WorkingHours``."""
        try:
            pairs = [part.split("-") for part in text.split(",")]
            periods = tuple((time.fromisoformat(a.strip()), time.fromisoformat(b.strip())) for a, b in pairs)
        except ValueError as exc:
            message = f"{text!r} is not a list of periods like '08:30-12:00, 13:30-17:30'"
            raise InvalidInput("calendar.bad_working_hours", message, {"periods": text}) from exc
        return cls(periods=periods, tz=tz)

    @property
    def day_length(self) -> timedelta:
        return sum((_wall_span(a, b) for a, b in self.periods), timedelta(0))

    def periods_on(self, day: date) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.combine(day, a, self.tz), datetime.combine(day, b, self.tz)) for a, b in self.periods
        ]

    def __str__(self) -> str:
        return ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.periods)


def _period_problem(periods: tuple[tuple[time, time], ...]) -> str | None:
    if not periods:
        return "at least one period is needed"
    previous_end: time | None = None
    for start, end in periods:
        if start.tzinfo is not None or end.tzinfo is not None:
            return "period times carry no timezone; set tz instead"
        if start >= end:
            return f"period {start:%H:%M}-{end:%H:%M} ends before it starts"
        if previous_end is not None and start < previous_end:
            return "periods must be in order and must not overlap"
        previous_end = end
    return None


def _wall_span(a: time, b: time) -> timedelta:
    return datetime.combine(date.min, b) - datetime.combine(date.min, a)


DEFAULT_HOURS = WorkingHours()


@dataclass(frozen=True, slots=True)
class Overlay:
    """One administrator's yearly file ``<year>.json``: days off and make-up workdays, each with a label."""

    year: int
    holidays: Mapping[date, str]
    workdays: Mapping[date, str]
    file: str
    digest: str  # first 8 hex digits of the file's sha256


_OVERLAY_KEYS = {"year", "holidays", "workdays", "source", "note"}


def _bad_overlay(path: Path, problem: str) -> InvalidInput:
    return InvalidInput(
        "calendar.bad_overlay",
        f"calendar overlay {path.name}: {problem}; nothing was changed",
        {"file": str(path), "problem": problem},
    )


def load_overlay(path: Path) -> Overlay:
    """Read and check one overlay file; any problem is a ``calendar.bad_overlay`` naming the file."""
    try:
        raw = path.read_bytes()
        doc = json.loads(raw.decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad_overlay(path, f"cannot be read as UTF-8 ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise _bad_overlay(
            path, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(doc, dict):
        raise _bad_overlay(path, "must be a JSON object with year, holidays and workdays")
    unknown = sorted(set(doc) - _OVERLAY_KEYS)
    if unknown:
        raise _bad_overlay(path, f"unknown key(s) {', '.join(unknown)}; expected year, holidays, workdays")
    year = doc.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 1900 <= year <= 9999:
        raise _bad_overlay(path, f'"year" must be a year such as 2027, not {year!r}')
    if path.stem != str(year):
        raise _bad_overlay(path, f'the file name must be {year}.json to match "year": {year}')
    holidays = _overlay_days(path, doc, "holidays", year)
    workdays = _overlay_days(path, doc, "workdays", year)
    both = sorted(set(holidays) & set(workdays))
    if both:
        raise _bad_overlay(path, f"{both[0].isoformat()} is listed both as a holiday and as a workday")
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return Overlay(year, holidays, workdays, path.name, digest)


def _overlay_days(path: Path, doc: dict[str, object], key: str, year: int) -> dict[date, str]:
    entries = doc.get(key, {})
    if not isinstance(entries, dict):
        raise _bad_overlay(path, f'"{key}" must be an object of "YYYY-MM-DD": "name"')
    days: dict[date, str] = {}
    for text, label in entries.items():
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _bad_overlay(path, f'"{key}" has {text!r}, which is not a YYYY-MM-DD date') from None
        if day.year != year:
            raise _bad_overlay(path, f'"{key}" has {text}, which is not in {year}')
        if not isinstance(label, str) or not label.strip():
            raise _bad_overlay(path, f'"{key}" {text} needs a name such as "春节" or "春节调休"')
        days[day] = label.strip()
    return days


def _workday_reason(day: date, label: str) -> str:
    if day.weekday() >= 5:
        return f"调休上班（{label}）" if label else "调休上班"
    return f"工作日（{label}）" if label else "工作日"


def _package_version() -> str:
    return str(getattr(chinese_calendar, "__version__", None) or metadata.version("chinesecalendar"))


def _package_table() -> tuple[frozenset[int], dict[date, tuple[bool, str]]]:
    """Covered years and special days as the package ships them (its own year range, not ours)."""
    holidays: dict[date, str] = dict(chinese_calendar.holidays)
    workdays: dict[date, str] = dict(chinese_calendar.workdays)
    names = {h.value: h.chinese for h in chinese_calendar.Holiday}
    special = {d: (False, names.get(n, n)) for d, n in holidays.items()}
    special.update({d: (True, _workday_reason(d, names.get(n, n))) for d, n in workdays.items()})
    first, last = min(holidays).year, max(holidays).year
    return frozenset(range(first, last + 1)), special


@dataclass(frozen=True, slots=True)
class _Data:
    years: frozenset[int]
    special: Mapping[date, tuple[bool, str]]
    version: str

    def day(self, day: date) -> tuple[bool, str]:
        if day in self.special:
            return self.special[day]
        return (True, "工作日") if day.weekday() < 5 else (False, "周末")


def _read_overlays(overlay_dir: Path | None) -> list[Overlay]:
    if overlay_dir is None or not overlay_dir.exists():
        return []
    if not overlay_dir.is_dir():
        raise _bad_overlay(overlay_dir, "is not a directory")
    return [load_overlay(p) for p in sorted(overlay_dir.glob("*.json"))]


def _build(overlay_dir: Path | None) -> _Data:
    years, special = _package_table()
    version = f"chinesecalendar-{_package_version()}"
    for ov in sorted(_read_overlays(overlay_dir), key=lambda o: o.year):
        years |= {ov.year}
        special.update({d: (False, label) for d, label in ov.holidays.items()})
        special.update({d: (True, _workday_reason(d, label)) for d, label in ov.workdays.items()})
        version += f"+{ov.year}:{ov.digest}"
    return _Data(years, special, version)


def _not_covered(year: int) -> InvalidInput:
    return InvalidInput(
        "calendar.year_not_covered",
        f"the working calendar has no holiday data for {year}; "
        f"add an overlay file {year}.json or upgrade chinesecalendar",
        {"year": year},
    )


@dataclass(frozen=True, slots=True)
class SkippedDay:
    day: date
    reason: str


@dataclass(frozen=True, slots=True)
class Deadline:
    due_at: datetime
    calendar_version: str
    provisional: bool = False
    reason: str | None = None
    skipped: tuple[SkippedDay, ...] = ()


class _Walk:
    """One computation over one snapshot of the data: notes skipped days and uncovered years."""

    def __init__(self, data: _Data, hours: WorkingHours, provisional_ok: bool) -> None:
        self.data = data
        self.hours = hours
        self.provisional_ok = provisional_ok
        self.uncovered: set[int] = set()
        self.skipped: dict[date, str] = {}

    def working(self, day: date) -> bool:
        if day.year in self.data.years:
            ok, reason = self.data.day(day)
        elif self.provisional_ok:
            self.uncovered.add(day.year)
            ok, reason = day.weekday() < 5, "周末（暂定）"
        else:
            raise _not_covered(day.year)
        if not ok:
            self.skipped.setdefault(day, reason)
        return ok

    def next_working_day(self, day: date) -> date:
        for _ in range(_MAX_DAYS_OFF):
            if self.working(day):
                return day
            day += timedelta(days=1)
        raise InvalidInput(
            "calendar.no_working_day",
            f"no working day in the {_MAX_DAYS_OFF} days from {day.isoformat()}; check the overlays",
            {"from": day.isoformat()},
        )

    def next_working_instant(self, local: datetime) -> datetime:
        day = self.next_working_day(local.date())
        if day == local.date():
            for start, end in self.hours.periods_on(day):
                if local < end:
                    return max(local, start)
            day = self.next_working_day(day + timedelta(days=1))
        return self.hours.periods_on(day)[0][0]

    def add_working_time(self, local: datetime, amount: timedelta) -> datetime:
        pos, remaining = self.next_working_instant(local), amount
        while True:
            for start, end in self.hours.periods_on(pos.date()):
                if pos >= end:
                    continue
                begin = max(pos, start)
                available = _span(begin, end)
                if remaining <= available:
                    return _plus(begin, remaining)
                remaining -= available
            pos = self.next_working_instant(
                datetime.combine(pos.date() + timedelta(days=1), time(), self.hours.tz)
            )

    def add_working_days(self, local: datetime, count: int) -> datetime:
        pos = self.next_working_instant(local)
        if count == 0:
            return pos
        at_opening = pos == self.hours.periods_on(pos.date())[0][0]
        day = pos.date()
        for _ in range(count - 1 if at_opening else count):
            day = self.next_working_day(day + timedelta(days=1))
        if at_opening:
            return self.hours.periods_on(day)[-1][1]
        return datetime.combine(day, pos.time(), self.hours.tz)

    def deadline(self, due_at: datetime) -> Deadline:
        reason = None
        if self.uncovered:
            years = ", ".join(str(y) for y in sorted(self.uncovered))
            reason = f"provisional: no holiday data for {years}; only weekends were counted as days off"
        skipped = tuple(SkippedDay(d, r) for d, r in sorted(self.skipped.items()) if d < due_at.date())
        return Deadline(due_at, self.data.version, bool(self.uncovered), reason, skipped)


def _span(a: datetime, b: datetime) -> timedelta:
    return b.astimezone(UTC) - a.astimezone(UTC)


def _plus(a: datetime, delta: timedelta) -> datetime:
    return (a.astimezone(UTC) + delta).astimezone(a.tzinfo)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        message = f"{name} {value!s} has no timezone; give an aware datetime with an offset such as +08:00"
        raise InvalidInput("calendar.naive_datetime", message, {name: str(value)})
    return value


def _add_calendar(local: datetime, duration: Duration) -> datetime:
    years, month0 = divmod(local.month - 1 + duration.months, 12)
    year, month = local.year + years, month0 + 1
    day = date(year, month, min(local.day, monthrange(year, month)[1])) + timedelta(days=duration.days)
    return _plus(datetime.combine(day, local.time(), local.tzinfo), duration.clock)


class WorkCalendar:
    """Working days from ``chinesecalendar`` plus the overlay files in ``overlay_dir`` (``<year>.json``)."""

    def __init__(self, overlay_dir: Path | None = None) -> None:
        self._overlay_dir = overlay_dir
        self._data = _build(overlay_dir)

    @property
    def version(self) -> str:
        """Identifies exactly the data in use: ``chinesecalendar-1.11.0+2027:ab12cd34``."""
        return self._data.version

    def reload(self) -> str:
        """Re-read the overlay directory. On a bad file nothing changes and the error names the file."""
        self._data = _build(self._overlay_dir)
        return self._data.version

    def covers(self, year: int) -> bool:
        return year in self._data.years

    def is_working_day(self, day: date) -> bool:
        return self._day(day)[0]

    def day_reason(self, day: date) -> str:
        """Why a day is what it is: "工作日", "周末", "国庆节", "调休上班（国庆节）" …"""
        return self._day(day)[1]

    def _day(self, day: date) -> tuple[bool, str]:
        data = self._data
        if day.year not in data.years:
            raise _not_covered(day.year)
        return data.day(day)

    def add(
        self,
        start: datetime,
        duration: Duration | str,
        *,
        hours: WorkingHours | None = None,
        provisional_ok: bool = False,
    ) -> Deadline:
        """The deadline ``duration`` after ``start``, in the zone of ``hours`` (see the module rules)."""
        hours = hours or DEFAULT_HOURS
        dur = parse_duration(duration) if isinstance(duration, str) else duration
        local = _aware(start, "start").astimezone(hours.tz)
        walk = _Walk(self._data, hours, provisional_ok)
        try:
            if dur.unit is DurationUnit.WORKING_DAYS:
                due = walk.add_working_days(local, dur.working_days)
            elif dur.unit is DurationUnit.WORKING_HOURS:
                due = walk.add_working_time(local, dur.working_time)
            else:
                due = _add_calendar(local, dur)
        except (OverflowError, ValueError) as exc:
            message = f"{dur} after {local.isoformat()} is beyond the dates the calendar can represent"
            raise InvalidInput("calendar.out_of_range", message, {"duration": str(dur)}) from exc
        return walk.deadline(due)

    def working_time_between(
        self,
        start: datetime,
        end: datetime,
        *,
        hours: WorkingHours | None = None,
        provisional_ok: bool = False,
    ) -> timedelta:
        """Working time from ``start`` to ``end`` (zero if ``end`` is not after ``start``)."""
        hours = hours or DEFAULT_HOURS
        lo = _aware(start, "start").astimezone(hours.tz)
        hi = _aware(end, "end").astimezone(hours.tz)
        walk = _Walk(self._data, hours, provisional_ok)
        total, day = timedelta(0), lo.date()
        while lo < hi and day <= hi.date():
            if walk.working(day):
                for a, b in hours.periods_on(day):
                    if min(b, hi) > max(a, lo):
                        total += _span(max(a, lo), min(b, hi))
            day += timedelta(days=1)
        return total


def explain(deadline: Deadline) -> list[str]:
    """Plain lines for ``--explain``: what was provisional, each skipped day and why, and the due time."""
    lines = [f"暂定 {deadline.reason}"] if deadline.provisional and deadline.reason else []
    for s in deadline.skipped:
        lines.append(f"{s.day.isoformat()} {_WEEKDAYS_ZH[s.day.weekday()]} {s.reason}：非工作日，不计时")
    lines.append(f"到期 {deadline.due_at.isoformat()}（日历 {deadline.calendar_version}）")
    return lines
