"""The REST gateway (Job Manager v3) over in-memory ports, through a real aiohttp test server."""

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway
from adapters.memory import MemoryCommandPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import StopJob, SubmitJob
from schemas.events import JobStatusChanged, event_id_for
from schemas.jobs import JobView
from schemas.status import JobStatus
from tests.unit.factories import job_body
from worker.projection import Projection

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
TENANT = "tenanta"
OTHER_TENANT = "tenantb"
JOBS = f"{BASE}/jobs"
SEED_KEYS = {
    "id",
    "modelId",
    "environmentId",
    "message",
    "status",
    "creationDate",
    "createdBy",
    "inputFolderId",
    "outputFolderId",
    "configurationId",
    "maximumExecutionTimeInSeconds",
}
ISO_MILLIS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


_body = job_body


class SteppingClock:
    """A clock that moves one second per call, so creation dates order jobs."""

    def __init__(self) -> None:
        self.now = datetime(2024, 3, 5, 9, 14, 2, 118_456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class Api:
    client: TestClient[Any, Any]
    commands: MemoryCommandPublisher
    store: MemoryProjectionStore
    projection: Projection
    auth: Authenticator

    def headers(self, tenant: str = TENANT, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(SECRET, tenant)}", **extra}

    async def submit(self, tenant: str = TENANT, **overrides: Any) -> dict[str, Any]:
        response = await self.client.post(
            JOBS, json=_body(**overrides), headers=self.headers(tenant)
        )
        assert response.status == 201, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    def move_to(self, job_id: str, status: JobStatus) -> None:
        """Fold an event into the projection as if the worker had moved the job."""
        record = self.store.record(job_id)
        assert record is not None
        sequence = record.sequence + 1
        view = record.view.model_copy(update={"status": status})
        self.projection.apply(
            JobStatusChanged(
                event_id=event_id_for(job_id, sequence),
                job_id=job_id,
                tenant=record.tenant,
                sequence=sequence,
                previous_status=record.view.status,
                status=status,
                trigger="test",
                job=view,
                occurred_at=datetime.now(UTC),
            )
        )


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """The gateway app on a test server, with in-memory commands and projection."""
    commands = MemoryCommandPublisher()
    store = MemoryProjectionStore()
    projection = Projection(store)
    auth = Authenticator(AuthSettings(hs256_secret=SECRET))
    gateway = Gateway(commands, store, auth, projection.accept, clock=SteppingClock())
    client: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await client.start_server()
    try:
        yield Api(client, commands, store, projection, auth)
    finally:
        await client.close()


async def _error(response: ClientResponse, status: int) -> dict[str, str]:
    """Check the MindSphere error shape and logref, and return the single error."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == ["errors"]
    assert len(body["errors"]) == 1
    error: dict[str, str] = body["errors"][0]
    assert set(error) == {"code", "message", "logref"}
    assert error["message"]
    assert error["logref"] == response.headers["X-Request-Id"]
    return error


# -- authentication ---------------------------------------------------------------------------


def _token_without_tenant() -> str:
    return jwt.encode({"sub": "someone", "exp": 4_000_000_000}, SECRET, algorithm="HS256")


def _token_with_wrong_secret() -> str:
    return mint("not-the-secret-but-just-as-long-as-the-real-one", TENANT)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("no-ten", id="no-ten"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", JOBS), ("POST", JOBS), ("GET", f"{JOBS}/x"), ("POST", f"{JOBS}/x/stop")],
)
async def test_requests_without_a_usable_token_get_401(
    api: Api, authorization: str | None, method: str, path: str
) -> None:
    """Missing, malformed, wrongly signed or tenant-less tokens get a 401 error body."""
    if authorization == "wrong-secret":
        authorization = f"Bearer {_token_with_wrong_secret()}"
    elif authorization == "no-ten":
        authorization = f"Bearer {_token_without_tenant()}"
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.client.request(method, path, json=_body(), headers=headers)
    error = await _error(response, 401)
    assert error["code"] == "jobmanager.unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.commands.published == []
    assert len(api.store) == 0


async def test_401_message_says_why_without_echoing_the_token(api: Api) -> None:
    """A token without `ten` is named as such, and the token itself is not in the answer."""
    token = _token_without_tenant()
    response = await api.client.get(JOBS, headers={"Authorization": f"Bearer {token}"})
    error = await _error(response, 401)
    assert "ten" in error["message"]
    assert token not in await response.text()


async def test_logref_echoes_a_given_request_id(api: Api) -> None:
    """A caller's X-Request-Id is used as the logref and echoed back."""
    response = await api.client.get(JOBS, headers={"X-Request-Id": "req-42"})
    error = await _error(response, 401)
    assert error["logref"] == "req-42"
    assert response.headers["X-Request-Id"] == "req-42"


async def test_each_request_gets_its_own_request_id(api: Api) -> None:
    """Without an X-Request-Id, every answer carries a fresh one."""
    first = await api.client.get(JOBS)
    second = await api.client.get(JOBS)
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


# -- submit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", ["7200", 7200])
async def test_submit_answers_201_in_the_seed_shape(api: Api, seconds: str | int) -> None:
    """POST answers the job as submitted, in exactly the seed's keys and formats."""
    response = await api.client.post(
        JOBS, json=_body(maximumExecutionTimeInSeconds=seconds), headers=api.headers()
    )
    assert response.status == 201, await response.text()
    job = await response.json()
    assert set(job) == SEED_KEYS
    assert job["status"] == "SUBMITTED"
    assert job["createdBy"] == TENANT
    assert job["maximumExecutionTimeInSeconds"] == "7200"
    assert ISO_MILLIS_Z.match(job["creationDate"]), job["creationDate"]
    assert job["creationDate"] == "2024-03-05T09:14:03.118Z"
    assert job["environmentId"] is None
    assert (job["modelId"], job["configurationId"]) == ("model-1", "config-1")
    assert (job["inputFolderId"], job["outputFolderId"]) == ("in-1", "out-1")
    assert response.headers["X-Request-Id"]


async def test_submit_publishes_one_submit_job_for_the_same_job(api: Api) -> None:
    """The published SubmitJob carries the answered job id, the tenant and the request."""
    job = await api.submit(maximumExecutionTimeInSeconds=60)
    assert len(api.commands.published) == 1
    command = api.commands.published[0]
    assert isinstance(command, SubmitJob)
    assert command.job_id == job["id"]
    assert command.tenant == TENANT
    assert command.request.model_id == "model-1"
    assert command.request.maximum_execution_time_in_seconds == 60
    assert JobView.model_validate(job).creation_date == command.creation_date


async def test_submit_ignores_unknown_fields(api: Api) -> None:
    """Unknown request fields are ignored, as MindSphere does."""
    job = await api.submit(description="ignored", extra={"a": 1})
    assert set(job) == SEED_KEYS


async def test_submit_accepts_an_xsrf_token_header(api: Api) -> None:
    """The X-XSRF-TOKEN header MindSphere clients send is accepted and ignored."""
    response = await api.client.post(
        JOBS, json=_body(), headers=api.headers(**{"X-XSRF-TOKEN": "abc"})
    )
    assert response.status == 201, await response.text()


async def test_get_right_after_post_finds_the_job(api: Api) -> None:
    """Read-your-writes: the accepted job is readable before any event arrives."""
    job = await api.submit()
    response = await api.client.get(f"{JOBS}/{job['id']}", headers=api.headers())
    assert response.status == 200
    assert await response.json() == job


async def test_unknown_and_foreign_jobs_get_identical_404(api: Api) -> None:
    """Another tenant's job is answered exactly like a job that does not exist."""
    job = await api.submit(tenant=OTHER_TENANT)
    foreign = await api.client.get(f"{JOBS}/{job['id']}", headers=api.headers())
    foreign_error = await _error(foreign, 404)
    api.store._records.pop(job["id"])  # the same id, now truly unknown
    unknown = await api.client.get(f"{JOBS}/{job['id']}", headers=api.headers())
    unknown_error = await _error(unknown, 404)
    assert foreign_error["code"] == unknown_error["code"] == "jobmanager.notFound"
    assert foreign_error["message"] == unknown_error["message"]
    assert foreign.headers.keys() - {"Date"} == unknown.headers.keys() - {"Date"}


async def test_unknown_job_id_gets_404(api: Api) -> None:
    """GET of an id never submitted answers 404 naming the job."""
    response = await api.client.get(f"{JOBS}/nope", headers=api.headers())
    error = await _error(response, 404)
    assert "nope" in error["message"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"[" + json.dumps(_body()).encode() + b"]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"null", "JSON object"),
    ],
    ids=["garbage", "empty", "empty-array", "array-of-job", "string", "null"],
)
async def test_submit_refuses_bodies_that_are_not_a_json_object(
    api: Api, data: bytes, expected: str
) -> None:
    """Non-JSON or non-object bodies get 400 with a message saying so, and publish nothing."""
    response = await api.client.post(
        JOBS, data=data, headers=api.headers(**{"Content-Type": "application/json"})
    )
    error = await _error(response, 400)
    assert error["code"] == "jobmanager.badRequest"
    assert expected in error["message"]
    assert api.commands.published == []
    assert len(api.store) == 0


