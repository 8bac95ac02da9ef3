"""Cron and Quartz schedules: known examples, DST changes, errors, and properties."""

import calendar
import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from statemachine.cron import MAX_EXPRESSION_LENGTH, CronError, CronSchedule

NY = "America/New_York"
BERLIN = "Europe/Berlin"
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def iso(moments: list[datetime]) -> list[str]:
    return [m.strftime("%Y-%m-%d %H:%M:%S") for m in moments]


# Quartz's CronTrigger tutorial examples (years moved to 2024+), expected times checked by hand
# against a 2024 calendar (1 January 2024 is a Monday; 2024 is a leap year).
QUARTZ_EXAMPLES = [
    ("0 0 12 * * ?", START, ["2024-01-01 12:00:00", "2024-01-02 12:00:00"]),
    ("0 15 10 ? * *", START, ["2024-01-01 10:15:00", "2024-01-02 10:15:00"]),
    ("0 15 10 * * ?", utc(2024, 1, 1, 10, 15), ["2024-01-02 10:15:00"]),
    ("0 15 10 * * ? 2025", START, ["2025-01-01 10:15:00", "2025-01-02 10:15:00"]),
    ("0 * 14 * * ?", utc(2024, 1, 1, 14, 58), ["2024-01-01 14:59:00", "2024-01-02 14:00:00"]),
    (
        "0 0/5 14 * * ?",
        utc(2024, 1, 1, 14, 52),
        ["2024-01-01 14:55:00", "2024-01-02 14:00:00", "2024-01-02 14:05:00"],
    ),
    (
        "0 0/5 14,18 * * ?",
        utc(2024, 1, 1, 14, 56),
        ["2024-01-01 18:00:00", "2024-01-01 18:05:00"],
    ),
    (
        "0 0-5 14 * * ?",
        utc(2024, 1, 1, 14, 4, 30),
        ["2024-01-01 14:05:00", "2024-01-02 14:00:00", "2024-01-02 14:01:00"],
    ),
    (
        "0 10,44 14 ? 3 WED",
        START,
        ["2024-03-06 14:10:00", "2024-03-06 14:44:00", "2024-03-13 14:10:00"],
    ),
    (
        "0 15 10 ? * MON-FRI",
        utc(2024, 1, 5, 11),  # a Friday, after its run
        ["2024-01-08 10:15:00", "2024-01-09 10:15:00"],
    ),
    ("0 15 10 15 * ?", START, ["2024-01-15 10:15:00", "2024-02-15 10:15:00"]),
    ("0 15 10 L * ?", START, ["2024-01-31 10:15:00", "2024-02-29 10:15:00", "2024-03-31 10:15:00"]),
    (
        "0 15 10 L-2 * ?",
        START,
        ["2024-01-29 10:15:00", "2024-02-27 10:15:00", "2024-03-29 10:15:00"],
    ),
    (
        "0 15 10 ? * 6L",  # last Friday
        START,
        ["2024-01-26 10:15:00", "2024-02-23 10:15:00", "2024-03-29 10:15:00"],
    ),
    (
        "0 15 10 ? * 6L 2024-2025",
        utc(2025, 12, 1),
        ["2025-12-26 10:15:00"],
    ),
    (
        "0 15 10 ? * 6#3",  # third Friday
        START,
        ["2024-01-19 10:15:00", "2024-02-16 10:15:00", "2024-03-15 10:15:00"],
    ),
    (
        "0 0 12 1/5 * ?",
        utc(2024, 1, 26, 13),
        ["2024-01-31 12:00:00", "2024-02-01 12:00:00", "2024-02-06 12:00:00"],
    ),
    ("0 11 11 11 11 ?", START, ["2024-11-11 11:11:00", "2025-11-11 11:11:00"]),
    (
        "0 0 12 ? * 2#1",  # first Monday
        START,
        ["2024-01-01 12:00:00", "2024-02-05 12:00:00", "2024-03-04 12:00:00"],
    ),
    (
        "0 0 0 15W * ?",  # 15 June 2024 is a Saturday, 15 September a Sunday
        utc(2024, 5, 20),
        [
            "2024-06-14 00:00:00",
            "2024-07-15 00:00:00",
            "2024-08-15 00:00:00",
            "2024-09-16 00:00:00",
        ],
    ),
    (
        "0 0 0 1W * ?",  # 1 June 2024 is a Saturday: Monday the 3rd, not 31 May
        utc(2024, 5, 2),
        ["2024-06-03 00:00:00", "2024-07-01 00:00:00"],
    ),
    (
        "0 0 0 LW * ?",  # 31 March 2024 is a Sunday
        START,
        ["2024-01-31 00:00:00", "2024-02-29 00:00:00", "2024-03-29 00:00:00"],
    ),
]


