"""Working days, working hours and deadlines: engine/calendar.py.

Every expected holiday and make-up workday below was read from chinesecalendar 1.11.0
(``chinese_calendar.holidays`` / ``workdays`` / ``get_holiday_detail``), not from memory, and
``test_every_day_of_2024_to_2026_agrees_with_the_package`` keeps the table honest.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from engine.calendar import (
    DEFAULT_HOURS,
    Duration,
    DurationUnit,
    WorkCalendar,
    WorkingHours,
    explain,
    load_overlay,
    parse_duration,
)
from engine.clock import SHANGHAI
from engine.errors import InvalidInput


def at(text: str) -> datetime:
    """An instant in Asia/Shanghai from ``"2025-09-30 10:00"``."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def due(cal: WorkCalendar, start: str, duration: str) -> str:
    return cal.add(at(start), duration).due_at.strftime("%Y-%m-%d %H:%M")


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar()


def write_overlay(directory: Path, year: int, **body: object) -> Path:
    path = directory / f"{year}.json"
    path.write_text(json.dumps({"year": year, **body}, ensure_ascii=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "unit", "field", "value"),
    [
        ("3WD", DurationUnit.WORKING_DAYS, "working_days", 3),
        (" 3wd ", DurationUnit.WORKING_DAYS, "working_days", 3),
        ("2WH", DurationUnit.WORKING_HOURS, "working_time", timedelta(hours=2)),
        ("1.5WH", DurationUnit.WORKING_HOURS, "working_time", timedelta(minutes=90)),
        ("0.25WH", DurationUnit.WORKING_HOURS, "working_time", timedelta(minutes=15)),
        ("1WH40M", DurationUnit.WORKING_HOURS, "working_time", timedelta(minutes=100)),
        ("P7D", DurationUnit.CALENDAR, "days", 7),
        ("P2W", DurationUnit.CALENDAR, "days", 14),
        ("P1D", DurationUnit.CALENDAR, "days", 1),
        ("PT2H", DurationUnit.CALENDAR, "clock", timedelta(hours=2)),
        ("PT30M", DurationUnit.CALENDAR, "clock", timedelta(minutes=30)),
        ("P1M", DurationUnit.CALENDAR, "months", 1),
        ("P1Y", DurationUnit.CALENDAR, "months", 12),
    ],
)
def test_durations_are_read_with_their_unit_explicit(
    text: str, unit: DurationUnit, field: str, value: object
) -> None:
    duration = parse_duration(text)
    assert duration.unit is unit
    assert getattr(duration, field) == value


def test_p1dt2h_is_one_calendar_day_and_two_clock_hours() -> None:
    duration = parse_duration("P1DT2H")
    assert (duration.unit, duration.days, duration.clock, duration.working_days) == (
        DurationUnit.CALENDAR,
        1,
        timedelta(hours=2),
        0,
    )
    assert str(duration) == "P1DT2H"


@pytest.mark.parametrize(
    "text",
    ["", "3", "3D", "WD", "-1WD", "1.5WD", "3 WD", "P", "PT", "P1.5D", "1.01WH", "2WH75M", "1.5WH30M", "P1H"],
)
def test_bad_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text)
    assert caught.value.code == "calendar.bad_duration"
    assert caught.value.details == {"value": text}
    assert "3WD" in caught.value.message and "P7D" in caught.value.message


