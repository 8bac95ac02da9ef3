"""Gateway ``POST /jobs`` throughput: N concurrent clients on loopback, broker ack included.

Ours: the gateway built as ``jobmanager gateway`` builds it (real JWT check with its cache of
verified tokens, Kafka publisher, projection; without the web UI and schedule routes), in its
own process, per-tenant rate limit lifted. Baseline: a bare aiohttp
handler in its own process that validates the same JSON with the same model and does the same
``send_and_wait`` with the same producer settings. The load generator is this process; the
two servers are loaded in turn, best round of each kept. Our process raises the garbage
collector's young-generation threshold as ``worker.bootstrap.run`` does
(``worker.runtime.tune_gc``: the projection keeps every accepted job, and collections scanning
those objects took a tenth of the gateway's CPU at CPython's default); the baseline, which keeps
nothing, runs with the default (about 1% of its CPU in the collector).
"""

import asyncio
import secrets

import aiohttp
from pydantic import SecretStr

from adapters.http.auth import mint
from bench.common import (
    TENANT,
    Context,
    Outcome,
    bench_settings,
    cpu_seconds,
    create_topics,
    expect_line,
    figure,
    free_port,
    now,
    settings_to_json,
    spawn,
    terminate,
)
from bench.samples import _request

NAME = "gateway POST /jobs throughput"
SECRET = SecretStr(secrets.token_urlsafe(32))
PATH = "/api/jobmanager/v3/jobs"


async def load(
    url: str, token: str, body: bytes, clients: int, seconds: float
) -> tuple[float, int]:
    """Requests per second answered 201 over ``seconds`` after a one-second warm-up, and how
    many were answered in all (warm-up included)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    counted = 0
    answered = 0
    failures: dict[int, int] = {}
    measuring = False

    async def client(session: aiohttp.ClientSession, until: float) -> None:
        nonlocal counted, answered
        while now() < until:
            async with session.post(url, data=body) as answer:
                await answer.read()
                answered += 1
                if answer.status == 201:
                    counted += measuring
                else:
                    failures[answer.status] = failures.get(answer.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = now()
        until = start + 1.0 + seconds
        tasks = [asyncio.create_task(client(session, until)) for _ in range(clients)]
        await asyncio.sleep(1.0)
        measuring, began = True, now()
        await asyncio.gather(*tasks)
        elapsed = now() - began
    if failures:
        raise RuntimeError(f"{url}: non-201 answers {failures}")
    return counted / elapsed, answered


#: Servers loaded in turn: the figure's two, then the what-ifs.
SIDES = {
    "ours": ("gateway", {}),
    "raw": ("raw-gateway", {}),
    "ours with log level warning": ("gateway", {"log_level": "warning"}),
}


async def run(ctx: Context) -> Outcome:
    outcome = Outcome()
    scale = ctx.scale
    sides = list(SIDES) if scale.what_if else ["ours", "raw"]
    log = ctx.log("gateway")
    token = ""
    processes: dict[str, asyncio.subprocess.Process] = {}
    ports: dict[str, int] = {}
    best = dict.fromkeys(sides, 0.0)
    # Server CPU per request: the load generator and other work on the machine compete for
    # the cores, so this is the steadier comparison of what each server does per request.
    cpu = dict.fromkeys(sides, 0.0)
    served = dict.fromkeys(sides, 0)
    try:
        for side in sides:
            role, extra = SIDES[side]
            settings = bench_settings(ctx.bootstrap, ctx.work, "gateway")
            await create_topics(settings)
            # One secret for all: the same token works on every server.
            settings = settings.model_copy(update={"jwt_secret": SECRET})
            token = mint(SECRET.get_secret_value(), TENANT)
            ports[side] = free_port()
            config = {
                "settings": settings_to_json(settings),
                "port": ports[side],
                # --profile gateway: ours; --profile gateway-fixed: the last what-if.
                "profile": (side == "ours" and "gateway" in ctx.profile)
                or (side == sides[-1] and "gateway-fixed" in ctx.profile),
                "profile_name": "gateway" if side == "ours" else "gateway-fixed",
                **extra,
            }
            processes[side] = await spawn(role, config, log)
        for process in processes.values():
            await expect_line(process, "ready", 60, log)
        body = _request().model_dump_json().encode()
        for _ in range(scale.gateway_rounds):
            for side in sides:
                url = f"http://127.0.0.1:{ports[side]}{PATH}"
                pid = processes[side].pid
                cpu_before = cpu_seconds(pid)
                rate, answered = await load(
                    url, token, body, scale.gateway_clients, scale.gateway_seconds
                )
                cpu[side] += cpu_seconds(pid) - cpu_before
                served[side] += answered
                best[side] = max(best[side], rate)
    finally:
        for process in processes.values():
            await terminate(process)
    outcome.figures.append(figure(NAME, best["ours"], best["raw"], "req/s", "ratio >= 0.6"))
    outcome.note(
        f"{scale.gateway_clients} keep-alive clients in the benchmark process, servers in their "
        f"own processes; best of {scale.gateway_rounds} rounds of {scale.gateway_seconds:g} s; "
        "per-tenant rate limit lifted (the default 100/s would answer 429)."
    )
    per_request = {side: 1e6 * cpu[side] / max(1, served[side]) for side in sides}
    outcome.note(
        f"server CPU per request: ours {per_request['ours']:.0f} µs, baseline "
        f"{per_request['raw']:.0f} µs (baseline / ours "
        f"{per_request['raw'] / max(per_request['ours'], 1e-9):.2f}), over every round."
    )
    for side in sides[2:]:
        outcome.note(
            f"what-if {side}: {best[side]:.0f} req/s, ratio {best[side] / best['raw']:.2f}"
        )
    return outcome
