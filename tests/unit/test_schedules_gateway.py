"""``/schedules`` through the real gateway app, over an in-memory schedule log and store."""

import json
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway, GatewayLimits
from adapters.http.schedules import ScheduleApi, idempotent_schedule_id
from adapters.memory import MemoryCommandPublisher, MemoryScheduleLog
from adapters.projection_store import MemoryProjectionStore
from adapters.schedule_store import MemoryScheduleStore
from schemas.schedules import ScheduleDefined, ScheduleDeleted, SchedulePage, ScheduleView
from tests.unit.factories import with_overrides
from tests.unit.test_gateway import OTHER_TENANT, SECRET, TENANT
from worker.projection import Projection

SCHEDULES = f"{BASE}/schedules"
NOW = datetime(2026, 3, 27, 12, 0, 0, 250_000, tzinfo=UTC)


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: TestClient[Any, Any]
    records: MemoryScheduleLog
    store: MemoryScheduleStore
    clock: Clock

    def headers(self, tenant: str = TENANT, read_only: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(SECRET, tenant, read_only=read_only)}"}

    async def call(
        self, method: str, path: str, body: Any = None, tenant: str = TENANT, **headers: str
    ) -> tuple[int, Any]:
        response = await self.client.request(
            method, path, json=body, headers={**self.headers(tenant), **headers}
        )
        text = await response.text()
        return response.status, json.loads(text) if text else None

    async def create(self, tenant: str = TENANT, **overrides: Any) -> dict[str, Any]:
        status, body = await self.call("POST", SCHEDULES, schedule_body(**overrides), tenant)
        assert status == 201, body
        result: dict[str, Any] = body
        return result


def schedule_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "nightly",
        "modelId": "model-1",
        "configurationId": "config-1",
        "inputFolderId": "in-1",
        "outputFolderId": "out-1",
        "maximumExecutionTime": 3600,
        "scheduleString": "0 0 2 * * ?",
    }
    return with_overrides(body, overrides)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """A gateway with the schedule routes on a test server."""
    store = MemoryScheduleStore()
    records = MemoryScheduleLog()
    clock = Clock()
    jobs = MemoryProjectionStore()
    gateway = Gateway(
        MemoryCommandPublisher(),
        jobs,
        Authenticator(AuthSettings(hs256_secret=SECRET)),
        Projection(jobs).accept,
        GatewayLimits(max_execution_seconds=86_400),
        schedules=ScheduleApi(store, records, store.apply, 86_400, clock),
    )
    async with TestClient(TestServer(gateway.app())) as client:
        yield Api(client, records, store, clock)


async def test_create_answers_201_stopped_with_the_sdk_fields(api: Api) -> None:
    """POST answers the schedule STOPPED, maximumExecutionTime as a string, and records it."""
    created = await api.create()

    assert ScheduleView.model_validate(created)
    assert created["status"] == "STOPPED"
    assert created["maximumExecutionTime"] == "3600"
    assert created["timezone"] == "UTC"
    assert created["overlapPolicy"] == "skip"
    assert created["creationDate"] == "2026-03-27T12:00:00.250Z"
    assert created["createdBy"]
    assert created["nextFireTimes"] == []  # nothing fires while STOPPED
    [defined] = api.records.published
    assert isinstance(defined, ScheduleDefined)
    assert (defined.tenant, defined.schedule_id, defined.revision) == (TENANT, created["id"], 1)


async def test_string_seconds_are_accepted_too(api: Api) -> None:
    """maximumExecutionTime may come as a string, as jobs' limit does."""
    created = await api.create(maximumExecutionTime="7200")
    assert created["maximumExecutionTime"] == "7200"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scheduleString": "0 25 * * *"}, "scheduleString"),
        ({"scheduleString": "every day"}, "scheduleString"),
        ({"scheduleString": "0 0 12 ? * MON#6"}, "scheduleString"),
        ({"scheduleString": ""}, "scheduleString"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"maximumExecutionTime": 0}, "maximumExecutionTime"),
        ({"maximumExecutionTime": 90_000}, "maximumExecutionTime"),
        ({"name": None}, "name"),
        ({"modelId": "../x"}, "modelId"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    api: Api, overrides: dict[str, Any], field: str
) -> None:
    """A bad cron line, zone or field is a 400 whose message names the field; nothing recorded."""
    status, body = await api.call("POST", SCHEDULES, schedule_body(**overrides))

    assert status == 400
    assert field in body["errors"][0]["message"]
    assert body["errors"][0]["code"] == "jobmanager.badRequest"
    assert api.records.published == []


