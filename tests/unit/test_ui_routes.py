"""The web UI's routes without a browser: pages, the token login, the UI's JSON and the SSE feed."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway
from adapters.http.ui import WebUi
from adapters.local_files import LocalHome
from adapters.memory import MemoryCommandPublisher
from adapters.projection_store import MemoryProjectionStore
from schemas.notes import ParagraphResult
from schemas.status import JobStatus
from tests.kafka_broker import free_port
from tests.unit.factories import finished_paragraph, progressed
from tests.unit.test_gateway import OTHER_TENANT, SECRET, TENANT, Api, SteppingClock, _error
from worker.projection import Projection

JOBS = f"{BASE}/jobs"


def _gateway(
    heartbeat_seconds: float = 15.0, folders: LocalHome | None = None
) -> tuple[Gateway, WebUi, Api]:
    commands = MemoryCommandPublisher()
    store = MemoryProjectionStore()
    projection = Projection(store)
    auth = Authenticator(AuthSettings(hs256_secret=SECRET))
    ui = WebUi(store, projection, auth, heartbeat_seconds=heartbeat_seconds, folders=folders)
    gateway = Gateway(commands, store, auth, projection.accept, clock=SteppingClock(), ui=ui)
    return gateway, ui, Api(None, commands, store, projection, auth)  # type: ignore[arg-type]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """The gateway with its web UI on a test server, in-memory commands and projection."""
    gateway, _, api = _gateway(heartbeat_seconds=0.2)
    async with TestClient(TestServer(gateway.app())) as client:
        api.client = client
        yield api


def _progress(api: Api, job_id: str, paragraph: ParagraphResult | None, message: str) -> None:
    record = api.store.record(job_id)
    assert record is not None
    api.projection.apply(progressed(record, message, paragraph, datetime.now(UTC)))


def _paragraph(index: int, output: str, interpreter: str = "python") -> ParagraphResult:
    return finished_paragraph(index, output, interpreter, datetime.now(UTC))


async def _login(api: Api, tenant: str = TENANT, read_only: bool = False) -> aiohttp.ClientResponse:
    return await api.client.post(
        "/ui/login", json={"token": mint(SECRET, tenant, read_only=read_only)}
    )


# -- pages and files --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/ui/", "/ui/jobs/some-job", "/ui/submit", "/ui/schedules"])
async def test_pages_are_served_without_credentials_with_a_strict_policy(
    api: Api, path: str
) -> None:
    """Every page is the same HTML shell, loadable before sign-in, scripts only from itself."""
    response = await api.client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert '<script src="/ui/static/app.js" defer></script>' in await response.text()
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_static_files_are_served_and_unknown_names_are_json_404(api: Api) -> None:
    """The script and style come from the package; any other name is a 404 error body."""
    script = await api.client.get("/ui/static/app.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert "EventSource" in await script.text()
    assert (await api.client.get("/ui/static/app.css")).content_type == "text/css"
    await _error(await api.client.get("/ui/static/..%2Froutes.py"), 404)
    await _error(await api.client.get("/ui/static/index.html"), 404)


# -- login ------------------------------------------------------------------------------------


async def test_login_turns_a_token_into_a_cookie_session(api: Api) -> None:
    """A valid token gives an HTTP-only SESSION cookie and a script-readable XSRF-TOKEN."""
    response = await _login(api)
    assert response.status == 200, await response.text()
    assert await response.json() == {"tenant": TENANT, "user": "local-user", "canWrite": True}
    session = response.cookies["SESSION"]
    xsrf = response.cookies["XSRF-TOKEN"]
    assert session["httponly"]
    assert session["samesite"] == "Strict"
    assert not xsrf["httponly"]
    assert len(xsrf.value) >= 32
    who = await api.client.get("/ui/api/session")
    assert who.status == 200
    assert (await who.json())["tenant"] == TENANT


async def test_cookie_session_writes_need_the_xsrf_header(api: Api) -> None:
    """After a UI login, a POST without X-XSRF-TOKEN is 403; with the cookie's value, 201."""
    await _login(api)
    body = {
        "modelId": "m",
        "configurationId": "c",
        "inputFolderId": "i",
        "outputFolderId": "o",
        "maximumExecutionTimeInSeconds": "60",
    }
    await _error(await api.client.post(JOBS, json=body), 403)
    xsrf = api.client.session.cookie_jar.filter_cookies(api.client.make_url("/"))["XSRF-TOKEN"]
    accepted = await api.client.post(JOBS, json=body, headers={"X-XSRF-TOKEN": xsrf.value})
    assert accepted.status == 201, await accepted.text()


@pytest.mark.parametrize(
    ("send", "status"),
    [
        ({"json": {"token": "not-a-jwt"}}, 401),
        ({"json": {"token": mint("another-secret-long-enough-for-hs256!!", TENANT)}}, 401),
        ({"json": {}}, 400),
        ({"json": ["token"]}, 400),
        ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": {"token": "x"}}, 415),
    ],
)
async def test_login_refuses_bad_tokens_and_bodies_with_json_errors(
    api: Api, send: dict[str, Any], status: int
) -> None:
    """Bad tokens are 401, bad bodies 400, form posts 415; no cookie is set."""
    response = await api.client.post("/ui/login", **send)
    await _error(response, status)
    assert "SESSION" not in response.cookies


async def test_logout_ends_the_session(api: Api) -> None:
    """After sign-out the session cookie is gone and UI calls are 401."""
    await _login(api)
    response = await api.client.post("/ui/logout")
    assert response.status == 204
    await _error(await api.client.get("/ui/api/session"), 401)


# -- the UI's JSON ----------------------------------------------------------------------------


