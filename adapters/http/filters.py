"""MindSphere's ``filter`` query parameter: parse it once, then test items against it quickly.

``GET /api/jobmanager/v3/jobs?filter=<URL-encoded JSON>`` (and, later, the schedules list) take
the JSON filter syntax MindSphere uses across its APIs. The caller URL-decodes the parameter and
hands the JSON text to :func:`parse_filter`, which either raises :class:`FilterError` (its message
is meant for the 400 answer) or returns a :class:`Filter` whose :meth:`Filter.matches` tests an
item, ``view.model_dump(mode="json")``: camelCase keys, ``creationDate`` an ISO string.

Syntax (sources: the Job Manager v3 reference for ``GET /jobs``, "filter by modelId, message,
status and creationDate; all the top fields used in the filter are ANDed, but the searched values
can use AND and OR operands", read via the mirror https://developers.qodex.ai/
siemens-xcelerator-developer-portal/job-manager-api/jobs-6/retrieves-all-the-jobs-executions,
whose own example is not valid JSON (``"or": { {...}, {...} }``): we take the list form the
issue gives; and MindSphere's common filter functions as documented for the
MindConnect API, https://developer.mindsphere.io/apis/connectivity-mindconnect/
api-mindconnect-references-filtering.html, which lists ``eq``, ``in``, ``startsWith``,
``endsWith``, ``contains``, ``before``, ``after`` and ``or``)::

    filter     := { field: condition, ... }            fields are AND-ed; {} matches everything
    condition  := plain value                          same as {"eq": value}
                | { operator: argument, ... }          operators in one object are AND-ed
    "or"       := [ { operator: argument, ... }, ... ] non-empty; elements are OR-ed; no "or" inside

String fields: ``eq``, ``contains``, ``startsWith``, ``endsWith`` take a string; ``in`` takes a
non-empty list of strings (or ``{"value": [...]}``, the other documented spelling) and matches
any of them. Date-time fields: ``eq``, ``after``/``gt`` (strictly later), ``before``/``lt``
(strictly earlier) take an ISO-8601 date-time.

Semantics chosen (MindSphere does not document case sensitivity anywhere we found):

* every string comparison is exact and case-sensitive: ``{"status": "running"}`` matches nothing,
  ``{"message": {"contains": "error"}}`` does not match ``"Error"``; an empty ``contains``,
  ``startsWith`` or ``endsWith`` argument matches every present string;
* ``eq`` on ``status`` compares with the status string (``"STOPPED"``); no value is rejected for
  not being a known status, it simply matches nothing;
* an argument of the wrong JSON type (``{"status": 42}``, ``{"eq": null}``) is an error, not a
  silent non-match; MindSphere's ``{"eq": null}`` "is null" test is not supported because a
  missing or ``null`` item field never matches any condition;
* date-times accept ``Z``, ``+HH:MM``/``+HHMM``/``+HH`` offsets, up to 9 fractional digits
  (truncated to microseconds), ``T`` or a space between date and time, and a bare date
  (midnight); without an offset they are UTC. Comparisons are between instants, so
  ``2018-06-23T22:09:00+02:00`` equals ``2018-06-23T20:09:00Z``; ``eq`` needs the exact instant
  (items carry milliseconds);
* MindSphere's top-level ``and``/``or``/``not``, ``between`` and ``or`` nested in ``or`` are
  rejected with a message rather than half-supported.

Cost is bounded for hostile input: at most :data:`MAX_FILTER_CHARS` characters, at most
:data:`MAX_CONDITIONS` comparisons (each ``in`` value counts), fixed nesting depth, no duplicate
keys. Parsing compiles the filter to small predicates per field with date-times parsed once;
``matches`` reads each filtered field of the item once and parses its date-time once.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

MAX_FILTER_CHARS: Final = 4096
MAX_CONDITIONS: Final = 50


class FilterError(ValueError):
    """A malformed filter; the message says what is wrong and is meant for a 400 answer."""


class FieldKind(StrEnum):
    STRING = "string"
    DATETIME = "datetime"


JOB_FILTER_FIELDS: Final[Mapping[str, FieldKind]] = MappingProxyType(
    {
        "status": FieldKind.STRING,
        "modelId": FieldKind.STRING,
        "configurationId": FieldKind.STRING,
        "message": FieldKind.STRING,
        "creationDate": FieldKind.DATETIME,
        "scheduleId": FieldKind.STRING,
    }
)

SCHEDULE_FILTER_FIELDS: Final[Mapping[str, FieldKind]] = MappingProxyType(
    {
        "name": FieldKind.STRING,
        "status": FieldKind.STRING,
        "modelId": FieldKind.STRING,
        "scheduleString": FieldKind.STRING,
        "creationDate": FieldKind.DATETIME,
    }
)

_OPERATORS: Final[Mapping[FieldKind, tuple[str, ...]]] = MappingProxyType(
    {
        FieldKind.STRING: ("contains", "endsWith", "eq", "in", "or", "startsWith"),
        FieldKind.DATETIME: ("after", "before", "eq", "gt", "lt", "or"),
    }
)
_KIND_NAMES: Final[Mapping[FieldKind, str]] = MappingProxyType(
    {FieldKind.STRING: "a string field", FieldKind.DATETIME: "a date-time field"}
)

Item = Mapping[str, object]
StringTest = Callable[[str], bool]
DatetimeTest = Callable[[datetime], bool]
# While compiling, a test is a StringTest or a DatetimeTest according to the field's kind, which
# also picks the check class that receives it; the union cannot express that, so Any it is.
_Test = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class _StringCheck:
    """All tests on one string field; a missing or non-string value fails."""

    field: str
    tests: tuple[StringTest, ...]

    def __call__(self, item: Item) -> bool:
        value = item.get(self.field)
        if not isinstance(value, str):
            return False
        return all(test(value) for test in self.tests)


@dataclass(frozen=True, slots=True)
class _DatetimeCheck:
    """All tests on one date-time field; the item's value is parsed once for all of them."""

    field: str
    tests: tuple[DatetimeTest, ...]

    def __call__(self, item: Item) -> bool:
        moment = _item_datetime(item.get(self.field))
        if moment is None:
            return False
        return all(test(moment) for test in self.tests)


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter: one check per filtered field, all of which must pass."""

    checks: tuple[_StringCheck | _DatetimeCheck, ...] = ()

    def matches(self, item: Item) -> bool:
        """True when every condition holds; a missing or ``None`` field never matches."""
        return all(check(item) for check in self.checks)


def parse_filter(raw: str | None, fields: Mapping[str, FieldKind]) -> Filter:
    """Parse and compile a filter; ``None``, blank or ``{}`` matches everything."""
    if raw is None:
        return Filter()
    if len(raw) > MAX_FILTER_CHARS:
        raise FilterError(
            f"invalid filter: it is {len(raw)} characters long; the limit is {MAX_FILTER_CHARS}"
        )
    text = raw.strip()
    if not text:
        return Filter()
    document = _load_json(text)
    if not isinstance(document, dict):
        raise FilterError(
            f'invalid filter: it must be a JSON object like {{"status": "RUNNING"}}, '
            f"got {_describe(document)}"
        )
    return _Compiler(fields).compile(document)


def _load_json(text: str) -> object:
    try:
        return json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise FilterError(
            f"invalid filter: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise FilterError("invalid filter: JSON nested far too deeply") from None


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise FilterError(
                f"invalid filter: the key {_quote(key)} appears more than once in one object"
            )
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise FilterError(f"invalid filter: not valid JSON ({name} is not a JSON value)")


class _Compiler:
    """Turns the decoded JSON into checks, counting conditions as it goes."""

    def __init__(self, fields: Mapping[str, FieldKind]) -> None:
        self._fields = fields
        self._conditions = 0

    def compile(self, document: dict[str, object]) -> Filter:
        checks: list[_StringCheck | _DatetimeCheck] = []
        for name, condition in document.items():
            kind = self._fields.get(name)
            if kind is None:
                raise FilterError(self._unknown_field(name))
            if kind is FieldKind.STRING:
                checks.append(_StringCheck(name, tuple(self._condition(name, kind, condition))))
            else:
                checks.append(_DatetimeCheck(name, tuple(self._condition(name, kind, condition))))
        return Filter(tuple(checks))

    def _unknown_field(self, name: str) -> str:
        allowed = ", ".join(sorted(self._fields))
        message = f"invalid filter: unknown field {_quote(name)}; allowed fields: {allowed}"
        if name in ("and", "or", "not"):
            message += (
                f'. A top-level "{name}" is not supported: top-level fields are always AND-ed; '
                'use "or" inside a field, e.g. {"status": {"or": [{"eq": "STOPPED"}, '
                '{"eq": "FAILED"}]}}'
            )
        return message

    def _condition(self, where: str, kind: FieldKind, condition: object) -> list[_Test]:
        if isinstance(condition, dict):
            return self._operator_object(where, kind, condition, or_allowed=True)
        if isinstance(condition, list):
            instead = '{"in": [...]} or ' if kind is FieldKind.STRING else ""
            raise FilterError(
                f"invalid filter at {where}: a list is not a value; to match any of several "
                f'values use {instead}{{"or": [{{"eq": ...}}, ...]}}'
            )
        return [self._operator(where, kind, "eq", condition, plain=True)]

    def _operator_object(
        self, where: str, kind: FieldKind, operators: dict[str, object], *, or_allowed: bool
    ) -> list[_Test]:
        if not operators:
            raise FilterError(
                f"invalid filter at {where}: an empty operator object; give at least one of "
                f"{_allowed(kind, or_allowed=or_allowed)}"
            )
        tests: list[_Test] = []
        for operator, argument in operators.items():
            here = f"{where}.{operator}"
            if operator == "or":
                if not or_allowed:
                    raise FilterError(
                        f'invalid filter at {here}: "or" cannot be nested inside "or"; '
                        'each element of an "or" list holds plain operators such as '
                        f"{_allowed(kind, or_allowed=False)}"
                    )
                tests.append(self._or(here, kind, argument))
            else:
                tests.append(self._operator(here, kind, operator, argument, plain=False))
        return tests

    def _or(self, where: str, kind: FieldKind, argument: object) -> _Test:
        example = '[{"eq": "STOPPED"}, {"eq": "FAILED"}]'
        if not isinstance(argument, list) or not argument:
            got = "an empty list" if argument == [] else _describe(argument)
            raise FilterError(
                f"invalid filter at {where}: needs a non-empty list of operator objects "
                f"like {example}, got {got}"
            )
        alternatives: list[tuple[_Test, ...]] = []
        for index, element in enumerate(argument):
            here = f"{where}[{index}]"
            if not isinstance(element, dict):
                raise FilterError(
                    f'invalid filter at {here}: each element of an "or" list must be an '
                    f'operator object like {{"eq": ...}}, got {_describe(element)}'
                )
            alternatives.append(tuple(self._operator_object(here, kind, element, or_allowed=False)))
        if all(len(tests) == 1 for tests in alternatives):
            singles = tuple(tests[0] for tests in alternatives)
            return lambda value: any(test(value) for test in singles)
        groups = tuple(alternatives)
        return lambda value: any(all(test(value) for test in tests) for tests in groups)

    def _operator(
        self, where: str, kind: FieldKind, operator: str, argument: object, *, plain: bool
    ) -> _Test:
        if operator not in _OPERATORS[kind]:
            raise FilterError(self._unknown_operator(where, kind, operator))
        self._count(where, 1)
        if kind is FieldKind.DATETIME:
            return _datetime_test(operator, _filter_datetime(where, argument))
        if operator == "in":
            return self._in(where, argument)
        if not isinstance(argument, str):
            what = "the value" if plain else f'"{operator}"'
            raise FilterError(
                f"invalid filter at {where}: {what} must be a string, got {_describe(argument)}"
            )
        return _string_test(operator, argument)

    def _unknown_operator(self, where: str, kind: FieldKind, operator: str) -> str:
        field = where.split(".", 1)[0]
        allowed = _allowed(kind, or_allowed=True)
        other = FieldKind.DATETIME if kind is FieldKind.STRING else FieldKind.STRING
        if operator in _OPERATORS[other]:
            return (
                f"invalid filter at {where}: {_quote(operator)} applies only to "
                f"{_KIND_NAMES[other].removeprefix('a ')}s, and {field} is "
                f"{_KIND_NAMES[kind]}; allowed operators for {field}: {allowed}"
            )
        return (
            f"invalid filter at {where}: unknown operator {_quote(operator)}; "
            f"allowed operators for {field} ({_KIND_NAMES[kind]}): {allowed}"
        )

    def _in(self, where: str, argument: object) -> StringTest:
        values = argument
        if isinstance(argument, dict) and argument.keys() == {"value"}:
            values = argument["value"]
        if not isinstance(values, list) or not values:
            got = "an empty list" if values == [] else _describe(argument)
            raise FilterError(
                f'invalid filter at {where}: needs a non-empty list of strings like ["A", "B"], '
                f"got {got}"
            )
        self._count(where, len(values) - 1)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise FilterError(
                    f"invalid filter at {where}[{index}]: must be a string, got {_describe(value)}"
                )
        return frozenset(values).__contains__

    def _count(self, where: str, conditions: int) -> None:
        self._conditions += conditions
        if self._conditions > MAX_CONDITIONS:
            raise FilterError(
                f"invalid filter at {where}: more than {MAX_CONDITIONS} conditions "
                '(each comparison and each "in" value counts)'
            )


def _string_test(operator: str, target: str) -> StringTest:
    if operator == "eq":
        return target.__eq__
    if operator == "contains":
        return lambda value: target in value
    if operator == "startsWith":
        return lambda value: value.startswith(target)
    return lambda value: value.endswith(target)  # endsWith, the last string operator left


def _datetime_test(operator: str, target: datetime) -> DatetimeTest:
    if operator == "eq":
        return lambda moment: moment == target
    if operator in ("after", "gt"):
        return lambda moment: moment > target
    return lambda moment: moment < target  # before, lt


_ISO_DATETIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?)?"
)
_DECODED_PLUS: Final = re.compile(r"\d \d{2}(?::?\d{2})?$")


def _filter_datetime(where: str, argument: object) -> datetime:
    example = 'e.g. "2018-06-23T20:09:00Z" or "2018-06-23T22:09:00.000+02:00"'
    if not isinstance(argument, str):
        raise FilterError(
            f"invalid filter at {where}: needs an ISO-8601 date-time string ({example}), "
            f"got {_describe(argument)}"
        )
    match = _ISO_DATETIME.fullmatch(argument)
    if match is None:
        hint = ""
        if _DECODED_PLUS.search(argument):
            hint = '; a "+" in a URL query decodes to a space: encode it as %2B'
        raise FilterError(
            f"invalid filter at {where}: {_quote(argument)} is not an ISO-8601 date-time "
            f"({example}){hint}"
        )
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        zone = UTC
        if sign is not None:
            if int(off_h) > 23 or int(off_m or 0) > 59:
                raise ValueError("the offset must be between -23:59 and +23:59")
            offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
            zone = timezone(-offset if sign == "-" else offset)
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError as exc:
        raise FilterError(
            f"invalid filter at {where}: {_quote(argument)} is not a real date-time ({exc})"
        ) from None


def _item_datetime(value: object) -> datetime | None:
    """The item's date-time, naive read as UTC; None when absent or unreadable."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, datetime):
        moment = value
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _allowed(kind: FieldKind, *, or_allowed: bool) -> str:
    return ", ".join(op for op in _OPERATORS[kind] if or_allowed or op != "or")


def _quote(text: str, limit: int = 60) -> str:
    quoted = json.dumps(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 2] + '…"'


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int | float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "a list"
    else:
        kind = "an object"
    shown = json.dumps(value)
    if len(shown) > 40:
        shown = shown[:39] + "…"
    return f"{kind} ({shown})"