def test_a_duration_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"calendar\.bad_duration"):
        parse_duration(3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the day table


@pytest.mark.parametrize(
    ("day", "working", "reason"),
    [
        ("2024-02-04", True, "调休上班（春节）"),
        ("2024-02-09", True, "工作日"),
        ("2024-02-10", False, "春节"),  # a Saturday: the holiday name wins over 周末
        ("2024-02-17", False, "春节"),
        ("2024-02-18", True, "调休上班（春节）"),
        ("2024-04-28", True, "调休上班（劳动节）"),
        ("2024-05-01", False, "劳动节"),
        ("2024-05-05", False, "劳动节"),
        ("2024-05-11", True, "调休上班（劳动节）"),
        ("2024-09-29", True, "调休上班（国庆节）"),
        ("2024-10-07", False, "国庆节"),
        ("2024-10-12", True, "调休上班（国庆节）"),
        ("2025-01-26", True, "调休上班（春节）"),
        ("2025-01-28", False, "春节"),
        ("2025-02-04", False, "春节"),
        ("2025-02-08", True, "调休上班（春节）"),
        ("2025-04-27", True, "调休上班（劳动节）"),
        ("2025-05-05", False, "劳动节"),
        ("2025-09-28", True, "调休上班（国庆节）"),
        ("2025-10-06", False, "中秋"),
        ("2025-10-11", True, "调休上班（国庆节）"),
        ("2025-10-12", False, "周末"),
        ("2026-01-04", True, "调休上班（元旦）"),
        ("2026-02-14", True, "调休上班（春节）"),
        ("2026-02-23", False, "春节"),
        ("2026-02-28", True, "调休上班（春节）"),
        ("2026-05-05", False, "劳动节"),
        ("2026-05-09", True, "调休上班（劳动节）"),
        ("2026-09-20", True, "调休上班（国庆节）"),
        ("2026-10-07", False, "国庆节"),
        ("2026-10-08", True, "工作日"),
        ("2026-10-10", True, "调休上班（国庆节）"),
    ],
)
def test_holidays_and_make_up_workdays_come_from_the_package(
    cal: WorkCalendar, day: str, working: bool, reason: str
) -> None:
    d = date.fromisoformat(day)
    assert cal.is_working_day(d) is working
    assert cal.day_reason(d) == reason


def test_every_day_of_2024_to_2026_agrees_with_the_package(cal: WorkCalendar) -> None:
    day = date(2024, 1, 1)
    while day.year <= 2026:
        assert cal.is_working_day(day) == chinese_calendar.is_workday(day), day
        day += timedelta(days=1)


def test_covered_years_are_the_packages_own_range(cal: WorkCalendar) -> None:
    first, last = min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year
    assert cal.covers(first) and cal.covers(last) and cal.covers(2025)
    assert not cal.covers(first - 1) and not cal.covers(last + 1)


def test_version_names_the_package_and_its_version(cal: WorkCalendar) -> None:
    assert cal.version == "chinesecalendar-1.11.0"


# ------------------------------------------------------------------------------- working days


def test_three_working_days_from_the_eve_of_national_day_2025_land_on_the_make_up_saturday(
    cal: WorkCalendar,
) -> None:
    deadline = cal.add(datetime.fromisoformat("2025-09-30T10:00+08:00"), "3WD")
    assert deadline.due_at.isoformat() == "2025-10-11T10:00:00+08:00"
    assert deadline.calendar_version == cal.version
    assert not deadline.provisional and deadline.reason is None
    assert [s.day.isoformat() for s in deadline.skipped] == [f"2025-10-0{n}" for n in range(1, 9)]
    assert deadline.skipped[5].reason == "中秋"


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2024-02-08 10:00", "1WD", "2024-02-09 10:00"),  # Spring Festival 2024: 2-10..2-17 off
        ("2024-02-09 10:00", "1WD", "2024-02-18 10:00"),  # ... and Sunday 2-18 is worked
        ("2025-01-24 10:00", "1WD", "2025-01-26 10:00"),  # Spring Festival 2025: Sunday 1-26 worked
        ("2025-01-27 10:00", "1WD", "2025-02-05 10:00"),  # ... 1-28..2-04 off
        ("2025-02-07 10:00", "1WD", "2025-02-08 10:00"),  # ... Saturday 2-08 worked
        ("2026-02-13 10:00", "1WD", "2026-02-14 10:00"),  # Spring Festival 2026: Saturday 2-14 worked
        ("2026-02-13 10:00", "2WD", "2026-02-24 10:00"),  # ... 2-15..2-23 off
        ("2024-04-26 10:00", "1WD", "2024-04-28 10:00"),  # May Day 2024: Sunday 4-28 worked
        ("2024-04-30 10:00", "1WD", "2024-05-06 10:00"),  # ... 5-01..5-05 off
        ("2024-05-10 10:00", "1WD", "2024-05-11 10:00"),  # ... Saturday 5-11 worked
        ("2025-04-30 10:00", "1WD", "2025-05-06 10:00"),  # May Day 2025
        ("2026-04-30 10:00", "1WD", "2026-05-06 10:00"),  # May Day 2026
        ("2026-05-08 10:00", "1WD", "2026-05-09 10:00"),  # ... Saturday 5-09 worked
        ("2024-09-30 10:00", "1WD", "2024-10-08 10:00"),  # National Day 2024
        ("2024-10-11 10:00", "1WD", "2024-10-12 10:00"),  # ... Saturday 10-12 worked
        ("2026-09-30 10:00", "1WD", "2026-10-08 10:00"),  # National Day 2026
        ("2026-10-09 10:00", "1WD", "2026-10-10 10:00"),  # ... Saturday 10-10 worked
        ("2026-09-24 10:00", "1WD", "2026-09-28 10:00"),  # Mid-autumn 2026: 9-25..9-27 off
    ],
)
def test_working_days_skip_holidays_and_count_make_up_days(
    cal: WorkCalendar, start: str, duration: str, expected: str
) -> None:
    assert due(cal, start, duration) == expected


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2025-06-09 19:00", "2025-06-10 17:30"),  # after closing: the next day counts whole
        ("2025-06-09 17:30", "2025-06-10 17:30"),  # exactly at closing: same
        ("2025-06-09 07:00", "2025-06-09 17:30"),  # before opening: today counts whole
        ("2025-06-09 08:30", "2025-06-09 17:30"),  # exactly at opening: same
        ("2025-06-09 12:30", "2025-06-10 13:30"),  # in the lunch break: from the afternoon period
        ("2025-06-07 10:00", "2025-06-09 17:30"),  # on a Saturday: Monday counts whole
        ("2025-10-03 15:00", "2025-10-09 17:30"),  # on a holiday: the next working day counts whole
    ],
)
def test_one_working_day_from_outside_working_hours_ends_at_a_closing_time(
    cal: WorkCalendar, start: str, expected: str
) -> None:
    assert due(cal, start, "1WD") == expected


