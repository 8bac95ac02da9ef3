"""Child processes of the benchmarks: ``python -m bench.procs ROLE CONFIG_JSON``.

Roles: ``gateway`` (our gateway, as ``jobmanager gateway`` builds it), ``raw-gateway`` (the
baseline handler), ``service`` (gateway and worker in one process with the no-op engine, as
``jobmanager serve``), ``worker`` (a worker with the no-op engine, as ``jobmanager worker``),
``memory`` (the projection store filled with records). Each prints status lines on stdout,
logs to stderr, runs until SIGTERM (or its work is done) and may profile itself.
"""

import asyncio
import contextlib
import gc
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.http.auth import Authenticator
from bench.common import now, profiled, raw_producer
from bench.compose import UNLIMITED, NoopEngine, running_service
from schemas.jobs import JobRequest
from worker.settings import Settings

PATH = "/api/jobmanager/v3/jobs"


def _say(line: str) -> None:
    print(line, flush=True)


async def _until_terminated() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _settings(config: dict[str, Any]) -> Settings:
    return Settings(**config["settings"])


async def gateway(config: dict[str, Any]) -> None:
    """Our gateway (real authenticator, Kafka publisher, projection), rate limit lifted."""
    settings = _settings(config)
    async with running_service(
        settings, worker=None, gateway=UNLIMITED, authenticator=Authenticator
    ) as service:
        assert service.app is not None
        runner = await _serve(service.app, config["port"])
        _say("ready")
        with profiled(config.get("profile", False), config.get("profile_name", "gateway")):
            await _until_terminated()
        await runner.cleanup()


async def raw_gateway(config: dict[str, Any]) -> None:
    """The baseline: validate the same JSON, ``send_and_wait`` it, answer 201."""
    settings = _settings(config)
    producer = raw_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    topic = settings.commands_topic

    async def submit(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            JobRequest.model_validate_json(body)
        except ValueError as invalid:
            return web.json_response({"error": str(invalid)}, status=400)
        job_id = uuid.uuid4().hex
        await producer.send_and_wait(topic, value=body, key=job_id.encode())
        return web.json_response({"id": job_id, "status": "SUBMITTED"}, status=201)

    app = web.Application()
    app.router.add_post(PATH, submit)
    runner = await _serve(app, config["port"])
    _say("ready")
    await _until_terminated()
    await runner.cleanup()
    await producer.stop()


async def service(config: dict[str, Any]) -> None:
    """``jobmanager serve`` with the no-op engine; ``GET /_bench/running`` answers when each
    job's RUNNING reached the store the gateway reads (monotonic clock)."""
    settings = _settings(config)
    assigned = asyncio.Event()
    async with running_service(
        settings,
        worker={"local": NoopEngine()},
        gateway=UNLIMITED,
        on_assigned=lambda _: assigned.set(),
    ) as running:
        assert running.app is not None
        projection = running.projection

        async def visible(_: web.Request) -> web.Response:
            return web.json_response({"running": projection.running_at})

        running.app.router.add_get("/_bench/running", visible)
        runner = await _serve(running.app, config["port"])
        async with asyncio.timeout(60):
            await assigned.wait()
        _say("ready")
        with profiled(config.get("profile", False), "latency"):
            await _until_terminated()
        await runner.cleanup()


async def worker(config: dict[str, Any]) -> None:
    """``jobmanager worker`` with the no-op engine; prints each assignment; at the end writes
    the job ids its engine started to ``config["started"]``."""
    settings = _settings(config)
    engine = NoopEngine()

    def assigned(partitions: Any) -> None:
        _say("assigned " + ",".join(str(p.partition) for p in sorted(partitions)))

    async with running_service(
        settings, worker={"local": engine}, gateway=None, on_assigned=assigned
    ):
        _say("started")
        await _until_terminated()
    _write(Path(config["started"]), json.dumps(engine.started))


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def memory(config: dict[str, Any]) -> None:
    """Fill a projection store with ``jobs`` final records as a replay leaves them (every job,
    configuration and event id distinct; one model and folder pair); print the RSS growth per
    job, and with ``traced`` the tracemalloc count per job, as JSON.

    Each job's record before its last event (six events folded: six timeline entries) is built
    from a template, then its SUCCEEDED event, parsed from its bytes, is folded by
    ``Projection.apply`` as a replay does; folding all seven per job would take minutes."""
    import tracemalloc
    from datetime import timedelta

    import structlog

    from adapters.projection_store import MemoryProjectionStore
    from bench.samples import Template
    from schemas.events import EVENTS
    from schemas.jobs import JobRecord
    from worker.projection import Projection, apply

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    jobs = int(config["jobs"])
    traced = bool(config.get("traced", False))
    template = asyncio.run(Template.make())
    *before, last = template.events
    job = template.job_id.encode()
    config_id = template.request.configuration_id.encode()
    event_id = last.split(b'"eventId":"')[1].split(b'"')[0]
    folded: JobRecord | None = None
    for raw in before:
        folded = apply(folded, EVENTS.validate_json(raw))
    assert folded is not None
    previous = folded

    def make_store() -> MemoryProjectionStore:
        # As production builds it: 90 days of retention (the events here are minutes old).
        return MemoryProjectionStore(timedelta(days=90))

    def job_events() -> tuple[JobRecord, bytes]:
        job_id, configuration_id = uuid.uuid4().hex, uuid.uuid4().hex
        view = previous.view.model_copy(
            update={
                "id": job_id,
                "configuration_id": configuration_id,
                "environment_id": f"local-{job_id}",
            }
        )
        record = previous.model_copy(update={"view": view})
        raw = (
            last.replace(job, job_id.encode())
            .replace(config_id, configuration_id.encode())
            .replace(event_id, str(uuid.uuid4()).encode())
        )
        return record, raw

    # Warm-up outside the measurement (validator caches), and a round-trip check against the
    # fold alone.
    check = Projection(make_store())
    for _ in range(100):
        record, raw = job_events()
        check.store.put(record)
        event = EVENTS.validate_json(raw)
        if check.apply(event) != apply(record, event):
            raise RuntimeError("the store does not give back the record it got")
    del check
    projection = Projection(make_store())
    gc.collect()
    if traced:
        tracemalloc.start()
    before_rss = _rss()
    before_traced = tracemalloc.get_traced_memory()[0] if traced else 0
    for _ in range(jobs):
        record, raw = job_events()
        projection.store.put(record)
        projection.apply(EVENTS.validate_json(raw))
    del record, raw
    gc.collect()
    result = {
        "jobs": len(projection.store),  # type: ignore[arg-type]
        "rss_per_job": (_rss() - before_rss) / jobs,
        "traced_per_job": (
            (tracemalloc.get_traced_memory()[0] - before_traced) / jobs if traced else None
        ),
    }
    _say("result " + json.dumps(result))


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import resource

    return pages * resource.getpagesize()


ROLES = {
    "gateway": gateway,
    "raw-gateway": raw_gateway,
    "service": service,
    "worker": worker,
}


def _die_with_parent() -> None:
    """SIGTERM this child when the benchmark process dies, however it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def main() -> None:
    _die_with_parent()
    role, config = sys.argv[1], json.loads(sys.argv[2])
    if role == "memory":
        memory(config)
        return
    from worker.logging import configure_logging

    # Production logging (JSON lines, info) into stderr, which the parent sends to a file.
    configure_logging(Settings(log_format="json", log_level=config.get("log_level", "info")))
    started = now()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(ROLES[role](config))
    print(f"{role} ran {now() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