@pytest.mark.parametrize(
    "field",
    [
        "modelId",
        "configurationId",
        "inputFolderId",
        "outputFolderId",
        "maximumExecutionTimeInSeconds",
    ],
)
async def test_submit_names_a_missing_field(api: Api, field: str) -> None:
    """A missing field gets 400 whose message names the field; nothing is published."""
    response = await api.client.post(JOBS, json=_body(**{field: None}), headers=api.headers())
    error = await _error(response, 400)
    assert field in error["message"]
    assert "required" in error["message"].lower()
    assert api.commands.published == []
    assert len(api.store) == 0


@pytest.mark.parametrize(
    "seconds",
    [-1, 0, "0", "-5", 1.5, 7200.5, "abc", "", "72 00", True, False, None, 2**31, [7200]],
    ids=repr,
)
async def test_submit_refuses_bad_maximum_execution_times(api: Api, seconds: Any) -> None:
    """Non-positive, fractional, textual, boolean or oversized time limits get 400."""
    body = _body()
    body["maximumExecutionTimeInSeconds"] = seconds
    response = await api.client.post(JOBS, json=body, headers=api.headers())
    error = await _error(response, 400)
    assert "maximumExecutionTimeInSeconds" in error["message"]
    assert api.commands.published == []
    assert len(api.store) == 0