@pytest.mark.parametrize(("expression", "after", "expected"), QUARTZ_EXAMPLES)
def test_quartz_tutorial_examples(expression: str, after: datetime, expected: list[str]) -> None:
    """Quartz's documented examples fire at the hand-checked times."""
    schedule = CronSchedule.parse(expression)
    assert iso(schedule.next_fire_times(after, len(expected))) == expected


FIVE_FIELD_EXAMPLES = [
    ("*/15 * * * *", START, ["2024-01-01 00:15:00", "2024-01-01 00:30:00"]),
    ("0 9 * * 1-5", utc(2024, 1, 5, 10), ["2024-01-08 09:00:00", "2024-01-09 09:00:00"]),
    (
        "30 4 1,15 * 5",  # day-of-month OR day-of-week, as in POSIX cron
        START,
        [
            "2024-01-01 04:30:00",
            "2024-01-05 04:30:00",
            "2024-01-12 04:30:00",
            "2024-01-15 04:30:00",
            "2024-01-19 04:30:00",
        ],
    ),
    ("0 0 * * 0", START, ["2024-01-07 00:00:00", "2024-01-14 00:00:00"]),
    ("0 0 * * 7", START, ["2024-01-07 00:00:00", "2024-01-14 00:00:00"]),
    ("0 0 * * sun", START, ["2024-01-07 00:00:00", "2024-01-14 00:00:00"]),
    (
        "0 0 * * FRI-MON",
        START,
        [
            "2024-01-05 00:00:00",
            "2024-01-06 00:00:00",
            "2024-01-07 00:00:00",
            "2024-01-08 00:00:00",
        ],
    ),
    ("0 0 1 JAN-MAR/2 *", START, ["2024-03-01 00:00:00", "2025-01-01 00:00:00"]),
    (
        "0 22-2/2 * * *",
        START,
        ["2024-01-01 02:00:00", "2024-01-01 22:00:00", "2024-01-02 00:00:00"],
    ),
    ("59 23 31 12 ?", START, ["2024-12-31 23:59:00"]),
    ("0 12 L * *", START, ["2024-01-31 12:00:00", "2024-02-29 12:00:00"]),
    ("0 12 * * 5#2", START, ["2024-01-12 12:00:00", "2024-02-09 12:00:00"]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), FIVE_FIELD_EXAMPLES)
def test_five_field_examples(expression: str, after: datetime, expected: list[str]) -> None:
    """Classic cron strings: Sunday is 0 or 7, names, wrapping ranges, steps, OR-ed days."""
    schedule = CronSchedule.parse(expression)
    assert iso(schedule.next_fire_times(after, len(expected))) == expected


def test_every_second_quartz() -> None:
    """``* * * * * ?`` fires every second, strictly after a moment with microseconds."""
    schedule = CronSchedule.parse("* * * * * ?")
    fires = schedule.next_fire_times(START + timedelta(microseconds=500_000), 3)
    assert iso(fires) == ["2024-01-01 00:00:01", "2024-01-01 00:00:02", "2024-01-01 00:00:03"]
    assert schedule.latest_at_or_before(START + timedelta(microseconds=500_000)) == START


def test_next_after_is_strict_and_returns_aware_utc() -> None:
    """A fire time equal to the moment is not "after" it; results are aware UTC."""
    schedule = CronSchedule.parse("0 0 12 * * ?", BERLIN)
    noon = datetime(2024, 1, 10, 12, tzinfo=ZoneInfo(BERLIN))
    following = schedule.next_after(noon)
    assert following == utc(2024, 1, 11, 11)
    assert following is not None
    assert following.tzinfo is UTC
    assert schedule.next_after(noon - timedelta(microseconds=1)) == noon
    assert schedule.latest_at_or_before(noon) == noon
    assert schedule.latest_at_or_before(noon - timedelta(microseconds=1)) == utc(2024, 1, 9, 11)


