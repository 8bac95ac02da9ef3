"""Timestamps on the wire: the fast path for our own canonical form must mean exactly what
pydantic's parse and the UTC / whole-millisecond normalisation mean, and reject what they
reject."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AfterValidator, TypeAdapter, ValidationError

from schemas.jobs import ExecutionSeconds, Timestamp, _to_utc_milliseconds, format_timestamp

TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)
# The general path alone: what every timestamp went through before the fast path.
GENERAL: TypeAdapter[datetime] = TypeAdapter(
    Annotated[datetime, AfterValidator(_to_utc_milliseconds)]
)
SECONDS: TypeAdapter[int] = TypeAdapter(ExecutionSeconds)

moments = st.datetimes(
    min_value=datetime(1000, 1, 1),
    max_value=datetime(9999, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


@given(moments)
def test_canonical_form_gives_what_the_general_path_gives(moment: datetime) -> None:
    text = format_timestamp(moment)
    # The shape the fast path takes.
    assert len(text) == 24
    assert text.endswith("Z")
    fast = TIMESTAMP.validate_json(f'"{text}"')
    assert fast == GENERAL.validate_json(f'"{text}"')
    # The store keeps a time compactly only when its zone is this very object.
    assert fast.tzinfo is UTC
    assert fast.microsecond % 1000 == 0


@given(moments)
def test_other_forms_are_normalised_to_utc_milliseconds(moment: datetime) -> None:
    text = moment.isoformat()  # an offset, microseconds: not the canonical form
    parsed = TIMESTAMP.validate_json(f'"{text}"')
    assert parsed == GENERAL.validate_json(f'"{text}"')
    assert parsed.tzinfo is UTC
    assert parsed.microsecond % 1000 == 0


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T17:10:18.8a2Z",  # canonical shape, not a time
        "2026-11-25T25:10:18.822Z",
        "2026-02-30T17:10:18.822Z",
        "2026-W48-3T17:10:18.822Z",  # an ISO week date of the same length
        "2026-11-25T17:10:18.822",  # no zone
        "xxxxxxxxxxxxxxxxxxxxxxxx",
    ],
)
def test_invalid_times_are_rejected_like_before(text: str) -> None:
    with pytest.raises(ValidationError) as general:
        GENERAL.validate_json(f'"{text}"')
    with pytest.raises(ValidationError) as fast:
        TIMESTAMP.validate_json(f'"{text}"')
    assert [e["type"] for e in fast.value.errors()] == [e["type"] for e in general.value.errors()]


@pytest.mark.parametrize(
    ("value", "seconds"), [("600", 600), (600, 600), (600.0, 600), (" 12 ", 12), ("1", 1)]
)
def test_execution_seconds_accepted(value: object, seconds: int) -> None:
    assert SECONDS.validate_python(value) == seconds
    assert SECONDS.validate_json(f'"{value}"' if isinstance(value, str) else str(value)) == seconds


@pytest.mark.parametrize(
    "value", ["0", 0, 0.0, "2147483648", 2**31, "99999999999999", True, 7.5, "-5", "7e3", ""]
)
def test_execution_seconds_out_of_range_or_malformed_are_rejected(value: object) -> None:
    with pytest.raises(ValidationError, match="must be"):
        SECONDS.validate_python(value)