@pytest.mark.parametrize("field", ["modelId", "configurationId", "inputFolderId", "outputFolderId"])
@pytest.mark.parametrize(
    "value", ["../x", "..", ".", "a/b", "/etc/passwd", "a\\b", "a\x00b", "", "x" * 257]
)
async def test_submit_refuses_ids_that_are_not_path_safe(api: Api, field: str, value: str) -> None:
    # Ids may be any printable text up to 256 characters, but never a path.
    """Ids that could escape the tenant's folders get 400 naming the field; nothing published."""
    response = await api.client.post(JOBS, json=_body(**{field: value}), headers=api.headers())
    error = await _error(response, 400)
    assert field in error["message"]
    assert api.commands.published == []
    assert len(api.store) == 0


async def test_submit_refuses_text_plain_with_415(api: Api) -> None:
    """A text/plain body gets 415 and publishes nothing."""
    response = await api.client.post(
        JOBS,
        data=json.dumps(_body()),
        headers=api.headers(**{"Content-Type": "text/plain"}),
    )
    error = await _error(response, 415)
    assert error["code"] == "jobmanager.unsupportedMediaType"
    assert "application/json" in error["message"]
    assert api.commands.published == []


async def test_submit_refuses_a_body_over_one_mebibyte_with_413(api: Api) -> None:
    """A body larger than 1 MiB gets 413 and publishes nothing."""
    body = _body(padding="x" * (1024 * 1024))
    response = await api.client.post(JOBS, json=body, headers=api.headers())
    error = await _error(response, 413)
    assert error["code"] == "jobmanager.payloadTooLarge"
    assert api.commands.published == []
    assert len(api.store) == 0