def test_a_past_year_never_fires_again() -> None:
    """A year list entirely in the past gives None, and a finished range stops."""
    assert CronSchedule.parse("0 15 10 * * ? 2005").next_after(START) is None
    assert CronSchedule.parse("0 15 10 * * ? 2005").latest_at_or_before(START) == utc(
        2005, 12, 31, 10, 15
    )
    finished = CronSchedule.parse("0 0 12 ? * * 2024-2025")
    assert finished.next_after(utc(2025, 12, 31, 12)) is None
    assert finished.next_fire_times(utc(2025, 12, 30), 5) == [
        utc(2025, 12, 30, 12),
        utc(2025, 12, 31, 12),
    ]
    assert CronSchedule.parse("0 0 12 * * ? 2030").latest_at_or_before(START) is None


def test_fire_times_between_bounds_and_limit() -> None:
    """``start < t <= end``, ascending, cut at ``limit``."""
    schedule = CronSchedule.parse("0 0 * * *")
    between = schedule.fire_times_between(utc(2024, 1, 1), utc(2024, 1, 4))
    assert between == [utc(2024, 1, 2), utc(2024, 1, 3), utc(2024, 1, 4)]
    assert schedule.fire_times_between(utc(2024, 1, 1), utc(2024, 1, 4), limit=2) == between[:2]
    assert schedule.fire_times_between(utc(2024, 1, 4), utc(2024, 1, 1)) == []
    assert schedule.next_fire_times(START, 0) == []


# --- DST -------------------------------------------------------------------------------------
# 2024: New York springs forward 10 March 02:00 EST (07:00Z) and falls back 3 November 02:00
# EDT (06:00Z); Berlin springs forward 31 March 02:00 CET (01:00Z), falls back 27 October
# 03:00 CEST (01:00Z).

DST_CASES = [
    # A skipped wall time fires once, at its shifted instant (02:30 → 03:30 new time).
    (
        "0 30 2 * * ?",
        NY,
        utc(2024, 3, 9),
        ["2024-03-09 07:30:00", "2024-03-10 07:30:00", "2024-03-11 06:30:00"],
    ),
    (
        "30 2 * * *",
        BERLIN,
        utc(2024, 3, 30),
        ["2024-03-30 01:30:00", "2024-03-31 01:30:00", "2024-04-01 00:30:00"],
    ),
    # A repeated wall time fires once, on its first pass (summer time).
    (
        "0 30 1 * * ?",
        NY,
        utc(2024, 11, 2),
        ["2024-11-02 05:30:00", "2024-11-03 05:30:00", "2024-11-04 06:30:00"],
    ),
    (
        "30 2 * * *",
        BERLIN,
        utc(2024, 10, 26),
        ["2024-10-26 00:30:00", "2024-10-27 00:30:00", "2024-10-28 01:30:00"],
    ),
    # Hourly: the skipped 02:00 shifts onto 03:00 and fires once with it; the repeated hour
    # fires on its first pass only.
    (
        "0 0 * * * ?",
        NY,
        utc(2024, 3, 10, 5, 30),
        ["2024-03-10 06:00:00", "2024-03-10 07:00:00", "2024-03-10 08:00:00"],
    ),
    (
        "0 0 * * * ?",
        NY,
        utc(2024, 11, 3, 4, 30),
        ["2024-11-03 05:00:00", "2024-11-03 07:00:00", "2024-11-03 08:00:00"],
    ),
    (
        "0 * * * *",
        BERLIN,
        utc(2024, 3, 31, 0, 30),
        ["2024-03-31 01:00:00", "2024-03-31 02:00:00"],
    ),
    (
        "0 * * * *",
        BERLIN,
        utc(2024, 10, 26, 23, 30),
        ["2024-10-27 00:00:00", "2024-10-27 02:00:00", "2024-10-27 03:00:00"],
    ),
    # Every 15 minutes keeps its rhythm through spring-forward (no duplicates) and pauses
    # through the repeated hour.
    (
        "0 */15 * * * ?",
        NY,
        utc(2024, 3, 10, 6, 30),
        [f"2024-03-10 {h:02}:{m:02}:00" for h, m in [(6, 45), (7, 0), (7, 15), (7, 30), (7, 45)]],
    ),
    (
        "0 */15 * * * ?",
        NY,
        utc(2024, 11, 3, 5, 30),
        ["2024-11-03 05:45:00", "2024-11-03 07:00:00", "2024-11-03 07:15:00"],
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), DST_CASES)
def test_dst_changes(expression: str, zone: str, after: datetime, expected: list[str]) -> None:
    """Skipped times fire shifted, repeated times once; UTC instants never repeat."""
    schedule = CronSchedule.parse(expression, zone)
    fires = schedule.next_fire_times(after, len(expected))
    assert iso(fires) == expected
    for fire in fires:
        assert schedule.latest_at_or_before(fire) == fire