async def test_start_and_stop_change_the_status_and_the_next_fire_times(api: Api) -> None:
    """start → RUNNING with the next five due times; stop → STOPPED; repeats change nothing."""
    schedule_id = (await api.create(scheduleString="0 */15 * * * ?"))["id"]

    status, started = await api.call("POST", f"{SCHEDULES}/{schedule_id}/start")
    again_status, again = await api.call("POST", f"{SCHEDULES}/{schedule_id}/start")
    assert (status, started["status"]) == (200, "RUNNING")
    assert started["nextFireTimes"] == [
        "2026-03-27T12:15:00.000Z",
        "2026-03-27T12:30:00.000Z",
        "2026-03-27T12:45:00.000Z",
        "2026-03-27T13:00:00.000Z",
        "2026-03-27T13:15:00.000Z",
    ]
    assert (again_status, again) == (200, started)

    status, stopped = await api.call("POST", f"{SCHEDULES}/{schedule_id}/stop")
    assert (status, stopped["status"], stopped["nextFireTimes"]) == (200, "STOPPED", [])
    revisions = [m.revision for m in api.records.published if isinstance(m, ScheduleDefined)]
    assert revisions == [1, 2, 3]
    started_at = api.store.get(TENANT, schedule_id)
    assert started_at is not None
    assert started_at.started_at == NOW


async def test_next_fire_times_follow_the_time_zone_across_dst(api: Api) -> None:
    """09:00 in Berlin is 08:00Z before the spring change (2026-03-29) and 07:00Z after it."""
    created = await api.create(scheduleString="0 9 * * *", timezone="Europe/Berlin")
    _, started = await api.call("POST", f"{SCHEDULES}/{created['id']}/start")

    assert started["nextFireTimes"] == [
        "2026-03-28T08:00:00.000Z",
        "2026-03-29T07:00:00.000Z",
        "2026-03-30T07:00:00.000Z",
        "2026-03-31T07:00:00.000Z",
        "2026-04-01T07:00:00.000Z",
    ]


async def test_get_with_a_json_content_type_and_no_body_works(api: Api) -> None:
    """MindSphere's Node SDK sends Content-Type: application/json on GETs without a body."""
    schedule_id = (await api.create())["id"]
    headers = {**api.headers(), "Content-Type": "application/json"}

    one = await api.client.get(f"{SCHEDULES}/{schedule_id}", headers=headers)
    many = await api.client.get(SCHEDULES, headers=headers)

    assert one.status == 200
    assert (await one.json())["id"] == schedule_id
    assert many.status == 200
    assert (await many.json())["schedules"][0]["id"] == schedule_id


async def test_another_tenants_schedule_is_404_everywhere(api: Api) -> None:
    """Reads, changes and deletes of another tenant's schedule answer 404, as an unknown id."""
    schedule_id = (await api.create())["id"]
    for method, path, body in [
        ("GET", f"{SCHEDULES}/{schedule_id}", None),
        ("PATCH", f"{SCHEDULES}/{schedule_id}", {"name": "x"}),
        ("POST", f"{SCHEDULES}/{schedule_id}/start", None),
        ("POST", f"{SCHEDULES}/{schedule_id}/stop", None),
        ("DELETE", f"{SCHEDULES}/{schedule_id}", None),
    ]:
        status, answer = await api.call(method, path, body, tenant=OTHER_TENANT)
        assert status == 404, (method, path)
        assert answer["errors"][0]["message"] == f"schedule {schedule_id} not found"
    _, listed = await api.call("GET", SCHEDULES, tenant=OTHER_TENANT)
    assert listed["schedules"] == []
    assert len(api.records.published) == 1


async def test_patch_changes_only_the_given_fields_and_checks_the_result(api: Api) -> None:
    """PATCH merges; a bad cron line in a patch is a 400 and leaves the schedule as it was."""
    created = await api.create()
    api.clock.now += timedelta(minutes=1)

    status, patched = await api.call(
        "PATCH",
        f"{SCHEDULES}/{created['id']}",
        {"scheduleString": "*/30 * * * *", "overlapPolicy": "queue", "name": None},
    )
    bad_status, bad = await api.call(
        "PATCH", f"{SCHEDULES}/{created['id']}", {"scheduleString": "61 * * * *"}
    )

    assert status == 200
    assert patched["scheduleString"] == "*/30 * * * *"
    assert patched["overlapPolicy"] == "queue"
    assert patched["name"] == created["name"]
    assert patched["lastModifiedDate"] == "2026-03-27T12:01:00.250Z"
    assert patched["creationDate"] == created["creationDate"]
    assert bad_status == 400
    assert "scheduleString" in bad["errors"][0]["message"]
    _, now = await api.call("GET", f"{SCHEDULES}/{created['id']}")
    assert now["scheduleString"] == "*/30 * * * *"


