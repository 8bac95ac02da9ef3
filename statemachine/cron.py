"""Cron and Quartz schedule strings: parse once, then compute fire times in an IANA time zone.

croniter finds the matching wall-clock times (naive, read in the schedule's zone). This module
owns the rest:

- the grammar, so that a bad string is refused with a message naming the field and the part
  (croniter's own messages name neither), and so that croniter only ever sees plain numeric
  lists (it has quirks of its own: ``5-5`` is the whole cycle there, ``H`` is a hash);
- the Quartz dialect: seconds, an optional year, ``?``, weekdays numbered 1-7 from Sunday;
- the day rules croniter lacks or reads differently from Quartz (``L``, ``L-n``, ``LW``,
  ``nW``, ``n#k``, ``nL``): they are applied here, one matching day per month;
- the mapping of wall-clock times onto instants across DST changes (see ``docs/SCHEDULES.md``):
  a skipped wall time fires at its shifted instant (02:30 → 03:30 on a one-hour spring-forward),
  a repeated one fires once, on its first pass; fire instants are a set, so a shifted instant
  that meets another fire time fires once and the sequence stays strictly increasing.
"""

from __future__ import annotations

import calendar
import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Final, Literal
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = ["MAX_EXPRESSION_LENGTH", "CronError", "CronSchedule"]

MAX_EXPRESSION_LENGTH: Final = 200
_MAX_TIMEZONE_LENGTH: Final = 64
# croniter's own horizon, also used for the day rules it does not see: a schedule that does not
# fire within this many years of the moment asked about is treated as never firing again.
_HORIZON_YEARS: Final = 50
_ONE_DAY: Final = timedelta(days=1)
_TICK: Final = timedelta(microseconds=1)
_ALLOWED = re.compile(r"[0-9A-Za-z*?/,#\- \t]*")

_MONTH_NAMES: Final = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
# Weekdays are numbered as cron does internally: 0 = Sunday … 6 = Saturday.
_DAY_NAMES: Final = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


class CronError(ValueError):
    """A schedule string or time zone that cannot be used; ``field`` is the request field."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Field:
    """One position of the schedule string: its name, value range and value names."""

    name: str
    low: int
    high: int
    names: Mapping[str, int]
    hint: str = ""

    def error(self, token: str, problem: str) -> CronError:
        return CronError("scheduleString", f"{self.name} field '{token}' {problem}")

    def out_of_range(self, token: str) -> CronError:
        return self.error(token, f"is out of range {self.low}-{self.high}{self.hint}")


_SECOND = _Field("second", 0, 59, {})
_MINUTE = _Field("minute", 0, 59, {})
_HOUR = _Field("hour", 0, 23, {})
_DOM = _Field("day-of-month", 1, 31, {})
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DOW_UNIX = _Field("day-of-week", 0, 7, _DAY_NAMES, " (0 or 7 = SUN … 6 = SAT)")
_DOW_QUARTZ = _Field(
    "day-of-week",
    1,
    7,
    {name: number + 1 for name, number in _DAY_NAMES.items()},
    " (Quartz numbering: 1 = SUN … 7 = SAT)",
)
_YEAR = _Field("year", 1970, 2099, {})


def _value(token: str, part: str, spec: _Field) -> int:
    """One number or name, checked against the field's range."""
    if part.isdigit():
        number = int(part)
    elif part.upper() in spec.names:
        return spec.names[part.upper()]
    elif spec.names:
        raise spec.error(token, "is not a number or a name")
    else:
        raise spec.error(token, "is not a number")
    if not spec.low <= number <= spec.high:
        raise spec.out_of_range(token)
    return number