def test_moment_inside_a_spring_forward_shadow() -> None:
    """At 03:10 EDT the skipped 02:30 (fired at 03:30 EDT) is still ahead."""
    schedule = CronSchedule.parse("0 30 2 * * ?", NY)
    assert schedule.next_after(utc(2024, 3, 10, 7, 10)) == utc(2024, 3, 10, 7, 30)
    assert schedule.latest_at_or_before(utc(2024, 3, 10, 7, 40)) == utc(2024, 3, 10, 7, 30)
    assert schedule.latest_at_or_before(utc(2024, 3, 10, 7, 20)) == utc(2024, 3, 9, 7, 30)


def test_moment_inside_a_repeated_hour() -> None:
    """In the second 01:xx of the fall-back night the schedule's 01:30 has already fired."""
    schedule = CronSchedule.parse("0 30 1 * * ?", NY)
    second_pass = utc(2024, 11, 3, 6, 15)  # 01:15 EST
    assert schedule.next_after(second_pass) == utc(2024, 11, 4, 6, 30)
    assert schedule.latest_at_or_before(utc(2024, 11, 3, 6, 45)) == utc(2024, 11, 3, 5, 30)
    minutely = CronSchedule.parse("* * * * *", NY)
    assert minutely.next_after(second_pass) == utc(2024, 11, 3, 7)
    assert minutely.latest_at_or_before(second_pass) == utc(2024, 11, 3, 5, 59)


def test_shifted_times_can_come_after_later_wall_times() -> None:
    """Lord Howe skips 02:00-02:29 (+10:30 → +11): 02:20 fires at 02:50, after 02:40."""
    schedule = CronSchedule.parse("0 */20 2 * * ?", "Australia/Lord_Howe")
    fires = schedule.next_fire_times(utc(2024, 10, 5, 15), 3)
    # 02:00 → 02:30 (15:30Z), 02:40 (15:40Z), 02:20 → 02:50 (15:50Z)
    assert iso(fires) == ["2024-10-05 15:30:00", "2024-10-05 15:40:00", "2024-10-05 15:50:00"]
    assert schedule.latest_at_or_before(utc(2024, 10, 5, 16, 10)) == utc(2024, 10, 5, 15, 50)
    assert schedule.latest_at_or_before(utc(2024, 10, 5, 15, 45)) == utc(2024, 10, 5, 15, 40)
    assert schedule.latest_at_or_before(utc(2024, 10, 5, 15, 35)) == utc(2024, 10, 5, 15, 30)


def test_samoa_skipping_a_whole_day() -> None:
    """Apia skipped 30 December 2011: its noon shifts onto the 31st's and fires once."""
    daily = CronSchedule.parse("0 0 12 * * ?", "Pacific/Apia")
    fires = daily.next_fire_times(utc(2011, 12, 28), 4)
    assert iso(fires) == [
        "2011-12-28 22:00:00",  # 12:00 -10
        "2011-12-29 22:00:00",
        "2011-12-30 22:00:00",  # 31 December 12:00 +14 (and the skipped 30th's noon)
        "2011-12-31 22:00:00",  # 1 January 12:00 +14
    ]
    hourly = CronSchedule.parse("0 0 * * * ?", "Pacific/Apia")
    between = hourly.fire_times_between(utc(2011, 12, 30, 8), utc(2011, 12, 30, 12))
    assert iso(between) == [f"2011-12-30 {hour:02}:00:00" for hour in (9, 10, 11, 12)]


def test_quartz_star_may_stand_in_for_question_mark() -> None:
    """``*`` in both Quartz day fields means every day, as ``?`` in one of them does."""
    lenient = CronSchedule.parse("0 0 12 * * *")
    strict = CronSchedule.parse("0 0 12 * * ?")
    assert lenient.next_fire_times(START, 3) == strict.next_fire_times(START, 3)