async def test_delete_is_204_then_404_and_leaves_tombstones(api: Api) -> None:
    """DELETE records ScheduleDeleted and tombstones; the schedule is gone for every call."""
    schedule_id = (await api.create())["id"]

    response = await api.client.delete(f"{SCHEDULES}/{schedule_id}", headers=api.headers())
    status, _ = await api.call("GET", f"{SCHEDULES}/{schedule_id}")
    again, _ = await api.call("DELETE", f"{SCHEDULES}/{schedule_id}")

    assert response.status == 204
    assert (status, again) == (404, 404)
    assert isinstance(api.records.published[-1], ScheduleDeleted)
    assert api.records.published[-1].revision == 2
    assert api.records.erased == [(TENANT, schedule_id)]


async def test_list_is_paged_and_filtered(api: Api) -> None:
    """The list answers {schedules, page} and the Spring page, newest first, filtered."""
    names = []
    for number in range(3):
        api.clock.now += timedelta(seconds=1)
        names.append((await api.create(name=f"s{number}"))["name"])
    api.clock.now += timedelta(seconds=1)
    started = (await api.create(name="running-one", scheduleString="0 0 * * *"))["id"]
    await api.call("POST", f"{SCHEDULES}/{started}/start")

    _, first = await api.call("GET", f"{SCHEDULES}?pageSize=2")
    query = urllib.parse.quote(json.dumps({"status": "RUNNING"}))
    _, running = await api.call("GET", f"{SCHEDULES}?filter={query}")
    query = urllib.parse.quote(
        json.dumps({"name": {"startsWith": "s"}, "scheduleString": "0 0 2 * * ?"})
    )
    _, by_name = await api.call("GET", f"{SCHEDULES}?filter={query}")
    status, bad = await api.call("GET", f"{SCHEDULES}?filter=%7Bnope")

    assert SchedulePage.model_validate(first)
    assert first["page"] == {"number": 0, "size": 2, "totalPages": 2, "totalElements": 4}
    assert [s["name"] for s in first["schedules"]] == ["running-one", "s2"]
    assert first["content"] == first["schedules"]
    assert [s["id"] for s in running["schedules"]] == [started]
    assert len(running["schedules"][0]["nextFireTimes"]) == 5
    assert sorted(s["name"] for s in by_name["schedules"]) == names
    assert status == 400
    assert "filter" in bad["errors"][0]["message"]


async def test_idempotency_key_gives_the_same_schedule(api: Api) -> None:
    """A repeat with the same key and body is 200 with the same schedule; another body is 409."""
    key = {"Idempotency-Key": "create-nightly"}
    status, first = await api.call("POST", SCHEDULES, schedule_body(), **key)
    again_status, again = await api.call("POST", SCHEDULES, schedule_body(), **key)
    other_status, other = await api.call("POST", SCHEDULES, schedule_body(name="x"), **key)

    assert (status, again_status, other_status) == (201, 200, 409)
    assert again == first
    assert first["id"] == idempotent_schedule_id(TENANT, "create-nightly")
    assert other["errors"][0]["code"] == "jobmanager.idempotencyKeyReused"
    assert len(api.records.published) == 1


async def test_read_only_token_reads_but_cannot_write(api: Api) -> None:
    """jm.r may list and get schedules; every write is 403 and records nothing."""
    schedule_id = (await api.create())["id"]
    read_only = api.headers(read_only=True)

    reads = [
        await api.client.get(SCHEDULES, headers=read_only),
        await api.client.get(f"{SCHEDULES}/{schedule_id}", headers=read_only),
    ]
    writes = [
        await api.client.post(SCHEDULES, json=schedule_body(), headers=read_only),
        await api.client.post(f"{SCHEDULES}/{schedule_id}/start", headers=read_only),
        await api.client.patch(f"{SCHEDULES}/{schedule_id}", json={}, headers=read_only),
        await api.client.delete(f"{SCHEDULES}/{schedule_id}", headers=read_only),
    ]

    assert [r.status for r in reads] == [200, 200]
    assert [r.status for r in writes] == [403, 403, 403, 403]
    assert len(api.records.published) == 1


async def test_no_token_is_401(api: Api) -> None:
    """Every schedule route needs a token."""
    response = await api.client.get(SCHEDULES)
    assert response.status == 401


async def test_wrong_media_type_is_415(api: Api) -> None:
    """The body must be JSON."""
    response = await api.client.post(
        SCHEDULES,
        data="name=x",
        headers={**api.headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 415


async def test_broker_away_is_503_and_nothing_changes(api: Api) -> None:
    """An unacknowledged record is a 503 with Retry-After; the store is unchanged."""
    schedule_id = (await api.create())["id"]
    api.records.unavailable = True

    response = await api.client.post(f"{SCHEDULES}/{schedule_id}/start", headers=api.headers())

    assert response.status == 503
    assert response.headers["Retry-After"]
    stored = api.store.get(TENANT, schedule_id)
    assert stored is not None
    assert stored.status == "STOPPED"