async def test_submit_answers_503_when_the_broker_does_not_acknowledge(api: Api) -> None:
    """An unavailable broker gets 503 with Retry-After, and the job is not recorded."""
    api.commands.unavailable = True
    response = await api.client.post(JOBS, json=_body(), headers=api.headers())
    error = await _error(response, 503)
    assert error["code"] == "jobmanager.serviceUnavailable"
    assert response.headers["Retry-After"].isdigit()
    assert int(response.headers["Retry-After"]) > 0
    # The outcome is not known yet, so the answer names the job to look up later.
    location = response.headers["Location"]
    job_id = location.rsplit("/", 1)[1]
    assert location == f"{JOBS}/{job_id}"
    assert job_id in error["message"]
    assert len(api.store) == 0
    listed = await api.client.get(JOBS, headers=api.headers())
    assert (await listed.json())["content"] == []


# -- routing ----------------------------------------------------------------------------------


async def test_unknown_route_gets_404_json(api: Api) -> None:
    """An unknown path answers the JSON error shape, not aiohttp's text page."""
    response = await api.client.get(f"{BASE}/nothing-here", headers=api.headers())
    error = await _error(response, 404)
    assert error["code"] == "jobmanager.notFound"


async def test_wrong_method_gets_405_json(api: Api) -> None:
    """A known path with the wrong method answers 405 in the JSON error shape."""
    response = await api.client.delete(JOBS, headers=api.headers())
    error = await _error(response, 405)
    assert error["code"] == "jobmanager.methodNotAllowed"


async def test_wrong_method_405_names_the_allowed_methods(api: Api) -> None:
    """A 405 carries the Allow header listing the methods the path accepts."""
    response = await api.client.delete(JOBS, headers=api.headers())
    await _error(response, 405)
    assert {"GET", "POST"} <= set(response.headers.get("Allow", "").replace(" ", "").split(","))


async def test_health_answers_ok_without_a_token(api: Api) -> None:
    """The health probe needs no token."""
    response = await api.client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


# -- stop -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.SUBMITTED, JobStatus.STARTING, JobStatus.RUNNING])
async def test_stop_of_an_unfinished_job_publishes_stop_job(api: Api, status: JobStatus) -> None:
    """Stopping a job that is not final answers 200 STOPPING and publishes a StopJob for it."""
    job = await api.submit()
    if status is not JobStatus.SUBMITTED:
        api.move_to(job["id"], JobStatus.STARTING)
    if status is JobStatus.RUNNING:
        api.move_to(job["id"], JobStatus.RUNNING)
    response = await api.client.post(
        f"{JOBS}/{job['id']}/stop", headers=api.headers(**{"X-XSRF-TOKEN": "t"})
    )
    assert response.status == 200, await response.text()
    answered = await response.json()
    assert set(answered) == SEED_KEYS
    assert answered["id"] == job["id"]
    assert answered["status"] == "STOPPING"
    assert len(api.commands.published) == 2
    stop = api.commands.published[1]
    assert isinstance(stop, StopJob)
    assert (stop.job_id, stop.tenant) == (job["id"], TENANT)


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED])
async def test_stop_of_a_final_job_gets_409(api: Api, status: JobStatus) -> None:
    """Stopping a finished job answers 409 naming its status and publishes nothing."""
    job = await api.submit()
    api.move_to(job["id"], JobStatus.STARTING)
    api.move_to(job["id"], status)
    response = await api.client.post(f"{JOBS}/{job['id']}/stop", headers=api.headers())
    error = await _error(response, 409)
    assert status.value in error["message"]
    assert len(api.commands.published) == 1  # only the SubmitJob