def test_the_end_of_time_is_none_not_an_error() -> None:
    """Past datetime's range there is no next fire time."""
    schedule = CronSchedule.parse("0 0 12 * * ?")
    assert schedule.next_after(datetime(9999, 12, 31, 23, 59, tzinfo=UTC)) is None
    assert schedule.latest_at_or_before(datetime(1, 1, 2, tzinfo=UTC)) == datetime(
        1, 1, 1, 12, tzinfo=UTC
    )


# --- errors ----------------------------------------------------------------------------------

BAD_SCHEDULES = [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("*" * (MAX_EXPRESSION_LENGTH + 1), f"at most {MAX_EXPRESSION_LENGTH} characters"),
    ("* * * *", "has 4 fields"),
    ("* * * * * * * *", "has 8 fields"),
    ("@daily", "does not take shortcuts such as '@daily'"),
    ("0 0 25 * * ?", "hour field '25' is out of range 0-23"),
    ("60 * * * *", "minute field '60' is out of range 0-59"),
    ("61 * * * * ?", "second field '61' is out of range 0-59"),
    ("0 0 0 32 * ?", "day-of-month field '32' is out of range 1-31"),
    ("0 0 0 0 * ?", "day-of-month field '0' is out of range 1-31"),
    ("0 0 0 ? 13 *", "month field '13' is out of range 1-12"),
    ("0 0 0 ? FOO *", "month field 'FOO' is not a number or a name"),
    ("0 0 12 ? * 8", "day-of-week field '8' is out of range 1-7"),
    ("0 0 12 ? * 0", "day-of-week field '0' is out of range 1-7 (Quartz numbering"),
    ("0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
    ("0 0 12 * * ? 1969", "year field '1969' is out of range 1970-2099"),
    ("0 0 12 * * ? 2100", "year field '2100' is out of range 1970-2099"),
    ("0 0 12 * * ? 20?5", "year field '20?5' uses '?'"),
    ("0 0 12 * * ? 2030-2025", "year field '2030-2025' is a range that runs backwards"),
    ("0 0 12 ? * ?", "'?' in both day-of-month and day-of-week"),
    ("0 0 12 15 * MON", "sets both day-of-month '15' and day-of-week 'MON'"),
    ("0 0 12 ?5 * *", "day-of-month field '?5' uses '?' with other values"),
    ("0 ? * * * ?", "minute field '?' uses '?'"),
    ("0 0 12 ? * 6#6", "day-of-week field '6#6' has an occurrence after '#' out of range 1-5"),
    ("0 0 12 ? * 6#0", "day-of-week field '6#0'"),
    ("0 0 12 ? * 9#2", "day-of-week field '9#2' is out of range 1-7"),
    ("0 0 12 ? * 6L,2", "day-of-week field '6L,2' uses L or #"),
    ("0 0 12 L-31 * ?", "day-of-month field 'L-31' counts back more than 30 days"),
    ("0 0 12 32W * ?", "day-of-month field '32W' is out of range 1-31"),
    ("0 0 12 1,15W * ?", "day-of-month field '1,15W' uses L or W"),
    ("0 0 12 W15 * ?", "day-of-month field 'W15' uses L or W"),
    ("0 0 12 30 2 ?", "day-of-month field '30' never occurs in month field '2'"),
    ("0 0 12 31W 4,6 ?", "day-of-month field '31W' never occurs in month field '4,6'"),
    ("0 0 12 L-29 FEB ?", "day-of-month field 'L-29' never occurs in month field 'FEB'"),
    ("0 12 L * 5", "combines day-of-month 'L' and day-of-week '5'"),
    ("*/0 * * * *", "minute field '*/0' has a step out of range 1-60"),
    ("0/61 * * * * ?", "second field '0/61' has a step out of range 1-60"),
    ("0/x * * * * ?", "second field '0/x' has a step that is not a number"),
    ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
    ("0 0 12 ? * 5-", "day-of-week field '5-' is not a number or a name"),
    ("-5 * * * *", "minute field '-5' is not a number"),
    ("H * * * *", "minute field 'H' is not a number"),
    ("/5 * * * *", "minute field '/5' is missing a value"),
    ("0 0 12 * * \x00", "unexpected character '\\x00' at position 12"),
    ("0 0 12 * * \uff1f", "unexpected character"),
    ("0 0 12\n* * ?", "unexpected character '\\n'"),
]


@pytest.mark.parametrize(("expression", "fragment"), BAD_SCHEDULES)
def test_bad_schedule_strings_name_the_field(expression: str, fragment: str) -> None:
    """Each refusal is a CronError for ``scheduleString`` naming the part at fault."""
    with pytest.raises(CronError) as caught:
        CronSchedule.parse(expression)
    assert caught.value.field == "scheduleString"
    assert str(caught.value).startswith("scheduleString: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "zone", ["", "Mars/Olympus", "Europe/Berlin ", "europe/berlin", "../../etc/passwd", "x" * 999]
)
def test_bad_timezones_name_the_field(zone: str) -> None:
    """An unknown or malformed zone is a CronError for ``timezone``."""
    with pytest.raises(CronError) as caught:
        CronSchedule.parse("0 0 12 * * ?", zone)
    assert caught.value.field == "timezone"
    assert str(caught.value).startswith("timezone: ")
    assert len(str(caught.value)) < 200


def test_constructor_validates_like_parse() -> None:
    """Building the dataclass directly, or replacing a field, checks the same way."""
    with pytest.raises(CronError):
        CronSchedule("0 0 25 * * ?")
    schedule = CronSchedule.parse("0 0 12 * * ?", BERLIN)
    assert schedule == CronSchedule("0 0 12 * * ?", BERLIN)
    assert hash(schedule) == hash(CronSchedule("0 0 12 * * ?", BERLIN))
    with pytest.raises(CronError):
        dataclasses.replace(schedule, timezone="Nowhere/Land")
    assert CronSchedule.parse("0 0 12 * * ?").timezone == "UTC"


@pytest.mark.parametrize(
    "call",
    [
        lambda s, m: s.next_after(m),
        lambda s, m: s.next_fire_times(m),
        lambda s, m: s.fire_times_between(m, m),
        lambda s, m: s.latest_at_or_before(m),
    ],
)
def test_naive_moments_are_refused(call: Callable[[CronSchedule, datetime], object]) -> None:
    """A naive datetime is ambiguous, so every query refuses it."""
    with pytest.raises(ValueError, match="timezone-aware"):
        call(CronSchedule.parse("0 0 12 * * ?"), datetime(2024, 1, 1))


def test_lowercase_is_accepted() -> None:
    """Names and special characters are case-insensitive."""
    upper = CronSchedule.parse("0 15 10 ? JAN-MAR FRI#3")
    lower = CronSchedule.parse("0 15 10 ? jan-mar fri#3")
    assert upper.next_fire_times(START, 4) == lower.next_fire_times(START, 4)
    assert CronSchedule.parse("0 0 0 lw * ?").next_after(START) == utc(2024, 1, 31)


# --- properties ------------------------------------------------------------------------------

ZONES = [
    "UTC",
    NY,
    BERLIN,
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Chatham",  # +12:45, changing at 02:45
    "Australia/Sydney",  # southern hemisphere
    "Asia/Kolkata",
    "Pacific/Apia",  # skipped 30 December 2011 entirely
]


@cache
def offset_changes(zone: str) -> tuple[datetime, ...]:
    """Instants (to the hour) where the zone's offset changes, in 2011 and 2024."""
    tz = ZoneInfo(zone)
    found = []
    for year in (2011, 2024):
        day = utc(year, 1, 1)
        while day.year == year:
            following = day + timedelta(days=1)
            if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
                hour = day
                while hour.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                    hour += timedelta(hours=1)
                found.append(hour)
            day = following
    return tuple(found)


@st.composite
def moments(draw: st.DrawFn, zone: str) -> datetime:
    """Any moment, or one within a few hours of one of the zone's offset changes."""
    near_a_change = draw(st.booleans())
    changes = offset_changes(zone)
    if changes and near_a_change:
        base = draw(st.sampled_from(changes))
        return base + timedelta(seconds=draw(st.integers(-4 * 3600, 4 * 3600)))
    return draw(st.datetimes(datetime(2005, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)))


QUARTZ_DAYS = [
    ("?", "*"),
    ("*", "?"),
    ("L", "?"),
    ("L-3", "?"),
    ("15W", "?"),
    ("LW", "?"),
    ("?", "6L"),
    ("?", "2#1"),
    ("?", "MON-FRI"),
    ("1/5", "?"),
    ("31", "?"),
]


@st.composite
def schedules(draw: st.DrawFn) -> CronSchedule:
    """A schedule mixing the syntax, in a zone with awkward DST."""
    zone = draw(st.sampled_from(ZONES))
    minute = draw(st.sampled_from(["0", "*/7", "30", "0,30", "*", "59", "10-20/5", "*/20"]))
    hour = draw(st.sampled_from(["*", "2", "1", "1-3", "*/5", "0", "23"]))
    month = draw(st.sampled_from(["*", "3", "10,11", "JAN-MAR"]))
    if draw(st.booleans()):
        second = draw(st.sampled_from(["0", "*/15", "30"]))
        dom, dow = draw(st.sampled_from(QUARTZ_DAYS))
        expression = f"{second} {minute} {hour} {dom} {month} {dow}"
    else:
        dom, dow = draw(st.sampled_from([("*", "*"), ("1,15", "5"), ("L", "*"), ("*", "0,6")]))
        expression = f"{minute} {hour} {dom} {month} {dow}"
    return CronSchedule.parse(expression, zone)


@st.composite
def schedule_and_moment(draw: st.DrawFn) -> tuple[CronSchedule, datetime]:
    schedule = draw(schedules())
    return schedule, draw(moments(schedule.timezone))


PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(schedule_and_moment())
def test_fire_times_increase_strictly_after_the_start(
    pair: tuple[CronSchedule, datetime],
) -> None:
    """Fire times are aware UTC, all after the start, strictly increasing."""
    schedule, moment = pair
    fires = schedule.next_fire_times(moment, 6)
    assert fires, "every generated schedule fires again"
    assert all(fire.tzinfo is UTC for fire in fires)
    assert all(fire > moment for fire in fires)
    assert all(a < b for a, b in itertools.pairwise(fires))


@PROPERTY_SETTINGS
@given(schedule_and_moment(), st.integers(1, 72 * 3600))
def test_fire_times_between_agrees_with_next_and_latest(
    pair: tuple[CronSchedule, datetime], window_seconds: int
) -> None:
    """The window holds exactly the chain of next_after; latest_at_or_before finds no gaps."""
    schedule, start = pair
    end = start + timedelta(seconds=window_seconds)
    between = schedule.fire_times_between(start, end, limit=40)
    chain: list[datetime] = []
    cursor = start
    while len(chain) < 40 and (fire := schedule.next_after(cursor)) is not None and fire <= end:
        chain.append(fire)
        cursor = fire
    assert between == chain
    previous = schedule.latest_at_or_before(start)
    for fire in between:
        assert schedule.latest_at_or_before(fire) == fire
        assert schedule.latest_at_or_before(fire - timedelta(microseconds=1)) == previous
        previous = fire


@PROPERTY_SETTINGS
@given(schedule_and_moment())
def test_latest_at_or_before_is_the_fire_just_before(pair: tuple[CronSchedule, datetime]) -> None:
    """No fire lies between latest_at_or_before(m) and m, nor between m and next_after(m)."""
    schedule, moment = pair
    latest = schedule.latest_at_or_before(moment)
    following = schedule.next_after(moment)
    assert following is not None
    assert following > moment
    assert latest is not None
    assert latest <= moment
    assert schedule.next_after(latest) == following
    assert schedule.latest_at_or_before(following - timedelta(microseconds=1)) == latest


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([NY, BERLIN, "Australia/Lord_Howe", "Australia/Sydney"]),
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 45]),
)
def test_daily_times_fire_once_per_local_day_across_dst(zone: str, hour: int, minute: int) -> None:
    """Around every 2024 offset change a daily wall time fires exactly once each local day."""
    schedule = CronSchedule.parse(f"0 {minute} {hour} * * ?", zone)
    tz = ZoneInfo(zone)
    for change in offset_changes(zone):
        if change.year != 2024:
            continue
        start, end = change - timedelta(days=3), change + timedelta(days=3)
        days = [fire.astimezone(tz).date() for fire in schedule.fire_times_between(start, end)]
        first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
        inner = [first + timedelta(days=i) for i in range(1, (last - first).days)]
        assert days == sorted(set(days)), "one fire per local day"
        assert set(inner) <= set(days), "no local day without its fire"