async def test_jobs_list_adds_start_and_finish_times_and_filters(api: Api) -> None:
    """Items carry the API's fields plus startedAt/finishedAt; filters work as the API's."""
    done = await api.submit()
    running = await api.submit()
    for status in (JobStatus.STARTING, JobStatus.RUNNING, JobStatus.SUCCEEDED):
        api.move_to(done["id"], status)
    api.move_to(running["id"], JobStatus.STARTING)
    api.move_to(running["id"], JobStatus.RUNNING)

    page = await (await api.client.get("/ui/api/jobs", headers=api.headers())).json()
    by_id = {item["id"]: item for item in page["content"]}
    assert [item["id"] for item in page["jobs"]] == [running["id"], done["id"]]
    assert by_id[done["id"]]["finishedAt"] is not None
    assert by_id[done["id"]]["startedAt"] <= by_id[done["id"]]["finishedAt"]
    assert by_id[running["id"]]["finishedAt"] is None
    assert by_id[running["id"]]["jobId"] == running["id"]

    query = {"filter": json.dumps({"status": "SUCCEEDED"})}
    filtered = await api.client.get("/ui/api/jobs", params=query, headers=api.headers())
    assert [item["id"] for item in (await filtered.json())["content"]] == [done["id"]]
    bad = await api.client.get("/ui/api/jobs", params={"filter": "{"}, headers=api.headers())
    await _error(bad, 400)
    other = await api.client.get("/ui/api/jobs", headers=api.headers(OTHER_TENANT))
    assert (await other.json())["content"] == []


async def test_job_detail_has_the_timeline_and_typed_outputs(api: Api) -> None:
    """The job page's data: each move and step message with its time, outputs split by type."""
    job = await api.submit()
    api.move_to(job["id"], JobStatus.STARTING)
    _progress(api, job["id"], None, "Preparing inputs.")
    api.move_to(job["id"], JobStatus.RUNNING)
    _progress(api, job["id"], _paragraph(0, "hello\n%table a\tb\n1\t2\n"), "Preparing inputs.")
    _progress(api, job["id"], _paragraph(1, "<b>bold</b>", interpreter="html"), "Preparing inputs.")

    response = await api.client.get(f"/ui/api/jobs/{job['id']}", headers=api.headers())
    assert response.status == 200, await response.text()
    data = await response.json()
    assert data["job"]["status"] == "RUNNING"
    assert [(e["status"], e["moved"]) for e in data["timeline"]] == [
        ("STARTING", True),
        ("STARTING", False),
        ("RUNNING", True),
    ]
    assert data["timeline"][1]["message"] == "Preparing inputs."
    first, second = data["paragraphs"]
    assert first["outputs"] == [
        {"type": "TEXT", "data": "hello\n"},
        {"type": "TABLE", "columns": ["a", "b"], "rows": [["1", "2"]]},
    ]
    assert second["outputs"] == [{"type": "HTML", "data": "<b>bold</b>"}]

    missing = await api.client.get(f"/ui/api/jobs/{job['id']}", headers=api.headers(OTHER_TENANT))
    await _error(missing, 404)


# -- server-sent events -----------------------------------------------------------------------


async def _next_event(response: aiohttp.ClientResponse, within: float = 5.0) -> dict[str, Any]:
    """The data of the next ``job`` event on the stream (comments and retry lines skipped)."""
    async with asyncio.timeout(within):
        name = None
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name == "job":
                data: dict[str, Any] = json.loads(line[len("data: ") :])
                return data


async def test_stream_pushes_the_tenants_job_changes_only(api: Api) -> None:
    """A change of this tenant's job arrives as an event; another tenant's never does."""
    stream = await api.client.get("/ui/stream", headers=api.headers())
    assert stream.status == 200
    assert stream.content_type == "text/event-stream"
    assert (await stream.content.readline()).startswith(b"retry: ")

    foreign = await api.submit(OTHER_TENANT)
    mine = await api.submit()
    first = await _next_event(stream)
    assert first["id"] == mine["id"]
    assert first["status"] == "SUBMITTED"

    api.move_to(foreign["id"], JobStatus.STARTING)
    api.move_to(mine["id"], JobStatus.STARTING)
    second = await _next_event(stream)
    assert (second["id"], second["status"]) == (mine["id"], "STARTING")
    stream.close()


async def test_stream_sends_heartbeats_while_idle(api: Api) -> None:
    """An idle stream carries keep-alive comments (the fixture's heartbeat is 0.2 s)."""
    stream = await api.client.get("/ui/stream", headers=api.headers())
    async with asyncio.timeout(5):
        while (await stream.content.readline()) != b": keep-alive\n":
            pass
    stream.close()


async def test_stream_needs_credentials(api: Api) -> None:
    """Without a token or session the stream is a 401 error body, not an open stream."""
    await _error(await api.client.get("/ui/stream"), 401)


async def test_gateway_shutdown_ends_open_streams_at_once() -> None:
    """Cleanup with an open stream finishes in well under aiohttp's 60 s handler grace."""
    gateway, ui, _ = _gateway()
    runner = web.AppRunner(gateway.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    headers = {"Authorization": f"Bearer {mint(SECRET, TENANT)}"}
    async with aiohttp.ClientSession() as client:
        stream = await client.get(f"http://127.0.0.1:{port}/ui/stream", headers=headers)
        await stream.content.readline()
        assert ui.stream.open_connections == 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(10):
            await runner.cleanup()
        assert loop.time() - started < 5
        async with asyncio.timeout(5):
            await stream.content.read()  # returns only once the server ended the stream
        assert stream.content.at_eof()
    assert ui.stream.open_connections == 0