def test_a_working_day_started_on_a_holiday_lists_that_holiday_as_skipped(cal: WorkCalendar) -> None:
    deadline = cal.add(at("2025-10-03 15:00"), "1WD")
    assert deadline.skipped[0].day == date(2025, 10, 3)
    assert deadline.skipped[0].reason == "国庆节"


def test_n_working_days_always_hold_n_full_days_of_working_time(cal: WorkCalendar) -> None:
    for start in SAMPLE_STARTS:
        for n in (1, 2, 5):
            deadline = cal.add(at(start), f"{n}WD")
            assert cal.working_time_between(at(start), deadline.due_at) == n * DEFAULT_HOURS.day_length, start


def test_zero_working_days_is_the_next_working_instant(cal: WorkCalendar) -> None:
    assert due(cal, "2025-06-07 10:00", "0WD") == "2025-06-09 08:30"
    assert due(cal, "2025-06-09 10:00", "0WH") == "2025-06-09 10:00"


# ------------------------------------------------------------------------------ working hours


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2025-06-03 11:00", "2WH", "2025-06-03 14:30"),  # across lunch
        ("2025-06-03 11:00", "1WH", "2025-06-03 12:00"),  # using up a period ends at its end
        ("2025-06-03 11:00", "1.5WH", "2025-06-03 14:00"),
        ("2025-06-03 11:00", "1WH15M", "2025-06-03 13:45"),
        ("2025-06-03 16:30", "2WH", "2025-06-04 09:30"),  # across the night
        ("2025-06-06 16:30", "2WH", "2025-06-09 09:30"),  # across a weekend
        ("2025-09-30 17:00", "1WH", "2025-10-09 09:00"),  # across National Day
        ("2025-10-03 15:00", "1WH", "2025-10-09 09:30"),  # starting on a holiday
        ("2025-06-03 07:00", "1WH", "2025-06-03 09:30"),  # before opening
        ("2025-06-03 12:15", "1WH", "2025-06-03 14:30"),  # in the lunch break
        ("2025-06-03 20:00", "7.5WH", "2025-06-04 17:30"),  # a full day, from the evening
    ],
)
def test_working_hours_consume_only_working_periods(
    cal: WorkCalendar, start: str, duration: str, expected: str
) -> None:
    assert due(cal, start, duration) == expected


