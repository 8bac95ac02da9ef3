"""The MindSphere filter parser: operators, AND/OR, time zones, errors, limits, and a property."""

import ast
import json
import random
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adapters.http.filters as filters_module
from adapters.http.filters import (
    JOB_FILTER_FIELDS,
    MAX_CONDITIONS,
    MAX_FILTER_CHARS,
    FieldKind,
    Filter,
    FilterError,
    parse_filter,
)
from schemas.jobs import JobView
from schemas.status import JobStatus

AT = datetime(2018, 6, 23, 20, 9, tzinfo=UTC)
EXAMPLE_AT = "2018-06-23T20:09:00Z"
EXAMPLE = (
    '{"message":{"contains":"Error"},"status":{"or":[{"eq":"STOPPED"},{"eq":"FAILED"}]},'
    '"creationDate":{"after":"2018-06-23T20:09:00Z"}}'
)


def job(
    status: JobStatus = JobStatus.RUNNING,
    message: str = "",
    created: datetime = AT,
    model_id: str = "model-1",
    configuration_id: str = "config-1",
) -> dict[str, Any]:
    return JobView(
        id="job",
        model_id=model_id,
        message=message,
        status=status,
        creation_date=created,
        created_by="tenant",
        input_folder_id="in",
        output_folder_id="out",
        configuration_id=configuration_id,
    ).model_dump(mode="json")


def parse(value: object) -> Filter:
    return parse_filter(value if isinstance(value, str) else json.dumps(value), JOB_FILTER_FIELDS)


def matches(value: object, item: dict[str, Any]) -> bool:
    return parse(value).matches(item)


# --- the API surface -------------------------------------------------------------------------


def test_job_fields() -> None:
    """The job list filters on the five documented fields and the scheduleId extension."""
    assert dict(JOB_FILTER_FIELDS) == {
        "status": FieldKind.STRING,
        "modelId": FieldKind.STRING,
        "configurationId": FieldKind.STRING,
        "message": FieldKind.STRING,
        "creationDate": FieldKind.DATETIME,
        "scheduleId": FieldKind.STRING,
    }


def test_filter_error_is_a_value_error() -> None:
    """FilterError is a ValueError, so generic handlers still catch it."""
    assert issubclass(FilterError, ValueError)


