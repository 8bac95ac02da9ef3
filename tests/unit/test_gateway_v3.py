"""Job Manager v3 compatibility and hardening of the gateway: scopes, XSRF, idempotency,
limits, filters, paging bounds, the SDK's request quirks and the OpenAPI document."""

import json
import urllib.parse
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway, GatewayLimits
from adapters.memory import MemoryCommandPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import SubmitJob
from schemas.jobs import JobPage, JobView
from tests.unit.test_gateway import SECRET, TENANT, Api, SteppingClock, _body, _error
from worker.projection import Projection

JOBS = f"{BASE}/jobs"


async def _api(limits: GatewayLimits | None = None) -> Api:
    commands = MemoryCommandPublisher()
    store = MemoryProjectionStore()
    projection = Projection(store)
    auth = Authenticator(AuthSettings(hs256_secret=SECRET))
    gateway = Gateway(
        commands, store, auth, projection.accept, limits or GatewayLimits(), clock=SteppingClock()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await client.start_server()
    return Api(client, commands, store, projection, auth)


@pytest.fixture
async def api() -> Any:
    """A gateway with default limits on a test server."""
    running = await _api()
    try:
        yield running
    finally:
        await running.client.close()


def _bearer(tenant: str = TENANT, read_only: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, tenant, read_only=read_only)}"}


# -- scopes and sessions ----------------------------------------------------------------------


async def test_read_only_token_reads_but_cannot_write(api: Api) -> None:
    """A jm.r token may GET; its POST is refused with 403 and publishes nothing."""
    job = await api.submit()

    read = await api.client.get(f"{JOBS}/{job['id']}", headers=_bearer(read_only=True))
    write = await api.client.post(JOBS, json=_body(), headers=_bearer(read_only=True))
    stop = await api.client.post(f"{JOBS}/{job['id']}/stop", headers=_bearer(read_only=True))

    assert read.status == 200
    await _error(write, 403)
    await _error(stop, 403)
    assert len(api.commands.published) == 1


async def test_cookie_session_needs_the_xsrf_header_to_write(api: Api) -> None:
    """A SESSION cookie may read; a write needs X-XSRF-TOKEN equal to the XSRF-TOKEN cookie."""
    session = {"SESSION": mint(SECRET, TENANT), "XSRF-TOKEN": "xsrf-value"}
    no_header = await api.client.post(JOBS, json=_body(), cookies=session)
    wrong = await api.client.post(
        JOBS, json=_body(), cookies=session, headers={"X-XSRF-TOKEN": "other"}
    )
    right = await api.client.post(
        JOBS, json=_body(), cookies=session, headers={"X-XSRF-TOKEN": "xsrf-value"}
    )
    listed = await api.client.get(JOBS, cookies=session)

    await _error(no_header, 403)
    await _error(wrong, 403)
    assert right.status == 201
    assert listed.status == 200
    assert len(api.commands.published) == 1


async def test_expired_token_gets_401(api: Api) -> None:
    """An expired token is refused with 401 and a reason."""
    expired = mint(SECRET, TENANT, lifetime_seconds=-3600)
    response = await api.client.get(JOBS, headers={"Authorization": f"Bearer {expired}"})
    error = await _error(response, 401)
    assert "expired" in error["message"]


# -- idempotency ------------------------------------------------------------------------------


async def test_idempotency_key_returns_the_same_job(api: Api) -> None:
    """The same key and body give the same job (201, then 200) and publish one SubmitJob."""
    headers = {**_bearer(), "Idempotency-Key": "order-42"}
    first = await api.client.post(JOBS, json=_body(), headers=headers)
    again = await api.client.post(JOBS, json=_body(), headers=headers)

    assert first.status == 201
    assert again.status == 200
    assert (await first.json())["id"] == (await again.json())["id"]
    assert len(api.commands.published) == 1


async def test_idempotency_key_with_another_body_conflicts(api: Api) -> None:
    """The same key with a different body is a 409 and publishes nothing more."""
    headers = {**_bearer(), "Idempotency-Key": "order-43"}
    await api.client.post(JOBS, json=_body(), headers=headers)
    other = await api.client.post(JOBS, json=_body(modelId="another"), headers=headers)

    error = await _error(other, 409)
    assert "Idempotency-Key" in error["message"]
    assert len(api.commands.published) == 1


