"""P11: a burst beyond capacity is refused with 429 or 503, quickly, in bounded memory.

A real ``jobmanager gateway`` (no worker, so the machine's CPU goes to the gateway) with a low
per-tenant rate limit and a low bound on writes waiting for the broker takes bursts of
concurrent POST /jobs: one tenant far over its limit, then many tenants at once (each within
its limit, so only the bound on waiting writes holds them back) with the largest bodies
allowed. Its resident memory is sampled from /proc while the bursts run. Every request must get
an answer in time: 201, or 429 or 503 with Retry-After, never another 5xx; each accepted job
must have its command on the topic; and a second, identical burst must not grow the memory
again (what a refused request costs is given back).
"""

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.reliability.figures import record
from tests.reliability.live import JOBS, job_body, read_topic, token
from tests.service import Service, running_service
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.timeout(180)]

RATE = 50.0  # requests per second per tenant
BURST = 100
REQUESTS = 2_000  # per burst of one tenant: 20 times its burst
CONCURRENCY = 200  # connections at once
TENANTS = 100  # for the burst across tenants
PENDING_WRITES = 32  # writes waiting for the broker at once, all tenants (then 503)
DEADLINE_SECONDS = 15.0  # per request: later is a hang
RSS_GROWTH_LIMIT_MB = 150.0  # over the idle gateway, at the peak of all bursts
REPEAT_GROWTH_LIMIT_MB = 20.0  # of the second identical burst over the first


@dataclass
class Burst:
    statuses: Counter[int] = field(default_factory=Counter)
    hangs: int = 0
    without_retry_after: int = 0
    accepted: list[str] = field(default_factory=list)
    slowest: float = 0.0
    seconds: float = 0.0


class Memory:
    """Samples a process's resident set size every few milliseconds, in a thread."""

    def __init__(self, pid: int) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mb(self) -> float:
        for line in self._status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append(self.now_mb())

    def __enter__(self) -> "Memory":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_per_second": RATE,
            "rate_limit_burst": BURST,
            "max_pending_writes": PENDING_WRITES,
        }
    )


@pytest.fixture
def gateway(limited: Settings, tmp_path: Path) -> Iterator[Service]:
    with running_service(limited, tmp_path / "gateway.log", command="gateway") as running:
        yield running


async def _burst(url: str, posts: list[tuple[str, bytes]]) -> Burst:
    """Send every (token, body) at once, CONCURRENCY connections at a time."""
    result = Burst()
    timeout = aiohttp.ClientTimeout(total=DEADLINE_SECONDS)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def post(bearer: str, body: bytes) -> None:
            began = time.monotonic()
            headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
            try:
                async with session.post(url + JOBS, data=body, headers=headers) as answer:
                    payload = await answer.read()
            except (TimeoutError, aiohttp.ClientError):
                result.hangs += 1
                return
            result.slowest = max(result.slowest, time.monotonic() - began)
            result.statuses[answer.status] += 1
            if answer.status in (429, 503) and "Retry-After" not in answer.headers:
                result.without_retry_after += 1
            if answer.status == 201:
                result.accepted.append(json.loads(payload)["id"])

        await asyncio.gather(*(post(bearer, body) for bearer, body in posts))
    result.seconds = time.monotonic() - started
    return result


def _server_errors(burst: Burst) -> int:
    return sum(n for status, n in burst.statuses.items() if status >= 500 and status != 503)


def test_bursts_are_refused_in_bounded_memory(gateway: Service, limited: Settings) -> None:
    """Bursts get 201 or 429/503 with Retry-After in time; memory stays bounded and flat."""
    settings = limited
    one = token(settings)
    body = json.dumps(job_body(settings)).encode()
    # The largest body the gateway takes (64 KiB), padded with an ignored field.
    big = json.loads(body)
    big["padding"] = "x" * (settings.max_body_bytes - len(body) - 64)
    big_body = json.dumps(big).encode()
    many = [token(settings, f"tenant{i}") for i in range(TENANTS)]

    with Memory(gateway.pid) as memory:
        idle = memory.now_mb()
        first = asyncio.run(_burst(gateway.url, [(one, body)] * REQUESTS))
        after_first = memory.now_mb()
        time.sleep(BURST / RATE)  # the tenant's bucket fills up again, as before the first
        second = asyncio.run(_burst(gateway.url, [(one, body)] * REQUESTS))
        after_second = memory.now_mb()
        spread = asyncio.run(
            _burst(gateway.url, [(many[i % TENANTS], big_body) for i in range(REQUESTS)])
        )
        peak = max([idle, *memory.samples])

    bursts = (first, second, spread)
    # Accepted means acknowledged by the broker: every 201's command is on the topic.
    on_topic = {
        r.key.decode()
        for r in read_topic(settings.kafka_bootstrap_servers, settings.commands_topic)
    }
    lost = sum(1 for b in bursts for job_id in b.accepted if job_id not in on_topic)
    counts = Counter[int]()
    for b in bursts:
        counts.update(b.statuses)
    record(
        "P11",
        "test_bursts_are_refused_in_bounded_memory",
        requests=sum(sum(b.statuses.values()) + b.hangs for b in bursts),
        jobs_submitted=sum(len(b.accepted) for b in bursts),
        accepted=counts[201],
        refused_429=counts[429],
        refused_503=counts[503],
        server_errors=sum(_server_errors(b) for b in bursts),
        hangs=sum(b.hangs for b in bursts),
        refusals_without_retry_after=sum(b.without_retry_after for b in bursts),
        jobs_lost=lost,
        faults_injected=len(bursts),
        rate_limit_per_second=RATE,
        rate_limit_burst=BURST,
        max_pending_writes=PENDING_WRITES,
        spread_burst_503=spread.statuses[503],
        concurrency=CONCURRENCY,
        idle_rss_mb=round(idle, 1),
        peak_rss_mb=round(peak, 1),
        rss_growth_mb=round(peak - idle, 1),
        second_burst_growth_mb=round(after_second - after_first, 1),
        slowest_answer_seconds=round(max(b.slowest for b in bursts), 2),
        one_tenant_burst_seconds=round(first.seconds, 1),
    )

    for b in bursts:
        assert b.hangs == 0, b
        assert _server_errors(b) == 0, b.statuses
        assert b.without_retry_after == 0
        assert set(b.statuses) <= {201, 429, 503}, b.statuses
    for b in (first, second):
        # The bucket lets through its burst plus what refills while the burst lasts.
        assert len(b.accepted) <= BURST + RATE * b.seconds + 1, (len(b.accepted), b.seconds)
        assert b.statuses[429] >= REQUESTS - BURST - RATE * b.seconds - 1
    assert len(spread.accepted) > 0
    # No tenant is over its rate here: what refuses the spread burst is the bound on writes
    # waiting for the broker (200 connections at once against PENDING_WRITES).
    assert spread.statuses[503] > 0, spread.statuses
    assert lost == 0, f"{lost} accepted jobs have no command on the topic"
    assert peak - idle < RSS_GROWTH_LIMIT_MB, (idle, peak)
    assert after_second - after_first < REPEAT_GROWTH_LIMIT_MB, (after_first, after_second)
