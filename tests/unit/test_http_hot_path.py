"""The gateway's per-request shortcuts answer exactly as the slow paths they replace."""

import gc
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway
from adapters.http.ids import random_id
from adapters.memory import MemoryCommandPublisher
from adapters.projection_store import MemoryProjectionStore
from tests.unit.factories import job_body
from worker.projection import Projection
from worker.runtime import GC_YOUNG_THRESHOLD, tune_gc

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
JOBS = f"{BASE}/jobs"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    """The gateway app over in-memory ports on a test server."""
    store = MemoryProjectionStore()
    gateway = Gateway(
        MemoryCommandPublisher(),
        store,
        Authenticator(AuthSettings(hs256_secret=SECRET)),
        Projection(store).accept,
    )
    started: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await started.start_server()
    try:
        yield started
    finally:
        await started.close()


def _post(client: TestClient[Any, Any], content_type: str | None) -> Any:
    headers = {"Authorization": f"Bearer {mint(SECRET, 'tenanta')}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(JOBS, data=json.dumps(job_body()).encode(), headers=headers)


def test_random_ids_are_distinct_version_4_uuids_in_hex() -> None:
    """Every id is 32 lowercase hex digits of a valid version-4 RFC 4122 UUID, none repeated."""
    ids = [random_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:2_000]:
        parsed = uuid.UUID(hex=value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == value


def test_random_ids_vary_in_every_random_digit() -> None:
    """No hex digit but the version and variant ones is stuck (the mask keeps 122 bits)."""
    ids = [random_id() for _ in range(2_000)]
    stuck = [i for i in range(32) if len({value[i] for value in ids}) == 1]
    assert stuck == [12]  # the version digit, always "4"
    assert {value[16] for value in ids} == set("89ab")  # the variant digit


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=utf-8",
        "Application/JSON",
        "application/json; charset=latin-1",
        "application/octet-stream",
        None,
    ],
)
async def test_json_media_types_are_accepted_however_spelled(
    client: TestClient[Any, Any], content_type: str | None
) -> None:
    """Spellings taken without parsing and those parsed as before are all accepted."""
    response = await _post(client, content_type)
    assert response.status == 201, await response.text()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/jsonx", "text/json; charset=utf-8"]
)
async def test_other_media_types_are_still_415(
    client: TestClient[Any, Any], content_type: str
) -> None:
    """A media type that is not JSON is refused with 415, as before the shortcut."""
    response = await _post(client, content_type)
    assert response.status == 415, await response.text()


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The collector's thresholds as they were before the test."""
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_raises_only_the_young_threshold() -> None:
    """The young generation's threshold is raised; the older ones keep theirs."""
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
