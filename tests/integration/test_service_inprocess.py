"""The whole service in this process: gateway and worker from ``worker.bootstrap.run``."""

import asyncio
from typing import Any

import aiohttp
import pytest

from adapters.http.auth import mint
from adapters.local_files import LocalHome
from tests.integration.helpers import TENANT, prepare_job, until_healthy
from tests.kafka_broker import free_port
from worker.bootstrap import Roles, run
from worker.settings import Settings

pytestmark = pytest.mark.kafka

JOBS = "/api/jobmanager/v3/jobs"
FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


async def _until_final(
    session: aiohttp.ClientSession, url: str, service: "asyncio.Task[None]"
) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    try:
        async with asyncio.timeout(60):
            while seen.get("status") not in FINAL:
                assert not service.done(), f"run() ended while the job ran: {service!r}"
                async with session.get(url) as answer:
                    assert answer.status == 200, await answer.text()
                    seen = await answer.json()
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"job not final within 60 s; last seen {seen}") from None
    return seen


async def test_job_over_http_then_graceful_shutdown(settings: Settings) -> None:
    """A job POSTed to the in-process gateway ends SUCCEEDED; setting `stopping` ends run()."""
    settings = settings.model_copy(update={"port": free_port()})
    assert settings.jwt_secret is not None
    home = LocalHome(settings.home)
    request = prepare_job(home)
    (home.folder(TENANT, request.input_folder_id) / "data.csv").write_text("a,b\n1,2\n")
    token = mint(settings.jwt_secret.get_secret_value(), TENANT)
    url = f"http://{settings.host}:{settings.port}"

    stopping = asyncio.Event()
    service = asyncio.create_task(run(settings, Roles(), stopping), name="service")
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as session:
            await until_healthy(session, url, service, 60)
            async with session.post(f"{url}{JOBS}", json=request.model_dump(mode="json")) as made:
                assert made.status == 201, await made.text()
                created = await made.json()
            assert created["status"] == "SUBMITTED"

            final = await _until_final(session, f"{url}{JOBS}/{created['id']}", service)
        assert final["status"] == "SUCCEEDED", final["message"]
        output = home.folder(TENANT, request.output_folder_id)
        assert (output / "result.txt").read_text() == "total=30\n"
        assert (output / "listing.txt").read_text().split() == ["data.csv"]

        stopping.set()
        async with asyncio.timeout(settings.shutdown_grace_seconds + 20):
            await service  # returns, and does not raise SystemExit
    finally:
        if not service.done():
            service.cancel()
            await asyncio.gather(service, return_exceptions=True)
