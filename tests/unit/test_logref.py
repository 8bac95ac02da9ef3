"""The logref of an error body is the request_id of the gateway's log lines for that request."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import structlog
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs
from structlog.typing import EventDict

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway
from adapters.memory import MemoryCommandPublisher
from adapters.projection_store import MemoryProjectionStore
from tests.unit.factories import job_body
from worker.projection import Projection

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
TENANT = "tenanta"
JOBS = f"{BASE}/jobs"
BODY = job_body()


class BrokenStore(MemoryProjectionStore):
    """A projection store whose list fails unexpectedly (for the 500 path)."""

    def list(self, tenant: str) -> Sequence[Any]:
        raise RuntimeError("store is broken")


@pytest.fixture
async def commands() -> MemoryCommandPublisher:
    """The in-memory command publisher the gateway sends to."""
    return MemoryCommandPublisher()


@pytest.fixture
async def client(commands: MemoryCommandPublisher) -> AsyncIterator[TestClient[Any, Any]]:
    """The gateway app on a test server, over a store whose list fails."""
    store = BrokenStore()
    gateway = Gateway(
        commands, store, Authenticator(AuthSettings(hs256_secret=SECRET)), Projection(store).accept
    )
    started: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await started.start_server()
    try:
        yield started
    finally:
        await started.close()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SECRET, TENANT)}"}


async def _logref(response: ClientResponse, status: int) -> str:
    assert response.status == status, await response.text()
    logref: str = (await response.json())["errors"][0]["logref"]
    assert logref == response.headers["X-Request-Id"]
    return logref


def _lines_of(logs: list[EventDict], request_id: str) -> list[EventDict]:
    """The lines of one request: every line logged meanwhile must carry a request_id."""
    assert logs, "the request logged nothing"
    assert all("request_id" in line for line in logs), logs
    return [line for line in logs if line["request_id"] == request_id]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        pytest.param("POST", JOBS, {"modelId": 1}, "auth", 400, id="400-invalid-body"),
        pytest.param("GET", JOBS, None, None, 401, id="401-no-token"),
        pytest.param("GET", f"{JOBS}/no-such-job", None, "auth", 404, id="404-unknown-job"),
        pytest.param("GET", f"{BASE}/no-such-route", None, None, 404, id="404-unknown-route"),
        pytest.param("DELETE", JOBS, None, None, 405, id="405-method"),
        pytest.param("GET", JOBS, None, "auth", 500, id="500-internal"),
    ],
)
async def test_every_error_logref_has_a_log_line_with_that_request_id(
    client: TestClient[Any, Any],
    method: str,
    path: str,
    body: Any,
    headers: str | None,
    status: int,
) -> None:
    """Each kind of error is logged with request_id equal to the answered logref."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.request(method, path, json=body, headers=_auth() if headers else {})
        logref = await _logref(response, status)
    lines = _lines_of(logs, logref)
    assert lines, f"no log line with request_id {logref}: {logs}"
    assert any(line.get("status") == status for line in lines), lines


async def test_a_broker_timeout_logs_every_line_with_the_logref(
    client: TestClient[Any, Any], commands: MemoryCommandPublisher
) -> None:
    """A 503: both the broker warning (with job_id and tenant) and the refusal carry the logref."""
    commands.unavailable = True
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        logref = await _logref(await client.post(JOBS, json=BODY, headers=_auth()), 503)
    lines = _lines_of(logs, logref)
    assert [line["event"] for line in lines] == ["command not acknowledged", "request refused"]
    assert lines[0]["tenant"] == TENANT
    assert lines[0]["job_id"]


async def test_a_caller_request_id_is_the_logref_and_the_log_request_id(
    client: TestClient[Any, Any],
) -> None:
    """A caller's X-Request-Id is both the answered logref and the logged request_id."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.get(JOBS, headers={"X-Request-Id": "req-7"})
        assert await _logref(response, 401) == "req-7"
    assert [line["event"] for line in _lines_of(logs, "req-7")] == ["request refused"]


async def test_an_accepted_job_is_logged_with_the_request_id_of_the_answer(
    client: TestClient[Any, Any],
) -> None:
    """A 201's X-Request-Id is the request_id of its "job accepted" line, bound with the job."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await client.post(JOBS, json=BODY, headers=_auth())
        assert response.status == 201, await response.text()
        job = await response.json()
    (accepted,) = _lines_of(logs, response.headers["X-Request-Id"])
    assert accepted["event"] == "job accepted"
    assert (accepted["job_id"], accepted["tenant"], accepted["status"]) == (
        job["id"],
        TENANT,
        "SUBMITTED",
    )