def test_module_imports_only_stdlib() -> None:
    """The module imports nothing outside the standard library (no aiohttp, no kafka)."""
    tree = ast.parse(Path(filters_module.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    assert imported <= set(sys.stdlib_module_names) | {"pydantic"}


@pytest.mark.parametrize("raw", [None, "", "   ", "{}", " { } "])
def test_empty_filter_matches_everything(raw: str | None) -> None:
    """None, blank and {} match every item, even an empty one."""
    parsed = parse_filter(raw, JOB_FILTER_FIELDS)
    assert parsed.matches(job())
    assert parsed.matches({})


# --- every operator --------------------------------------------------------------------------


def test_plain_value_is_eq() -> None:
    """A plain value means equality, exact and case-sensitive."""
    assert matches({"status": "RUNNING"}, job(JobStatus.RUNNING))
    assert not matches({"status": "FAILED"}, job(JobStatus.RUNNING))
    assert not matches({"status": "running"}, job(JobStatus.RUNNING))


def test_eq_operator() -> None:
    """{"eq": v} is the same as the plain value; a prefix is not equal."""
    assert matches({"modelId": {"eq": "model-1"}}, job())
    assert not matches({"modelId": {"eq": "model"}}, job())


def test_contains_is_case_sensitive() -> None:
    """contains finds a substring with the same case only."""
    item = job(message="Job failed: Error in note")
    assert matches({"message": {"contains": "Error"}}, item)
    assert not matches({"message": {"contains": "error"}}, item)
    assert matches({"message": {"contains": ""}}, item)


def test_starts_with_and_ends_with() -> None:
    """startsWith and endsWith test the ends of the string, case-sensitively."""
    item = job(message="Dropped: upload Successful.")
    assert matches({"message": {"startsWith": "Dropped"}}, item)
    assert not matches({"message": {"startsWith": "upload"}}, item)
    assert matches({"message": {"endsWith": "Successful."}}, item)
    assert not matches({"message": {"endsWith": "successful."}}, item)


@pytest.mark.parametrize(
    "argument", [["STOPPED", "FAILED"], {"value": ["STOPPED", "FAILED"]}], ids=["list", "value"]
)
def test_in_both_documented_spellings(argument: object) -> None:
    """in matches any listed value, as a list or as {"value": [...]}."""
    assert matches({"status": {"in": argument}}, job(JobStatus.FAILED))
    assert not matches({"status": {"in": argument}}, job(JobStatus.RUNNING))


@pytest.mark.parametrize(("after", "before"), [("after", "before"), ("gt", "lt")])
def test_after_and_before_are_strict(after: str, before: str) -> None:
    """after/gt and before/lt are strict comparisons of instants."""
    item = job(created=AT)
    assert matches({"creationDate": {after: "2018-06-23T20:08:59.999Z"}}, item)
    assert not matches({"creationDate": {after: "2018-06-23T20:09:00Z"}}, item)
    assert matches({"creationDate": {before: "2018-06-23T20:09:00.001Z"}}, item)
    assert not matches({"creationDate": {before: "2018-06-23T20:09:00Z"}}, item)


def test_datetime_eq_compares_instants() -> None:
    """eq on a date-time matches the same instant written in another zone."""
    assert matches({"creationDate": "2018-06-23T22:09:00+02:00"}, job(created=AT))
    assert matches({"creationDate": {"eq": "2018-06-23T16:09:00-04:00"}}, job(created=AT))
    assert not matches({"creationDate": {"eq": "2018-06-23T20:09:01Z"}}, job(created=AT))


@pytest.mark.parametrize(
    "written",
    [
        "2018-06-23T20:09:00Z",
        "2018-06-23T20:09:00.000Z",
        "2018-06-23T20:09:00.000000000z",
        "2018-06-23T20:09Z",
        "2018-06-23T22:09:00+02:00",
        "2018-06-23T22:09:00+0200",
        "2018-06-23T15:09:00-05",
        "2018-06-24T01:39:00+05:30",
        "2018-06-23T20:09:00",
        "2018-06-23 20:09:00",
        "2018-06-23T20:09:00,000Z",
    ],
)
def test_accepted_datetime_spellings(written: str) -> None:
    """Z, offsets with and without colon, fractions, naive (UTC) all denote the same instant."""
    assert matches({"creationDate": written}, job(created=AT))


def test_bare_date_is_midnight_utc() -> None:
    """A date without a time is midnight UTC."""
    item = job(created=datetime(2018, 6, 23, 0, 0, tzinfo=UTC))
    assert matches({"creationDate": "2018-06-23"}, item)


def test_item_datetime_in_any_zone_or_naive() -> None:
    """Item date-times with offsets compare as instants; naive ones are read as UTC."""
    later = {"creationDate": {"after": "2018-06-23T20:00:00Z"}}
    assert matches(later, {"creationDate": "2018-06-23T22:05:00+02:00"})
    assert not matches(later, {"creationDate": "2018-06-23T21:55:00+02:00"})
    assert matches(later, {"creationDate": "2018-06-23T20:05:00"})


# --- AND / OR --------------------------------------------------------------------------------


def test_fields_are_anded() -> None:
    """Every top-level field must match."""
    condition = {"status": "FAILED", "modelId": "model-1"}
    assert matches(condition, job(JobStatus.FAILED, model_id="model-1"))
    assert not matches(condition, job(JobStatus.FAILED, model_id="model-2"))
    assert not matches(condition, job(JobStatus.RUNNING, model_id="model-1"))


def test_operators_in_one_object_are_anded() -> None:
    """Several operators on a field form a range or a conjunction."""
    window = {"creationDate": {"after": "2018-06-23T20:00:00Z", "before": "2018-06-23T21:00:00Z"}}
    assert matches(window, job(created=AT))
    assert not matches(window, job(created=AT + timedelta(hours=1)))
    both = {"message": {"startsWith": "Job", "contains": "Error"}}
    assert matches(both, job(message="Job Error"))
    assert not matches(both, job(message="Job ok"))


def test_or_is_any_of_its_elements() -> None:
    """or matches when any element matches; an element with two operators needs both."""
    condition = {"message": {"or": [{"eq": "done"}, {"startsWith": "Job", "endsWith": "!"}]}}
    assert matches(condition, job(message="done"))
    assert matches(condition, job(message="Job failed!"))
    assert not matches(condition, job(message="Job failed"))


def test_or_and_sibling_operator_are_anded() -> None:
    """An or next to another operator on the same field is AND-ed with it."""
    condition = {"message": {"contains": "x", "or": [{"startsWith": "a"}, {"startsWith": "b"}]}}
    assert matches(condition, job(message="ax"))
    assert not matches(condition, job(message="a"))
    assert not matches(condition, job(message="cx"))


@pytest.mark.parametrize(
    "condition",
    [
        {"message": {"contains": ""}},
        {"status": {"in": ["RUNNING"]}},
        {"creationDate": {"after": "1970-01-01T00:00:00Z"}},
        {"creationDate": {"or": [{"before": "3000-01-01T00:00:00Z"}]}},
    ],
)
@pytest.mark.parametrize("missing", ["absent", "null"])
def test_missing_or_null_field_never_matches(condition: dict[str, Any], missing: str) -> None:
    """A field that is absent or None fails even a condition every value would pass."""
    item = job()
    (field,) = condition
    if missing == "absent":
        del item[field]
    else:
        item[field] = None
    assert not matches(condition, item)


def test_unreadable_item_values_never_match() -> None:
    """A non-string string field or an unparseable item date-time fails its condition."""
    assert not matches({"status": {"contains": ""}}, {"status": 3})
    assert not matches(
        {"creationDate": {"after": "1970-01-01T00:00:00Z"}}, {"creationDate": "soon"}
    )
    assert not matches({"creationDate": {"after": "1970-01-01T00:00:00Z"}}, {"creationDate": 12})


def test_issue_example_end_to_end() -> None:
    """The issue's example picks the failed or stopped jobs with an Error after the instant."""
    parsed = parse(EXAMPLE)
    later = AT + timedelta(milliseconds=1)
    assert parsed.matches(job(JobStatus.FAILED, "Error: no input", later))
    assert parsed.matches(job(JobStatus.STOPPED, "Stopped with Error", later + timedelta(days=9)))
    assert not parsed.matches(job(JobStatus.SUCCEEDED, "Error: no input", later))
    assert not parsed.matches(job(JobStatus.FAILED, "error: no input", later))
    assert not parsed.matches(job(JobStatus.FAILED, "Error: no input", AT))
    assert not parsed.matches(job(JobStatus.FAILED, "Error", AT - timedelta(days=1)))


def test_other_field_sets() -> None:
    """The schedules endpoint can pass its own fields; job-only fields are then unknown."""
    schedule_fields = {
        "name": FieldKind.STRING,
        "status": FieldKind.STRING,
        "modelId": FieldKind.STRING,
        "scheduleString": FieldKind.STRING,
        "creationDate": FieldKind.DATETIME,
    }
    parsed = parse_filter('{"scheduleString": {"startsWith": "0 0"}}', schedule_fields)
    assert parsed.matches({"scheduleString": "0 0 * * *"})
    with pytest.raises(FilterError, match="scheduleString"):
        parse_filter('{"message": "x"}', schedule_fields)


def test_item_datetime_parsed_once_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """matches parses the item's date-time once for all conditions, the filter's never again."""
    parsed = parse(
        {
            "creationDate": {
                "after": "2018-01-01T00:00:00Z",
                "before": "2019-01-01T00:00:00Z",
                "or": [{"eq": EXAMPLE_AT}, {"gt": "2018-02-01T00:00:00+01:00"}],
            }
        }
    )
    calls: list[object] = []
    original = filters_module._item_datetime

    def counting(value: object) -> datetime | None:
        calls.append(value)
        return original(value)

    def forbidden(*_: object) -> datetime:
        raise AssertionError("the filter's date-times were parsed again")

    monkeypatch.setattr(filters_module, "_item_datetime", counting)
    monkeypatch.setattr(filters_module, "_filter_datetime", forbidden)
    assert parsed.matches(job(created=AT))
    assert len(calls) == 1


# --- malformed filters -----------------------------------------------------------------------


MALFORMED: list[tuple[str, str, list[str]]] = [
    ("not json", "{status: 1}", ["not valid JSON", "line 1"]),
    ("truncated", '{"status": ', ["not valid JSON"]),
    ("NaN", '{"status": NaN}', ["not valid JSON", "NaN"]),
    ("list", '["status"]', ["JSON object", "a list"]),
    ("string", '"RUNNING"', ["JSON object", "a string"]),
    ("null", "null", ["JSON object", "null"]),
    (
        "unknown field",
        '{"state": "RUNNING"}',
        ["unknown field", '"state"', "creationDate", "status"],
    ),
    ("top-level or", '{"or": {"status": "A"}}', ['"or"', "not supported", "AND-ed"]),
    ("top-level not", '{"not": {"status": "A"}}', ['"not"', "not supported", "allowed fields"]),
    ("duplicate field", '{"status": "A", "status": "B"}', ['"status"', "more than once"]),
    ("duplicate operator", '{"status": {"eq": "A", "eq": "B"}}', ['"eq"', "more than once"]),
    (
        "unknown string operator",
        '{"status": {"like": "A"}}',
        ["status.like", "unknown operator", '"like"', "contains, endsWith, eq, in, or, startsWith"],
    ),
    (
        "unknown datetime operator",
        '{"creationDate": {"between": "[a, b)"}}',
        ["unknown operator", '"between"', "after, before, eq, gt, lt, or"],
    ),
    (
        "after on a string",
        '{"message": {"after": "2018-01-01T00:00:00Z"}}',
        ['"after"', "date-time fields", "message is a string field", "contains"],
    ),
    (
        "contains on a datetime",
        '{"creationDate": {"contains": "2018"}}',
        ['"contains"', "string fields", "creationDate is a date-time field", "after"],
    ),
    ("number value", '{"status": 42}', ["status", "must be a string", "a number (42)"]),
    ("boolean eq", '{"status": {"eq": true}}', ["status.eq", "must be a string", "a boolean"]),
    ("null eq", '{"status": {"eq": null}}', ["status.eq", "must be a string", "null"]),
    ("object contains", '{"message": {"contains": {}}}', ["message.contains", "an object"]),
    ("list value", '{"status": ["A", "B"]}', ["a list is not a value", '"in"', '"or"']),
    ("empty operators", '{"status": {}}', ["empty operator object", "eq"]),
    (
        "or not a list",
        '{"status": {"or": {"eq": "A"}}}',
        ["status.or", "non-empty list", "an object"],
    ),
    ("or empty", '{"status": {"or": []}}', ["status.or", "non-empty list", "an empty list"]),
    (
        "or plain element",
        '{"status": {"or": ["A"]}}',
        ["status.or[0]", "operator object", "a string"],
    ),
    (
        "or nested",
        '{"status": {"or": [{"or": [{"eq": "A"}]}]}}',
        ["status.or[0].or", "cannot be nested"],
    ),
    ("or empty element", '{"status": {"or": [{}]}}', ["status.or[0]", "empty operator object"]),
    (
        "or bad element operator",
        '{"status": {"or": [{"eq": "A"}, {"gt": "B"}]}}',
        ["status.or[1].gt", "date-time fields"],
    ),
    ("in empty", '{"status": {"in": []}}', ["status.in", "non-empty list", "an empty list"]),
    ("in not a list", '{"status": {"in": "A"}}', ["status.in", "non-empty list", "a string"]),
    ("in number", '{"status": {"in": ["A", 2]}}', ["status.in[1]", "must be a string", "a number"]),
    ("in other key", '{"status": {"in": {"values": ["A"]}}}', ["status.in", "non-empty list"]),
    (
        "bad datetime",
        '{"creationDate": {"after": "yesterday"}}',
        ["creationDate.after", '"yesterday"', "ISO-8601", "2018-06-23T20:09:00Z"],
    ),
    (
        "impossible datetime",
        '{"creationDate": "2018-02-30T00:00:00Z"}',
        ["creationDate", "not a real date-time", "day is out of range"],
    ),
    (
        "bad hour",
        '{"creationDate": "2018-02-03T24:00:00Z"}',
        ["not a real date-time", "hour"],
    ),
    (
        "bad offset",
        '{"creationDate": "2018-02-03T10:00:00+24:00"}',
        ["not a real date-time", "offset"],
    ),
    (
        "decoded plus",
        '{"creationDate": {"before": "2018-06-23T22:09:00 02:00"}}',
        ["ISO-8601", "%2B"],
    ),
    ("number datetime", '{"creationDate": {"lt": 1529784540}}', ["creationDate.lt", "a number"]),
    ("null datetime", '{"creationDate": null}', ["creationDate", "ISO-8601", "null"]),
    ("datetime list", '{"creationDate": ["2018-01-01"]}', ["a list is not a value", '"or"']),
]


@pytest.mark.parametrize(
    ("raw", "keywords"),
    [(raw, keywords) for _, raw, keywords in MALFORMED],
    ids=[m[0] for m in MALFORMED],
)
def test_malformed_filter_says_what_is_wrong(raw: str, keywords: list[str]) -> None:
    """Each malformed filter raises FilterError whose message names the problem."""
    with pytest.raises(FilterError) as caught:
        parse_filter(raw, JOB_FILTER_FIELDS)
    message = str(caught.value)
    for word in keywords:
        assert word in message, f"{word!r} missing from {message!r}"


def test_long_unknown_field_is_truncated_in_the_message() -> None:
    """An unknown field's name is echoed back shortened, not in full."""
    with pytest.raises(FilterError) as caught:
        parse_filter(json.dumps({"x" * 2000: 1}), JOB_FILTER_FIELDS)
    assert len(str(caught.value)) < 300


# --- limits ----------------------------------------------------------------------------------


def test_length_limit() -> None:
    """A filter of exactly the limit parses; one character more is rejected."""
    head, tail = '{"message": {"contains": "', '"}}'
    fits = head + "x" * (MAX_FILTER_CHARS - len(head) - len(tail)) + tail
    assert len(fits) == MAX_FILTER_CHARS
    assert parse_filter(fits, JOB_FILTER_FIELDS).matches(job(message="x" * 5000))
    with pytest.raises(FilterError, match=f"{MAX_FILTER_CHARS + 1} characters.*{MAX_FILTER_CHARS}"):
        parse_filter(fits + " ", JOB_FILTER_FIELDS)


def test_condition_limit_counts_or_elements() -> None:
    """Fifty conditions parse; fifty-one are rejected."""
    elements = [{"eq": f"S{i}"} for i in range(MAX_CONDITIONS)]
    assert parse({"status": {"or": elements}}).matches(job(JobStatus.RUNNING)) is False
    with pytest.raises(FilterError, match=f"more than {MAX_CONDITIONS} conditions"):
        parse({"status": {"or": [*elements, {"eq": "X"}]}})


def test_condition_limit_counts_in_values() -> None:
    """Each value of an in list counts as a condition, across fields."""
    assert not parse({"status": {"in": ["A"] * 49}, "modelId": "m"}).matches(job())
    with pytest.raises(FilterError, match="more than 50 conditions"):
        parse({"status": {"in": ["A"] * 50}, "modelId": "m"})


def test_deep_nesting_is_rejected() -> None:
    """Deeply nested JSON within the length limit is a FilterError, not a RecursionError."""
    with pytest.raises(FilterError, match="nested"):
        parse_filter("[" * 2000 + "]" * 2000, JOB_FILTER_FIELDS)
    with pytest.raises(FilterError, match='unknown operator "status"'):
        parse_filter('{"status": ' * 3 + "1" + "}" * 3, JOB_FILTER_FIELDS)


# --- property: the compiled filter agrees with a direct reading of the JSON ------------------

BASE = datetime(2018, 6, 23, 20, 0, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
STATUSES = ["RUNNING", "STOPPED", "FAILED", "running"]
WORDS = ["", "a", "A", "aa", "aA", "Aa", "AA"]
MESSAGES = [*WORDS, "aAa", "AaA", "aaA"]
INSTANTS = [BASE + timedelta(minutes=m, milliseconds=ms) for m in range(3) for ms in (0, 1)]
words = st.sampled_from(WORDS)
instants = st.sampled_from(INSTANTS)


def wire(moment: datetime) -> str:
    """As JobView.model_dump(mode="json") writes it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@st.composite
def written_instants(draw: st.DrawFn) -> str:
    """An instant near BASE written with Z, an offset, or naive (meaning UTC)."""
    moment = draw(instants)
    style = draw(st.sampled_from(["Z", "offset", "naive"]))
    if style == "naive":
        return moment.replace(tzinfo=None).isoformat()
    text = moment.astimezone(draw(st.sampled_from(ZONES))).isoformat()
    return text.replace("+00:00", "Z") if style == "Z" else text


def string_operator() -> st.SearchStrategy[tuple[str, object]]:
    lists = st.lists(words, min_size=1, max_size=2)
    return st.one_of(
        st.tuples(st.sampled_from(["eq", "contains", "startsWith", "endsWith"]), words),
        st.tuples(st.just("in"), st.one_of(lists, lists.map(lambda v: {"value": v}))),
    )


def datetime_operator() -> st.SearchStrategy[tuple[str, object]]:
    return st.tuples(st.sampled_from(["eq", "after", "before", "gt", "lt"]), written_instants())


def operator_object(kind: FieldKind, with_or: bool) -> st.SearchStrategy[dict[str, object]]:
    one = string_operator() if kind is FieldKind.STRING else datetime_operator()
    plain = st.lists(one, min_size=1, max_size=2, unique_by=lambda pair: pair[0]).map(dict)
    if not with_or:
        return plain
    ors = st.lists(operator_object(kind, with_or=False), min_size=1, max_size=2)
    return st.one_of(plain, st.tuples(plain, ors).map(lambda p: {**p[0], "or": p[1]}))


def condition(kind: FieldKind) -> st.SearchStrategy[object]:
    value = (
        st.one_of(words, st.sampled_from(STATUSES))
        if kind is FieldKind.STRING
        else written_instants()
    )
    return st.one_of(value, operator_object(kind, with_or=True))


MISSING = object()


def some_fields(
    values: dict[str, st.SearchStrategy[object]], max_size: int
) -> st.SearchStrategy[dict[str, object]]:
    """A dict with a few of the given keys, so that conditions and items often overlap."""
    names = st.lists(st.sampled_from(sorted(values)), max_size=max_size, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({n: values[n] for n in chosen}))


filter_documents = some_fields(
    {name: condition(kind) for name, kind in JOB_FILTER_FIELDS.items()}, max_size=2
)
ABSENT: list[object] = [None, MISSING]
items = st.fixed_dictionaries(
    {
        "status": st.sampled_from([*STATUSES, *ABSENT]),
        "modelId": st.sampled_from([*WORDS, *ABSENT]),
        "configurationId": words,
        "message": st.sampled_from([*MESSAGES, *ABSENT]),
        "creationDate": st.sampled_from([*map(wire, INSTANTS), *ABSENT]),
    }
).map(lambda item: {key: value for key, value in item.items() if value is not MISSING})


def grid_item(rng: random.Random) -> dict[str, object]:
    """A seeded item over the same small domains, sometimes missing or None per field."""
    domains: dict[str, list[object]] = {
        "status": list(STATUSES),
        "modelId": list(WORDS),
        "configurationId": list(WORDS),
        "message": list(MESSAGES),
        "creationDate": [wire(moment) for moment in INSTANTS],
    }
    item: dict[str, object] = {}
    for name, domain in domains.items():
        roll = rng.random()
        if roll < 0.9:
            item[name] = rng.choice(domain)
        elif roll < 0.95:
            item[name] = None
    return item


# Every generated filter also meets this fixed crowd, so rare coincidences (an item at exactly
# the filter's instant, a message equal to the filter's word) are tested on every example.
GRID = [grid_item(random.Random(seed)) for seed in range(200)]


def reference_instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reference_operator(kind: FieldKind, operator: str, argument: Any, value: Any) -> bool:
    if operator == "or":
        return any(reference_object(kind, element, value) for element in argument)
    if kind is FieldKind.DATETIME:
        left, right = reference_instant(value), reference_instant(argument)
        compared: dict[str, bool] = {
            "eq": left == right,
            "after": left > right,
            "gt": left > right,
            "before": left < right,
            "lt": left < right,
        }
        return compared[operator]
    if operator == "in":
        return bool(value in (argument["value"] if isinstance(argument, dict) else argument))
    tested: dict[str, bool] = {
        "eq": value == argument,
        "contains": argument in value,
        "startsWith": value.startswith(argument),
        "endsWith": value.endswith(argument),
    }
    return tested[operator]


def reference_object(kind: FieldKind, operators: dict[str, Any], value: Any) -> bool:
    return all(reference_operator(kind, op, arg, value) for op, arg in operators.items())


def reference_matches(document: dict[str, Any], item: dict[str, Any]) -> bool:
    for name, cond in document.items():
        value = item.get(name)
        if value is None:
            return False
        operators = cond if isinstance(cond, dict) else {"eq": cond}
        if not reference_object(JOB_FILTER_FIELDS[name], operators, value):
            return False
    return True


@settings(max_examples=400)
@given(document=filter_documents, item_list=st.lists(items, max_size=4))
def test_matches_agrees_with_reference(
    document: dict[str, Any], item_list: list[dict[str, Any]]
) -> None:
    """For generated filters and items, matches equals a direct evaluation of the JSON."""
    parsed = parse_filter(json.dumps(document), JOB_FILTER_FIELDS)
    for item in [*item_list, *GRID]:
        assert parsed.matches(item) == reference_matches(document, item), item