async def test_idempotency_keys_are_per_tenant(api: Api) -> None:
    """Two tenants using the same key get two different jobs."""
    first = await api.client.post(
        JOBS, json=_body(), headers={**_bearer("tenanta"), "Idempotency-Key": "k"}
    )
    second = await api.client.post(
        JOBS, json=_body(), headers={**_bearer("tenantb"), "Idempotency-Key": "k"}
    )
    assert first.status == second.status == 201
    assert (await first.json())["id"] != (await second.json())["id"]


# -- limits -----------------------------------------------------------------------------------


async def test_time_limit_above_the_configured_maximum_is_refused() -> None:
    """maximumExecutionTimeInSeconds above the gateway's maximum is a 400 naming the limit."""
    api = await _api(GatewayLimits(max_execution_seconds=600))
    try:
        ok = await api.client.post(
            JOBS, json=_body(maximumExecutionTimeInSeconds="600"), headers=_bearer()
        )
        over = await api.client.post(
            JOBS, json=_body(maximumExecutionTimeInSeconds=601), headers=_bearer()
        )
        assert ok.status == 201
        error = await _error(over, 400)
        assert "600" in error["message"]
    finally:
        await api.client.close()


async def test_body_over_64_kib_is_413(api: Api) -> None:
    """A body larger than 64 KiB is refused with 413 in the error shape."""
    body = _body(modelId="m")
    body["padding"] = "x" * (64 * 1024)
    response = await api.client.post(JOBS, json=body, headers=_bearer())
    await _error(response, 413)
    assert api.commands.published == []


async def test_rate_limit_answers_429_with_retry_after() -> None:
    """Past the per-tenant burst, requests get 429 with Retry-After; other tenants still pass."""
    api = await _api(GatewayLimits(requests_per_second=0.5, request_burst=2))
    try:
        answers = [(await api.client.get(JOBS, headers=_bearer())).status for _ in range(3)]
        limited = await api.client.get(JOBS, headers=_bearer())
        other = await api.client.get(JOBS, headers=_bearer("tenantb"))

        assert answers == [200, 200, 429]
        await _error(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert other.status == 200
    finally:
        await api.client.close()


# -- what MindSphere's SDK sends --------------------------------------------------------------


async def test_stop_with_json_content_type_and_empty_body(api: Api) -> None:
    """The SDK's stop call (Content-Type json, Content-Length 0, no body) works."""
    job = await api.submit()
    response = await api.client.post(
        f"{JOBS}/{job['id']}/stop",
        data=b"",
        headers={**_bearer(), "Content-Type": "application/json"},
    )
    assert response.status == 200
    assert (await response.json())["status"] == "STOPPING"


async def test_list_with_bare_question_mark_and_json_content_type(api: Api) -> None:
    """GET /jobs? with Content-Type json and no body answers the first page."""
    await api.submit()
    response = await api.client.get(
        f"{JOBS}?", headers={**_bearer(), "Content-Type": "application/json"}
    )
    assert response.status == 200
    body = await response.json()
    JobPage.model_validate(body)
    assert body["totalElements"] == 1


async def test_page_past_the_last_is_empty_not_an_error(api: Api) -> None:
    """A page one past the end answers 200 with an empty list (the SDK's CLI asks for it)."""
    await api.submit()
    response = await api.client.get(f"{JOBS}?pageNumber=1&pageSize=1", headers=_bearer())
    body = await response.json()
    assert response.status == 200
    assert body["content"] == body["jobs"] == []
    assert body["last"] is True


async def test_paging_beyond_ten_thousand_items_is_refused(api: Api) -> None:
    """Only the first 10,000 items are reachable, as in MindSphere."""
    response = await api.client.get(f"{JOBS}?pageNumber=100&pageSize=100", headers=_bearer())
    error = await _error(response, 400)
    assert "10000" in error["message"]


async def test_page_size_above_100_is_refused(api: Api) -> None:
    """pageSize above 100 is a 400."""
    response = await api.client.get(f"{JOBS}?pageSize=101", headers=_bearer())
    await _error(response, 400)


# -- filters ----------------------------------------------------------------------------------


def _filtered(spec: object) -> str:
    return f"{JOBS}?filter={urllib.parse.quote(json.dumps(spec))}"


async def test_filter_selects_by_status_and_model(api: Api) -> None:
    """A MindSphere filter selects matching jobs only."""
    wanted = await api.submit(modelId="wanted")
    await api.submit(modelId="other")
    response = await api.client.get(
        _filtered({"modelId": "wanted", "status": {"or": [{"eq": "SUBMITTED"}, {"eq": "FAILED"}]}}),
        headers=_bearer(),
    )
    body = await response.json()
    assert [item["id"] for item in body["content"]] == [wanted["id"]]


@pytest.mark.parametrize("raw", ["{not json", "[1]", '{"nope": 1}', '{"status": {"like": "x"}}'])
async def test_malformed_filter_is_a_400_saying_what_is_wrong(api: Api, raw: str) -> None:
    """A malformed filter is refused with 400 and a message that starts with 'filter'."""
    response = await api.client.get(f"{JOBS}?filter={urllib.parse.quote(raw)}", headers=_bearer())
    error = await _error(response, 400)
    assert error["message"].startswith("filter")


# -- OpenAPI ----------------------------------------------------------------------------------


async def test_openapi_document_describes_every_route(api: Api) -> None:
    """/openapi.json is OpenAPI 3.1 and names every job and schedule route and the error body."""
    response = await api.client.get(f"{BASE}/openapi.json")
    document = await response.json()
    assert response.status == 200
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        JOBS,
        f"{JOBS}/{{id}}",
        f"{JOBS}/{{id}}/stop",
        f"{JOBS}/{{id}}/paragraphs",
        f"{BASE}/schedules",
        f"{BASE}/schedules/{{id}}",
        f"{BASE}/schedules/{{id}}/start",
        f"{BASE}/schedules/{{id}}/stop",
    }
    assert {"JobRequest", "JobView", "JobPage", "ErrorBody"} <= set(
        document["components"]["schemas"]
    )
    view_schema = document["components"]["schemas"]["JobView"]
    aliases = {field.alias for field in JobView.model_fields.values()}
    assert set(view_schema["properties"]) == aliases