def _values(text: str, spec: _Field) -> frozenset[int]:
    """A list of values, ranges (``a-b``, wrapping past the field's end) and steps (``a/n``)."""
    result: set[int] = set()
    size = spec.high - spec.low + 1
    for item in text.split(","):
        if not item:
            raise spec.error(text, "has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise spec.error(item, "has a step that is not a number")
            step = int(step_text)
            if not 1 <= step <= size:
                raise spec.error(item, f"has a step out of range 1-{size}")
        if base == "*":
            first, last = spec.low, spec.high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _value(item, first_text, spec), _value(item, last_text, spec)
            if spec is _YEAR and first > last:  # years do not come round again
                raise spec.error(item, "is a range that runs backwards")
        elif base:
            first = _value(item, base, spec)
            # Quartz's "a/n": from a to the end of the field in steps of n.
            last = spec.high if slash else first
        else:
            raise spec.error(item, "is missing a value")
        span = (last - first) % size
        result.update((first - spec.low + k) % size + spec.low for k in range(0, span + 1, step))
    return frozenset(result)


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _cron_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7


@dataclass(frozen=True)
class _DayRule:
    """A day-of-month or day-of-week rule that picks at most one day in each month."""

    kind: Literal["last", "last_weekday", "nearest_weekday", "nth", "last_of"]
    number: int = 0  # days before the last (last), the day (nearest_weekday), k (nth)
    weekday: int = 0  # cron numbering, for nth and last_of

    def day_in(self, year: int, month: int) -> int | None:
        last = _days_in_month(year, month)
        if self.kind == "last":
            day = last - self.number
            return day if day >= 1 else None
        if self.kind == "last_weekday":
            day = last
            while calendar.weekday(year, month, day) >= 5:
                day -= 1
            return day
        if self.kind == "nearest_weekday":
            if self.number > last:
                return None
            return _nearest_weekday(year, month, self.number, last)
        first_weekday = _cron_weekday(date(year, month, 1))
        first = 1 + (self.weekday - first_weekday) % 7
        if self.kind == "nth":
            day = first + 7 * (self.number - 1)
            return day if day <= last else None
        return first + 7 * ((last - first) // 7)

    def matches(self, day: date) -> bool:
        return self.day_in(day.year, day.month) == day.day

    def first_on_or_after(self, day: date, limit: date) -> date | None:
        year, month = day.year, day.month
        while (year, month) <= (limit.year, limit.month):
            found = self.day_in(year, month)
            if found is not None and (year, month, found) >= (day.year, day.month, day.day):
                return date(year, month, found)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None

    def last_on_or_before(self, day: date, limit: date) -> date | None:
        year, month = day.year, day.month
        while (year, month) >= (limit.year, limit.month):
            found = self.day_in(year, month)
            if found is not None and (year, month, found) <= (day.year, day.month, day.day):
                return date(year, month, found)
            year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        return None


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """Quartz's ``nW``: the weekday nearest ``day``, never leaving the month."""
    weekday = calendar.weekday(year, month, day)
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return day + 1 if day < last else day - 2
    return day


_LAST_DAY = re.compile(r"L(?:-(\d+))?")
_NEAREST = re.compile(r"(\d+)W")
_NTH = re.compile(r"(\w+?)#(\d+)")
_LAST_OF = re.compile(r"(\w+?)L")


def _day_of_month_rule(token: str) -> _DayRule | None:
    upper = token.upper()
    if upper == "LW":
        return _DayRule("last_weekday")
    if match := _LAST_DAY.fullmatch(upper):
        before = int(match.group(1) or 0)
        if before > 30:
            raise _DOM.error(token, "counts back more than 30 days from the last day")
        return _DayRule("last", number=before)
    if match := _NEAREST.fullmatch(upper):
        day = int(match.group(1))
        if not 1 <= day <= 31:
            raise _DOM.out_of_range(token)
        return _DayRule("nearest_weekday", number=day)
    if any(mark in upper for mark in "LW"):
        raise _DOM.error(token, "uses L or W other than as 'L', 'L-n', 'LW' or 'nW', alone")
    return None


def _day_of_week_rule(token: str, spec: _Field) -> _DayRule | None:
    upper = token.upper()
    if upper == "L":  # Quartz: "L" alone in day-of-week is the last day of the week
        return None
    if match := _NTH.fullmatch(upper):
        nth = int(match.group(2))
        if not 1 <= nth <= 5:
            raise spec.error(token, "has an occurrence after '#' out of range 1-5")
        weekday = _weekday(token, match.group(1), spec)
        return _DayRule("nth", number=nth, weekday=weekday)
    if match := _LAST_OF.fullmatch(upper):
        return _DayRule("last_of", weekday=_weekday(token, match.group(1), spec))
    if any(mark in upper for mark in "L#"):
        raise spec.error(token, "uses L or # other than as 'nL' or 'n#k', alone")
    return None


def _weekday(token: str, part: str, spec: _Field) -> int:
    """A day-of-week value in the dialect's numbering, as cron numbering (0 = Sunday)."""
    number = _value(token, part, spec)
    return (number - spec.low) % 7 if spec is _DOW_QUARTZ else number % 7


def _is_unrestricted(token: str) -> bool:
    return token in ("*", "?")


def _join(values: frozenset[int], spec: _Field | None = None) -> str:
    """A croniter list; ``*`` for a whole field (not for day fields: ``1-31`` OR-s with a
    day-of-week in 5-field cron, where ``*`` would not)."""
    if spec is not None and len(values) == spec.high - spec.low + 1:
        return "*"
    return ",".join(str(v) for v in sorted(values))


@dataclass(frozen=True)
class _Plan:
    """What croniter is asked (plain numeric lists) and the day rule it is not asked about."""

    croniter_expression: str
    day_rule: _DayRule | None


def _compile(expression: str) -> _Plan:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CronError(
            "scheduleString", f"must be at most {MAX_EXPRESSION_LENGTH} characters long"
        )
    if not expression.strip():
        raise CronError("scheduleString", "must not be empty")
    if expression.strip().startswith("@"):
        raise CronError(
            "scheduleString", "does not take shortcuts such as '@daily'; write '0 0 * * *'"
        )
    if not _ALLOWED.fullmatch(expression):
        position, character = next(
            (i, c) for i, c in enumerate(expression) if not _ALLOWED.fullmatch(c)
        )
        raise CronError(
            "scheduleString",
            f"has an unexpected character {character!r} at position {position + 1}",
        )
    tokens = expression.split()
    if len(tokens) == 5:
        quartz = False
        second, (minute, hour, dom, month, dow), year = "0", tokens, None
        dow_spec = _DOW_UNIX
    elif len(tokens) in (6, 7):
        quartz = True
        second, minute, hour, dom, month, dow = tokens[:6]
        year = tokens[6] if len(tokens) == 7 else None
        dow_spec = _DOW_QUARTZ
    else:
        raise CronError(
            "scheduleString",
            f"has {len(tokens)} fields; expected 5 (minute hour day-of-month month day-of-week) "
            "or Quartz's 6-7 (second minute hour day-of-month month day-of-week [year])",
        )

    for spec, token in ((_SECOND, second), (_MINUTE, minute), (_HOUR, hour), (_MONTH, month)):
        if "?" in token:
            raise spec.error(token, "uses '?', which only day-of-month and day-of-week accept")
    for spec, token in ((_DOM, dom), (dow_spec, dow)):
        if "?" in token and token != "?":
            raise spec.error(token, "uses '?' with other values; '?' stands alone")
    if quartz:
        if dom == "?" and dow == "?":
            raise CronError(
                "scheduleString", "has '?' in both day-of-month and day-of-week; one must be set"
            )
        if not _is_unrestricted(dom) and not _is_unrestricted(dow):
            raise CronError(
                "scheduleString",
                f"sets both day-of-month '{dom}' and day-of-week '{dow}'; Quartz needs '?' "
                "in one of them",
            )

    seconds = _values(second, _SECOND)
    minutes = _values(minute, _MINUTE)
    hours = _values(hour, _HOUR)
    months = _values(month, _MONTH)
    if year is not None and "?" in year:
        raise _YEAR.error(year, "uses '?', which only day-of-month and day-of-week accept")
    years = None if year is None or year == "*" else _values(year, _YEAR)

    dom_rule = None if _is_unrestricted(dom) else _day_of_month_rule(dom)
    dow_rule = None if _is_unrestricted(dow) else _day_of_week_rule(dow, dow_spec)
    day_rule = dom_rule or dow_rule
    if day_rule is not None and not (_is_unrestricted(dom) or _is_unrestricted(dow)):
        raise CronError(
            "scheduleString",
            f"combines day-of-month '{dom}' and day-of-week '{dow}'; with L, W or # the other "
            "day field must be '*' or '?'",
        )

    dom_text = "*"
    if not _is_unrestricted(dom) and dom_rule is None:
        days = _values(dom, _DOM)
        dom_text = _join(days)
        if _is_unrestricted(dow):
            _check_day_occurs(dom, month, min(days), months)
    elif isinstance(dom_rule, _DayRule) and dom_rule.kind == "nearest_weekday":
        _check_day_occurs(dom, month, dom_rule.number, months)
    elif isinstance(dom_rule, _DayRule) and dom_rule.kind == "last":
        longest = max(_days_in_month(2000, m) for m in months)
        if longest - dom_rule.number < 1:
            raise _DOM.error(dom, f"never occurs in month field '{month}'")

    dow_text = "*"
    if dow.upper() == "L":
        dow_text = "6"
    elif not _is_unrestricted(dow) and dow_rule is None:
        weekdays = _values(dow, dow_spec)
        shift = dow_spec.low if quartz else 0
        dow_text = _join(frozenset((d - shift) % 7 for d in weekdays))

    fields = [
        _join(minutes, _MINUTE),
        _join(hours, _HOUR),
        dom_text,
        _join(months, _MONTH),
        dow_text,
        _join(seconds, _SECOND),
    ]
    if years is not None:
        fields.append(_join(years))
    return _Plan(" ".join(fields), day_rule)


def _check_day_occurs(token: str, month_token: str, day: int, months: frozenset[int]) -> None:
    """Refuse a day-of-month no listed month has (``30 2``), which would never fire."""
    if day > max(_days_in_month(2000, m) for m in months):  # 2000: February has 29
        raise _DOM.error(token, f"never occurs in month field '{month_token}'")


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    # "localtime" is whatever this machine is set to, and "Factory" is a placeholder.
    return frozenset((available_timezones() - {"localtime", "Factory"}) | {"UTC"})


def _load_zone(name: str) -> ZoneInfo:
    if not name:
        raise CronError("timezone", "is empty; use an IANA name such as 'Europe/Berlin'")
    if len(name) > _MAX_TIMEZONE_LENGTH or name not in _known_zones():
        shown = name if len(name) <= _MAX_TIMEZONE_LENGTH else name[:_MAX_TIMEZONE_LENGTH] + "…"
        raise CronError(
            "timezone", f"{shown!r} is not a known IANA time zone (such as 'Europe/Berlin')"
        )
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError) as error:
        raise CronError("timezone", f"{name!r} cannot be loaded") from error


@dataclass(frozen=True)
class _Change:
    """A change of UTC offset: the instant it happens and the offsets before and after it."""

    at: datetime
    before: timedelta
    after: timedelta


def _naive(instant: datetime, offset: timedelta) -> datetime:
    return (instant + offset).replace(tzinfo=None)


def _aware_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed ``scheduleString`` with its time zone; fire times come back as aware UTC."""

    expression: str
    timezone: str = "UTC"
    _plan: _Plan = field(init=False, repr=False, compare=False)
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    _template: croniter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise CronError("scheduleString", "must be a string")
        if not isinstance(self.timezone, str):
            raise CronError("timezone", "must be a string")
        plan = _compile(self.expression)
        try:
            template = croniter(plan.croniter_expression, datetime(2000, 1, 1))
        except CroniterError as error:  # our translation is plain lists; this is a bug
            raise CronError("scheduleString", f"cannot be scheduled ({error})") from error
        object.__setattr__(self, "_plan", plan)
        object.__setattr__(self, "_zone", _load_zone(self.timezone))
        object.__setattr__(self, "_template", template)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        """Parse and check both; raises only :class:`CronError`."""
        return cls(expression, timezone)

    # -- public queries -------------------------------------------------------------------

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment``; None when it never fires again."""
        return self._next_after(_aware_utc(moment, "moment"), self._croniter())

    def next_fire_times(self, after: datetime, count: int = 5) -> list[datetime]:
        """Up to ``count`` fire times strictly after ``after``, ascending."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        cursor = _aware_utc(after, "after")
        engine = self._croniter()
        found: list[datetime] = []
        while len(found) < count and (fire := self._next_after(cursor, engine)) is not None:
            found.append(fire)
            cursor = fire
        return found

    def fire_times_between(
        self, start: datetime, end: datetime, limit: int = 1000
    ) -> list[datetime]:
        """Fire times ``t`` with ``start < t <= end``, ascending, at most ``limit`` of them."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        cursor = _aware_utc(start, "start")
        stop = _aware_utc(end, "end")
        engine = self._croniter()
        found: list[datetime] = []
        while len(found) < limit and (fire := self._next_after(cursor, engine)) is not None:
            if fire > stop:
                break
            found.append(fire)
            cursor = fire
        return found

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The most recent fire time at or before ``moment`` (searching back 50 years)."""
        return self._latest_at_or_before(_aware_utc(moment, "moment"), self._croniter())

    # -- instants -------------------------------------------------------------------------

    def _next_after(self, moment: datetime, engine: croniter) -> datetime | None:
        try:
            return self._next_instant(moment, engine)
        except OverflowError:  # past datetime.max: it never fires again within range
            return None

    def _latest_at_or_before(self, moment: datetime, engine: croniter) -> datetime | None:
        try:
            return self._latest_instant(moment, engine)
        except OverflowError:
            return None

    def _next_instant(self, moment: datetime, engine: croniter) -> datetime | None:
        best: datetime | None = None
        start = self._wall(moment)
        change = self._change_before(moment)
        if change is not None:
            jump = change.after - change.before
            if jump > timedelta(0) and moment < change.at + jump:
                # Just after a spring-forward: skipped wall times fire at their shifted
                # instants, which may still be ahead of `moment`.
                skipped = self._wall_next(engine, _naive(moment, change.before))
                if skipped is not None and skipped < _naive(change.at, change.after):
                    best = (skipped - change.before).replace(tzinfo=UTC)
            elif jump < timedelta(0) and moment < change.at - jump:
                # In the second pass of a repeated hour: those wall times fired on the first.
                start = max(start, _naive(change.at, change.before) - _TICK)
        wall = self._wall_next(engine, start)
        while wall is not None:
            instant, exists = self._instant(wall)
            if not exists:
                # A skipped wall time maps past the gap, beyond the first times after it:
                # keep it and also look at the first time after the gap.
                best = instant if best is None else min(best, instant)
                gap = self._change_before(instant)
                if gap is None:  # unreachable for real zones; stop rather than spin
                    return best
                wall = self._wall_next(engine, _naive(gap.at, gap.after) - _TICK)
                continue
            if instant > moment:
                return instant if best is None else min(best, instant)
            wall = self._wall_next(engine, wall)
        return best

    def _latest_instant(self, moment: datetime, engine: croniter) -> datetime | None:
        end = self._wall(moment)
        change = self._change_before(moment)
        if change is not None and moment < change.at + (change.before - change.after):
            # In the second pass of a repeated hour: the whole repeated span fired on its
            # first pass, before `moment`.
            end = _naive(change.at, change.before) - _TICK
        wall = self._wall_prev(engine, end)
        if wall is None:
            return None
        instant, exists = self._instant(wall)
        if not exists:
            if instant <= moment:
                return instant
            # A skipped time whose shifted instant is still ahead: what fired last is the
            # skipped time just before `moment`'s reading on the old offset (or one before
            # the gap).
            gap = self._change_before(instant)
            if gap is None:  # unreachable for real zones
                return None
            earlier = self._wall_prev(engine, min(wall - _TICK, _naive(moment, gap.before)))
            return None if earlier is None else self._instant(earlier)[0]
        # Skipped times of a gap just before `wall` shift past the gap's end, so they can
        # come after `wall`'s instant and still be at or before `moment`.
        gap = self._change_before(instant)
        if gap is not None and gap.after > gap.before and instant < gap.at + gap.after - gap.before:
            last_skipped = min(_naive(gap.at, gap.after) - _TICK, _naive(moment, gap.before))
            skipped = self._wall_prev(engine, last_skipped)
            if skipped is not None:
                shifted, skipped_exists = self._instant(skipped)
                if not skipped_exists and shifted <= moment:
                    return max(instant, shifted)
        return instant

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self._zone).replace(tzinfo=None)

    def _instant(self, wall: datetime) -> tuple[datetime, bool]:
        """Wall time → instant (fold 0: first pass, or shifted past a gap) and if it exists."""
        instant = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        return instant, self._wall(instant) == wall

    def _offset(self, instant: datetime) -> timedelta:
        offset = instant.astimezone(self._zone).utcoffset()
        return offset if offset is not None else timedelta(0)

    def _change_before(self, moment: datetime) -> _Change | None:
        """The offset change in the day up to ``moment``, if any (zones change at most daily)."""
        hi = moment.replace(microsecond=0)
        if hi - datetime.min.replace(tzinfo=UTC) < 2 * _ONE_DAY:
            return None  # the first days of year 1: nothing to look back on
        lo = hi - _ONE_DAY
        after, before = self._offset(hi), self._offset(lo)
        if after == before:
            return None
        while hi - lo > timedelta(seconds=1):
            middle = lo + (hi - lo) // 2
            middle = middle.replace(microsecond=0)
            if self._offset(middle) == after:
                hi = middle
            else:
                lo = middle
        return _Change(at=hi, before=before, after=after)

    # -- wall-clock times (naive, in the schedule's zone) ---------------------------------

    def _croniter(self) -> croniter:
        # croniter keeps a cursor, so each query gets its own; a shallow copy shares the parsed
        # fields, which croniter only reads.
        return copy.copy(self._template)

    def _wall_next(self, engine: croniter, after: datetime) -> datetime | None:
        """The first matching wall time strictly after ``after``."""
        return self._wall_search(after, lambda start: engine.get_next(datetime, start), True)

    def _wall_prev(self, engine: croniter, at_or_before: datetime) -> datetime | None:
        """The last matching wall time at or before ``at_or_before``."""
        return self._wall_search(
            at_or_before + _TICK, lambda start: engine.get_prev(datetime, start), False
        )

    def _wall_search(
        self, start: datetime, step: Callable[[datetime], datetime], forward: bool
    ) -> datetime | None:
        rule = self._plan.day_rule
        years = timedelta(days=366 * _HORIZON_YEARS)
        try:
            limit = (start + years if forward else start - years).date()
        except OverflowError:
            limit = date.max if forward else date.min
        try:
            wall = step(start)
            while rule is not None and not rule.matches(wall.date()):
                # croniter does not see the day rule: jump to the rule's next (previous)
                # day and ask croniter again from there.
                if forward:
                    day = rule.first_on_or_after(wall.date() + _ONE_DAY, limit)
                    if day is None:
                        return None
                    wall = step(datetime.combine(day, time()) - _TICK)
                else:
                    day = rule.last_on_or_before(wall.date() - _ONE_DAY, limit)
                    if day is None:
                        return None
                    wall = step(datetime.combine(day + _ONE_DAY, time()))
                if (wall.date() > limit) if forward else (wall.date() < limit):
                    return None
        except CroniterBadDateError:  # nothing within croniter's 50-year horizon
            return None
        return wall