def test_working_hours_across_a_weekend_list_the_skipped_days(cal: WorkCalendar) -> None:
    deadline = cal.add(at("2025-06-06 16:30"), "2WH")
    assert [(s.day.isoformat(), s.reason) for s in deadline.skipped] == [
        ("2025-06-07", "周末"),
        ("2025-06-08", "周末"),
    ]


def test_an_org_unit_can_have_its_own_working_hours(cal: WorkCalendar) -> None:
    hours = WorkingHours.from_text("09:00-17:00")
    assert hours.day_length == timedelta(hours=8)
    deadline = cal.add(at("2025-06-03 16:00"), "2WH", hours=hours)
    assert deadline.due_at == at("2025-06-04 10:00")


@pytest.mark.parametrize(
    "periods",
    [(), ((time(12, 0), time(8, 30)),), ((time(8, 0), time(12, 0)), (time(11, 0), time(17, 0)))],
)
def test_working_hours_that_make_no_sense_are_refused(periods: tuple[tuple[time, time], ...]) -> None:
    with pytest.raises(InvalidInput, match=r"calendar\.bad_working_hours"):
        WorkingHours(periods=periods)


def test_working_hours_text_that_is_not_periods_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"calendar\.bad_working_hours"):
        WorkingHours.from_text("nine to five")


SAMPLE_STARTS = [
    "2025-06-03 08:30",
    "2025-06-03 10:17",
    "2025-06-03 12:00",
    "2025-06-03 12:45",
    "2025-06-03 17:29",
    "2025-06-03 23:59",
    "2025-06-07 09:00",
    "2025-09-30 16:00",
    "2025-10-04 11:00",
    "2026-02-13 17:00",
]


def test_adding_working_hours_and_measuring_them_back_agree(cal: WorkCalendar) -> None:
    for start in SAMPLE_STARTS:
        for minutes in (1, 30, 90, 210, 450, 1200, 2700):
            deadline = cal.add(
                at(start), Duration(DurationUnit.WORKING_HOURS, "", working_time=timedelta(minutes=minutes))
            )
            measured = cal.working_time_between(at(start), deadline.due_at)
            assert measured == timedelta(minutes=minutes), (start, minutes)


def test_working_time_between_counts_only_working_periods(cal: WorkCalendar) -> None:
    assert cal.working_time_between(at("2025-06-03 00:00"), at("2025-06-04 00:00")) == timedelta(hours=7.5)
    assert cal.working_time_between(at("2025-09-30 00:00"), at("2025-10-10 00:00")) == timedelta(hours=15)
    assert cal.working_time_between(at("2025-06-03 11:00"), at("2025-06-03 14:00")) == timedelta(hours=1.5)


def test_working_time_between_an_end_before_the_start_is_zero(cal: WorkCalendar) -> None:
    assert cal.working_time_between(at("2025-06-04 10:00"), at("2025-06-03 10:00")) == timedelta(0)


# ----------------------------------------------------------------------------- calendar time


