"""Schedule messages and views, and the store folded from the compacted schedules topic."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from adapters.schedule_store import MemoryScheduleStore, UnreadableRecord
from schemas.commands import COMMANDS, SubmitJob
from schemas.jobs import JobView
from schemas.schedules import (
    SCHEDULE_MESSAGES,
    OverlapPolicy,
    ScheduleDefined,
    ScheduleDeleted,
    ScheduleMessage,
    SchedulePatch,
    ScheduleTicked,
    ScheduleView,
    TickOutcome,
    message_key,
    scheduled_job_id,
)
from tests.unit.factories import schedule_defined, schedule_request, submit_command

NOW = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
TENANT = "local"


request = schedule_request


def defined(
    schedule_id: str, revision: int, tenant: str = TENANT, **changes: object
) -> ScheduleDefined:
    return schedule_defined(schedule_id, revision, at=NOW, tenant=tenant, **changes)


def ticked(schedule_id: str, due_at: datetime) -> ScheduleTicked:
    return ScheduleTicked(
        event_id=f"{schedule_id}-{due_at}",
        tenant=TENANT,
        schedule_id=schedule_id,
        due_at=due_at,
        outcome=TickOutcome.FIRED,
        job_id=scheduled_job_id(schedule_id, due_at),
        occurred_at=due_at,
    )


def test_request_defaults_and_seconds_as_number_or_string() -> None:
    """Time zone UTC and overlap skip by default; seconds accepted as a number or a string."""
    as_number = request()
    as_string = request(maximumExecutionTime="60")

    assert as_number == as_string
    assert (as_number.timezone, as_number.overlap_policy) == ("UTC", OverlapPolicy.SKIP)


def test_view_answers_seconds_as_a_string() -> None:
    """maximumExecutionTime is a string in answers, as the SDK models it."""
    schedule = defined("s", 1).schedule
    view = ScheduleView.of(schedule, (NOW + timedelta(hours=1),))

    dumped = view.model_dump(mode="json")
    assert dumped["maximumExecutionTime"] == "60"
    assert dumped["nextFireTimes"] == ["2026-03-27T13:00:00.000Z"]
    assert dumped["status"] == "STOPPED"


def test_patch_changes_only_the_fields_it_sets() -> None:
    """A patch's absent and null fields leave the request as it was."""
    patch = SchedulePatch.model_validate({"name": "renamed", "timezone": None})

    patched = patch.applied_to(request())

    assert patched == request(name="renamed")


def test_invalid_request_fields_are_refused() -> None:
    """Ids that are paths, empty names and non-positive limits do not validate."""
    for bad in ({"modelId": ".."}, {"name": ""}, {"maximumExecutionTime": 0}):
        with pytest.raises(ValidationError):
            request(**bad)


def test_scheduled_job_ids_are_deterministic_per_schedule_and_due_time() -> None:
    """Same schedule and due time, same job; anything else, another job."""
    one = scheduled_job_id("s", NOW)

    assert one == scheduled_job_id("s", NOW.astimezone(UTC))
    assert one != scheduled_job_id("s", NOW + timedelta(seconds=1))
    assert one != scheduled_job_id("t", NOW)


def test_messages_round_trip_and_have_their_compaction_keys() -> None:
    """Each message decodes to itself; a schedule and its bookkeeping have separate keys."""
    messages: list[ScheduleMessage] = [
        defined("s", 1),
        ScheduleDeleted(event_id="d", tenant=TENANT, schedule_id="s", revision=2, occurred_at=NOW),
        ticked("s", NOW),
    ]
    for message in messages:
        assert SCHEDULE_MESSAGES.validate_json(message.model_dump_json()) == message
    assert [message_key(m) for m in messages] == ["local/s", "local/s", "local/s/ticks"]


def test_old_commands_and_views_without_schedule_id_still_parse() -> None:
    """scheduleId is an optional extension: messages written before it decode with None."""
    command = submit_command()
    raw = command.model_dump(mode="json")
    view = JobView.submitted("j", TENANT, command.request, NOW).model_dump(mode="json")
    assert "scheduleId" not in raw  # unset, it is not written: the seed's shapes stay as they were
    assert "scheduleId" not in view
    scheduled = JobView.submitted("j", TENANT, command.request, NOW, "s").model_dump(mode="json")
    assert scheduled["scheduleId"] == "s"

    decoded = COMMANDS.validate_python(raw)
    assert isinstance(decoded, SubmitJob)
    assert decoded.schedule_id is None
    assert JobView.model_validate(view).schedule_id is None


def test_store_applies_newer_revisions_only() -> None:
    """A late copy of an older definition changes nothing."""
    store = MemoryScheduleStore()
    store.apply(defined("s", 2, name="second"))

    assert not store.apply(defined("s", 1, name="first"))
    stored = store.get(TENANT, "s")
    assert stored is not None
    assert stored.request.name == "second"


def test_store_keeps_a_deleted_schedule_deleted() -> None:
    """After ScheduleDeleted and the tombstones, an older definition cannot bring it back."""
    store = MemoryScheduleStore()
    store.apply(defined("s", 1))
    store.apply(ticked("s", NOW))
    store.apply(
        ScheduleDeleted(event_id="d", tenant=TENANT, schedule_id="s", revision=2, occurred_at=NOW)
    )
    store.apply_record(b"local/s", None)
    store.apply_record(b"local/s/ticks", None)

    store.apply(defined("s", 1))

    assert store.get(TENANT, "s") is None
    assert store.last_tick(TENANT, "s") is None
    assert store.revision(TENANT, "s") == 2


def test_store_replays_a_compacted_topic() -> None:
    """Records of the topic (bytes, tombstones included) fold into the same state."""
    store = MemoryScheduleStore()
    for key, message in [(b"local/a", defined("a", 1)), (b"local/b", defined("b", 1))]:
        store.apply_record(key, message.model_dump_json().encode())
    store.apply_record(b"local/a", None)

    assert [s.id for s in store.list(TENANT)] == ["b"]
    with pytest.raises(UnreadableRecord):
        store.apply_record(b"local/c", b"{not json")


def test_store_keeps_the_latest_due_time_and_separates_tenants() -> None:
    """Bookkeeping never goes back in time; another tenant's schedules are never listed."""
    store = MemoryScheduleStore()
    store.apply(defined("s", 1))
    store.apply(defined("x", 1, tenant="other"))
    store.apply(ticked("s", NOW + timedelta(seconds=2)))
    store.apply(ticked("s", NOW + timedelta(seconds=1)))

    tick = store.last_tick(TENANT, "s")
    assert tick is not None
    assert tick.due_at == NOW + timedelta(seconds=2)
    assert [s.id for s in store.list(TENANT)] == ["s"]
    assert store.get("other", "s") is None
    assert sorted(t for t, _ in store.all()) == ["local", "other"]


async def test_waiting_for_a_change_returns_on_the_change() -> None:
    """The scheduler's sleep ends as soon as a schedule changes (the timeout is far away)."""
    store = MemoryScheduleStore()
    waiting = asyncio.create_task(store.wait_for_change(30.0))
    await asyncio.sleep(0)
    store.apply(defined("s", 1))

    async with asyncio.timeout(5):
        await waiting