async def test_submitted_command_carries_the_body(api: Api) -> None:
    """The SubmitJob on the bus carries exactly the request's fields."""
    await api.client.post(JOBS, json=_body(), headers=_bearer())
    command = api.commands.published[0]
    assert isinstance(command, SubmitJob)
    assert command.request.model_dump(by_alias=True, mode="json") == {
        k: v for k, v in _body().items()
    }


async def test_whole_float_seconds_are_accepted(api: Api) -> None:
    """7200.0 is a whole number in JSON (and in the OpenAPI document), so it is accepted."""
    response = await api.client.post(
        JOBS, json=_body(maximumExecutionTimeInSeconds=7200.0), headers=_bearer()
    )
    assert response.status == 201
    assert (await response.json())["maximumExecutionTimeInSeconds"] == "7200"


async def test_paragraphs_of_a_job_are_listed_for_its_tenant_only(api: Api) -> None:
    """GET /jobs/{id}/paragraphs shows folded paragraph results; another tenant gets 404."""
    from schemas.events import JobProgressed
    from schemas.notes import ParagraphResult, ParagraphStatus

    job = await api.submit()
    record = api.store.record(job["id"])
    assert record is not None
    result = ParagraphResult(
        index=0, id="p1", label="Load", interpreter="python", status=ParagraphStatus.ERROR,
        output="boom\n", error="ValueError: bad", started_at=None, finished_at=None,
        error_name="ValueError", error_value="bad", traceback="Traceback ...",
    )  # fmt: skip
    api.projection.apply(
        JobProgressed(
            event_id="e",
            job_id=job["id"],
            tenant=TENANT,
            sequence=1,
            status=record.view.status,
            message="",
            paragraph=result,
            job=record.view,
            occurred_at=record.view.creation_date,
        )
    )

    mine = await api.client.get(f"{JOBS}/{job['id']}/paragraphs", headers=_bearer())
    theirs = await api.client.get(f"{JOBS}/{job['id']}/paragraphs", headers=_bearer("tenantb"))

    body = await mine.json()
    assert mine.status == 200
    assert body["jobId"] == job["id"]
    [paragraph] = body["paragraphs"]
    assert paragraph["label"] == "Load"
    assert paragraph["status"] == "ERROR"
    assert paragraph["errorName"] == "ValueError"
    await _error(theirs, 404)