def test_p1d_is_one_calendar_day_not_a_working_day(cal: WorkCalendar) -> None:
    deadline = cal.add(at("2025-09-30 10:00"), "P1D")
    assert deadline.due_at == at("2025-10-01 10:00")  # National Day, still counted
    assert deadline.skipped == ()


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2025-06-06 16:00", "PT2H", "2025-06-06 18:00"),
        ("2025-06-06 23:45", "PT30M", "2025-06-07 00:15"),
        ("2025-06-06 16:00", "P1DT2H", "2025-06-07 18:00"),
        ("2025-06-06 16:00", "P2W", "2025-06-20 16:00"),
        ("2025-01-31 09:00", "P1M", "2025-02-28 09:00"),
        ("2024-02-29 09:00", "P1Y", "2025-02-28 09:00"),
    ],
)
def test_iso_durations_are_plain_calendar_time(
    cal: WorkCalendar, start: str, duration: str, expected: str
) -> None:
    assert due(cal, start, duration) == expected


def test_deadlines_come_back_in_shanghai_time_whatever_the_start_zone(cal: WorkCalendar) -> None:
    deadline = cal.add(datetime(2025, 9, 30, 2, 0, tzinfo=UTC), "3WD")
    assert deadline.due_at.isoformat() == "2025-10-11T10:00:00+08:00"
    assert deadline.due_at.tzinfo is SHANGHAI


# ------------------------------------------------------------------------------- refusals


def test_a_naive_start_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(InvalidInput) as caught:
        cal.add(datetime(2025, 9, 30, 10, 0), "3WD")
    assert caught.value.code == "calendar.naive_datetime"


def test_a_naive_end_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(InvalidInput, match=r"calendar\.naive_datetime"):
        cal.working_time_between(at("2025-09-30 10:00"), datetime(2025, 10, 9, 10, 0))


def test_a_year_without_holiday_data_is_refused_naming_the_year(cal: WorkCalendar) -> None:
    with pytest.raises(InvalidInput) as caught:
        cal.add(at("2026-12-30 10:00"), "3WD")
    assert caught.value.code == "calendar.year_not_covered"
    assert caught.value.details == {"year": 2027}
    assert "2027" in caught.value.message


def test_asking_about_a_day_of_an_uncovered_year_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(InvalidInput, match=r"calendar\.year_not_covered"):
        cal.is_working_day(date(2027, 1, 4))
    with pytest.raises(InvalidInput, match="2003"):
        cal.day_reason(date(2003, 6, 2))


def test_a_provisional_deadline_in_2027_counts_weekends_only_and_says_so(cal: WorkCalendar) -> None:
    deadline = cal.add(at("2027-09-30 10:00"), "3WD", provisional_ok=True)
    assert deadline.due_at == at("2027-10-05 10:00")  # Oct 2-3 weekend; no National Day data
    assert deadline.provisional
    assert deadline.reason is not None and "2027" in deadline.reason
    assert [s.day.isoformat() for s in deadline.skipped] == ["2027-10-02", "2027-10-03"]
    assert "2027" in explain(deadline)[0]


def test_calendar_durations_need_no_holiday_data(cal: WorkCalendar) -> None:
    deadline = cal.add(at("2027-09-30 10:00"), "P7D")
    assert deadline.due_at == at("2027-10-07 10:00") and not deadline.provisional


# -------------------------------------------------------------------------------- overlays

OVERLAY_2027 = {
    "holidays": {f"2027-10-0{n}": "国庆节" for n in range(1, 8)},
    "workdays": {"2027-10-09": "国庆节调休"},
}


def test_an_overlay_for_2027_makes_2027_covered_and_changes_the_version(tmp_path: Path) -> None:
    write_overlay(tmp_path, 2027, **OVERLAY_2027)
    cal = WorkCalendar(tmp_path)
    assert cal.covers(2027)
    assert re.fullmatch(r"chinesecalendar-1\.11\.0\+2027:[0-9a-f]{8}", cal.version)
    deadline = cal.add(at("2027-09-30 10:00"), "2WD")
    assert deadline.due_at == at("2027-10-09 10:00")  # Fri 10-08, then the make-up Saturday
    assert not deadline.provisional
    assert cal.day_reason(date(2027, 10, 9)) == "调休上班（国庆节调休）"
    assert cal.day_reason(date(2027, 10, 5)) == "国庆节"


