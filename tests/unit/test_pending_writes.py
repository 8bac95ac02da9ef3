"""The gateway's bound on writes waiting for the broker, over a publisher the test holds."""

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from adapters.http.auth import Authenticator, AuthSettings, mint
from adapters.http.gateway import BASE, Gateway, GatewayLimits
from adapters.projection_store import MemoryProjectionStore
from schemas.commands import Command
from tests.unit.factories import job_body
from worker.projection import Projection

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
JOBS = f"{BASE}/jobs"
BODY = job_body()
LIMIT = 3
DEADLINE = 10.0


class HeldPublisher:
    """A broker that acknowledges only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.published: list[Command] = []

    async def publish(self, command: Command) -> None:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        self.published.append(command)


async def test_writes_beyond_the_bound_get_503_and_reads_still_answer() -> None:
    """With LIMIT writes waiting, the next POST (any tenant) gets 503 at once; GETs answer."""
    publisher = HeldPublisher()
    projection = Projection(MemoryProjectionStore())
    gateway = Gateway(
        publisher,
        projection.store,
        Authenticator(AuthSettings(hs256_secret=SECRET)),
        projection.accept,
        GatewayLimits(max_pending_writes=LIMIT),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(gateway.app()))
    await client.start_server()
    try:
        tokens = [mint(SECRET, f"tenant{i}") for i in range(LIMIT + 1)]

        async def post(bearer: str) -> Any:
            return await client.post(JOBS, json=BODY, headers={"Authorization": f"Bearer {bearer}"})

        held = [asyncio.create_task(post(bearer)) for bearer in tokens[:LIMIT]]
        async with asyncio.timeout(DEADLINE):
            while publisher.waiting < LIMIT:  # noqa: ASYNC110 - the publisher has no event
                await asyncio.sleep(0.01)

        refused = await asyncio.wait_for(post(tokens[LIMIT]), DEADLINE)
        listed = await client.get(JOBS, headers={"Authorization": f"Bearer {tokens[0]}"})
        assert refused.status == 503, await refused.text()
        assert refused.headers["Retry-After"] == "1"
        assert (await refused.json())["errors"][0]["code"] == "jobmanager.serviceUnavailable"
        assert listed.status == 200

        publisher.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*held), DEADLINE)
        assert [a.status for a in answers] == [201] * LIMIT
        again = await post(tokens[LIMIT])
        assert again.status == 201, "the bound is given back when writes finish"
        assert len(publisher.published) == LIMIT + 1
    finally:
        await client.close()