async def test_stop_of_a_stopping_job_publishes_nothing_more(api: Api) -> None:
    """A second stop while the job is STOPPING answers 200 without another StopJob."""
    job = await api.submit()
    api.move_to(job["id"], JobStatus.STOPPING)
    response = await api.client.post(f"{JOBS}/{job['id']}/stop", headers=api.headers())
    assert response.status == 200
    assert (await response.json())["status"] == "STOPPING"
    assert len(api.commands.published) == 1


async def test_stop_of_another_tenants_job_gets_404(api: Api) -> None:
    """A tenant cannot stop another tenant's job; nothing is published."""
    job = await api.submit(tenant=OTHER_TENANT)
    response = await api.client.post(f"{JOBS}/{job['id']}/stop", headers=api.headers())
    await _error(response, 404)
    assert len(api.commands.published) == 1


async def test_stop_answers_503_when_the_broker_is_away(api: Api) -> None:
    """A stop the broker does not acknowledge gets 503 with Retry-After."""
    job = await api.submit()
    api.commands.unavailable = True
    response = await api.client.post(f"{JOBS}/{job['id']}/stop", headers=api.headers())
    await _error(response, 503)
    assert "Retry-After" in response.headers


# -- list -------------------------------------------------------------------------------------


async def _list(api: Api, query: str = "", tenant: str = TENANT) -> dict[str, Any]:
    response = await api.client.get(f"{JOBS}{query}", headers=api.headers(tenant))
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_list_pages_newest_first(api: Api) -> None:
    """Jobs are listed newest first, paged by pageNumber and pageSize."""
    ids = [(await api.submit())["id"] for _ in range(5)]
    await api.submit(tenant=OTHER_TENANT)
    newest_first = list(reversed(ids))

    first = await _list(api, "?pageSize=2")
    assert [job["id"] for job in first["content"]] == newest_first[:2]
    assert first["totalElements"] == 5
    assert first["totalPages"] == 3
    assert (first["first"], first["last"]) == (True, False)
    assert all(set(job) == {*SEED_KEYS, "jobId"} for job in first["content"])
    assert all(job["jobId"] == job["id"] for job in first["content"])
    assert first["jobs"] == first["content"]
    assert first["page"] == {"number": 0, "size": 2, "totalPages": 3, "totalElements": 5}

    second = await _list(api, "?pageSize=2&pageNumber=1")
    assert [job["id"] for job in second["content"]] == newest_first[2:4]

    last = await _list(api, "?pageSize=2&pageNumber=2")
    assert [job["id"] for job in last["content"]] == newest_first[4:]
    assert (last["first"], last["last"]) == (False, True)

    everything = await _list(api)
    assert [job["id"] for job in everything["content"]] == newest_first
    assert everything["size"] == 100


async def test_list_shows_only_the_callers_jobs(api: Api) -> None:
    """Another tenant's jobs are never listed."""
    await api.submit(tenant=OTHER_TENANT)
    page = await _list(api)
    assert page["content"] == []
    assert page["totalElements"] == 0


@pytest.mark.parametrize(
    "query",
    ["?pageSize=101", "?pageSize=0", "?pageSize=-1", "?pageSize=abc", "?pageNumber=-1"],
)
async def test_list_refuses_bad_paging_with_400(api: Api, query: str) -> None:
    """pageSize outside 1..100 or a negative/non-numeric pageNumber gets 400 naming it."""
    response = await api.client.get(f"{JOBS}{query}", headers=api.headers())
    error = await _error(response, 400)
    assert query[1:].split("=")[0] in error["message"]


@pytest.mark.parametrize("value", ["%C2%B2", "9" * 5000], ids=["superscript-two", "5000-digits"])
async def test_list_refuses_unparseable_digit_strings_with_400(api: Api, value: str) -> None:
    """A pageSize that looks like digits but is no int gets 400, not 500."""
    response = await api.client.get(f"{JOBS}?pageSize={value}", headers=api.headers())
    await _error(response, 400)