@cache
def parsed(expression: str) -> CronSchedule:
    return CronSchedule.parse(expression)


def weekday_in_month(year: int, month: int, weekday: int) -> list[int]:
    """Days of the month falling on ``weekday`` (0 = Sunday)."""
    return [
        day
        for day in range(1, calendar.monthrange(year, month)[1] + 1)
        if (date(year, month, day).weekday() + 1) % 7 == weekday
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2000, 2040),
    st.integers(1, 12),
    st.integers(1, 7),
    st.integers(1, 5),
    st.integers(0, 30),
    st.integers(1, 31),
)
@example(2024, 6, 7, 1, 0, 1)
@example(2024, 3, 1, 5, 30, 31)
def test_day_rules_match_the_calendar(
    year: int, month: int, quartz_weekday: int, nth: int, back: int, near: int
) -> None:
    """``n#k``, ``nL``, ``L-n``, ``nW`` and ``LW`` pick the same day as a brute-force scan."""
    first = utc(year, month, 1) - timedelta(microseconds=1)
    last = calendar.monthrange(year, month)[1]
    weekdays = weekday_in_month(year, month, quartz_weekday - 1)
    open_days = [day for day in range(1, last + 1) if date(year, month, day).weekday() < 5]

    def fire_day(expression: str) -> int | None:
        fire = parsed(expression).next_after(first)
        assert fire is not None
        return fire.day if (fire.year, fire.month) == (year, month) else None

    expected_nth = weekdays[nth - 1] if nth <= len(weekdays) else None
    assert fire_day(f"0 0 0 ? * {quartz_weekday}#{nth}") == expected_nth
    assert fire_day(f"0 0 0 ? * {quartz_weekday}L") == weekdays[-1]
    assert fire_day(f"0 0 0 L-{back} * ?") == (last - back if last - back >= 1 else None)
    assert fire_day("0 0 0 LW * ?") == open_days[-1]
    nearest = min(open_days, key=lambda day: abs(day - near)) if near <= last else None
    assert fire_day(f"0 0 0 {near}W * ?") == nearest