def test_reload_picks_up_an_overlay_dropped_in_later(tmp_path: Path) -> None:
    cal = WorkCalendar(tmp_path)
    before = cal.version
    assert not cal.covers(2027)
    path = write_overlay(tmp_path, 2027, **OVERLAY_2027)
    assert cal.reload() != before and cal.covers(2027)
    first = cal.version
    path.write_text(path.read_text(encoding="utf-8").replace("国庆节调休", "调休"), encoding="utf-8")
    assert cal.reload() != first


def test_an_overlay_overrides_the_package_day_by_day(tmp_path: Path) -> None:
    write_overlay(
        tmp_path,
        2026,
        holidays={"2026-10-08": "国庆节延长"},
        workdays={"2026-10-07": "提前上班"},
    )
    cal = WorkCalendar(tmp_path)
    assert not cal.is_working_day(date(2026, 10, 8))
    assert cal.day_reason(date(2026, 10, 8)) == "国庆节延长"
    assert cal.is_working_day(date(2026, 10, 7))
    assert cal.day_reason(date(2026, 10, 7)) == "工作日（提前上班）"
    assert cal.is_working_day(date(2026, 10, 6)) is False  # untouched days keep the package's answer
    assert cal.version.startswith("chinesecalendar-1.11.0+2026:")


def test_files_other_than_json_in_the_overlay_directory_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    assert WorkCalendar(tmp_path).version == "chinesecalendar-1.11.0"


def test_a_missing_overlay_directory_means_no_overlays(tmp_path: Path) -> None:
    assert WorkCalendar(tmp_path / "not-yet").version == "chinesecalendar-1.11.0"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"year": 2027, "holidays": {', "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"year": "2027"}', '"year"'),
        ('{"year": 2028}', "2028.json"),
        ('{"year": 2027, "holidays": {"2027-13-01": "x"}}', "2027-13-01"),
        ('{"year": 2027, "holidays": {"2026-10-01": "x"}}', "not in 2027"),
        ('{"year": 2027, "holidays": {"2027-10-01": ""}}', "needs a name"),
        ('{"year": 2027, "holidays": ["2027-10-01"]}', '"holidays" must be an object'),
        ('{"year": 2027, "holiday": {}}', "unknown key"),
        ('{"year": 2027, "holidays": {"2027-10-09": "a"}, "workdays": {"2027-10-09": "b"}}', "both"),
    ],
)
def test_a_malformed_overlay_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / "2027.json").write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        WorkCalendar(tmp_path)
    assert caught.value.code == "calendar.bad_overlay"
    assert "2027.json" in caught.value.message
    assert problem in caught.value.message
    assert caught.value.details["file"] == str(tmp_path / "2027.json")


def test_a_malformed_overlay_on_reload_changes_nothing(tmp_path: Path) -> None:
    write_overlay(tmp_path, 2027, **OVERLAY_2027)
    cal = WorkCalendar(tmp_path)
    version = cal.version
    (tmp_path / "2026.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"2026\.json"):
        cal.reload()
    assert cal.version == version
    assert cal.add(at("2027-09-30 10:00"), "2WD").due_at == at("2027-10-09 10:00")


def test_load_overlay_checks_one_file_for_an_administrator(tmp_path: Path) -> None:
    overlay = load_overlay(write_overlay(tmp_path, 2027, **OVERLAY_2027))
    assert overlay.year == 2027 and overlay.file == "2027.json" and len(overlay.digest) == 8
    assert overlay.workdays == {date(2027, 10, 9): "国庆节调休"}


# --------------------------------------------------------------------------------- explain


def test_explain_gives_one_line_per_skipped_day_and_the_due_time(cal: WorkCalendar) -> None:
    lines = explain(cal.add(at("2025-09-30 10:00"), "3WD"))
    assert len(lines) == 9
    assert lines[0].startswith("2025-10-01 周三 国庆节")
    assert lines[5].startswith("2025-10-06 周一 中秋")
    assert "2025-10-11T10:00:00+08:00" in lines[-1] and "chinesecalendar-1.11.0" in lines[-1]