@st.composite
def plain_fields(draw: st.DrawFn) -> tuple[str, set[int], set[int], set[int], set[int] | None]:
    """A Quartz string built from plain lists, with the sets it should mean."""
    minutes = draw(st.sets(st.integers(0, 59), min_size=1, max_size=4))
    hours = draw(st.sets(st.integers(0, 23), min_size=1, max_size=3))
    if draw(st.booleans()):
        days = draw(st.sets(st.integers(1, 28), min_size=1, max_size=3))
        weekdays = None
        dom, dow = ",".join(map(str, sorted(days))), "?"
    else:
        days = set()
        quartz = draw(st.sets(st.integers(1, 7), min_size=1, max_size=3))
        weekdays = {q - 1 for q in quartz}  # Quartz 1 = SUN; cron 0 = SUN
        dom, dow = "?", ",".join(map(str, sorted(quartz)))
    expression = f"0 {','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))} "
    return f"{expression}{dom} * {dow}", minutes, hours, days, weekdays


@settings(max_examples=100, deadline=None)
@given(plain_fields(), st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1)))
def test_plain_quartz_lists_match_a_brute_force_scan(
    fields: tuple[str, set[int], set[int], set[int], set[int] | None], naive_start: datetime
) -> None:
    """In UTC, next_after equals the first minute a brute-force scan finds for the same sets."""
    expression, minutes, hours, days, weekdays = fields
    start = naive_start.replace(tzinfo=UTC)
    day = start.date()
    expected = None
    while expected is None:
        if (weekdays is None and day.day in days) or (
            weekdays is not None and (day.weekday() + 1) % 7 in weekdays
        ):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if candidate > start and expected is None:
                        expected = candidate
        day += timedelta(days=1)
    assert CronSchedule.parse(expression).next_after(start) == expected


CRON_ALPHABET = "0123456789*?/,#-LWlw MONTUEWDHFRISAJNBPYGCVX\t"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=MAX_EXPRESSION_LENGTH + 20),
        st.text(alphabet=CRON_ALPHABET, max_size=40),
        st.lists(
            st.text(alphabet=CRON_ALPHABET.strip(), min_size=1, max_size=6), min_size=5, max_size=7
        ).map(" ".join),
    ),
    st.one_of(st.just("UTC"), st.just(NY), st.text(max_size=40)),
)
def test_parse_raises_only_cron_error(expression: str, zone: str) -> None:
    """Any text either parses (and then computes) or raises CronError, nothing else."""
    refused: str | None = None
    try:
        schedule = CronSchedule.parse(expression, zone)
    except CronError as error:
        refused = error.field
    else:
        fires = schedule.next_fire_times(START, 2)
        assert all(fire > START for fire in fires)
        latest = schedule.latest_at_or_before(START)
        assert latest is None or latest <= START
    assert refused in (None, "scheduleString", "timezone")
