"""What every benchmark shares: figures, the broker, settings, job fixtures, statistics."""

import asyncio
import contextlib
import json
import math
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from adapters.kafka import ensure_topics
from adapters.local_files import LocalHome
from schemas.commands import SubmitJob
from schemas.jobs import JobRequest
from worker.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
KAFKA_DEPLOY = REPO / "deploy" / "kafka"
TENANT = "bench"

#: One clock for every process of a run: CLOCK_MONOTONIC is system-wide on Linux, so times
#: taken in the gateway's process and in the load generator's can be subtracted.
now = time.monotonic

# A one-paragraph note: the no-op engine never runs it, the embedded engine prints one line.
NOTE = {
    "name": "bench",
    "id": "bench-note",
    "defaultInterpreterGroup": "python",
    "paragraphs": [{"id": "p1", "title": "print", "text": "%python\nprint(1)"}],
}


# -- figures ------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of ``latest.json`` (the contract of the benchmark issue).

    ``target`` is ``"ratio >= 0.6"``, ``"ratio <= 2"``, ``"ours <= 550"``, ``"ours == 0"`` or
    None (reported, no target); ``met`` is None when there is no target.
    """

    name: str
    ours: float
    baseline: float | None
    unit: str
    ratio: float | None
    target: str | None
    met: bool | None


def _holds(target: str | None, ours: float, ratio: float | None) -> bool | None:
    if target is None:
        return None
    subject, operator, bound = target.split()
    value = ours if subject == "ours" else ratio
    if value is None or math.isnan(value):
        return False
    limit = float(bound)
    return {
        ">=": value >= limit,
        "<=": value <= limit,
        "==": value == limit,
    }[operator]


def figure(name: str, ours: float, baseline: float | None, unit: str, target: str | None) -> Figure:
    """A figure with its ratio (ours / baseline) and whether the target is met; printed."""
    ratio = None if baseline in (None, 0) else ours / baseline  # type: ignore[operator]
    made = Figure(
        name=name,
        ours=_round(ours),
        baseline=None if baseline is None else _round(baseline),
        unit=unit,
        ratio=None if ratio is None else round(ratio, 3),
        target=target,
        met=_holds(target, ours, ratio),
    )
    verdict = {None: "no target", True: "met", False: "NOT MET"}[made.met]
    print(
        f"  {name}: ours {made.ours:g} {unit}"
        + (f", baseline {made.baseline:g} {unit}" if made.baseline is not None else "")
        + (f", ratio {made.ratio:g}" if made.ratio is not None else "")
        + (f"  [{target}: {verdict}]" if target else ""),
        flush=True,
    )
    return made


def _round(value: float) -> float:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return value
    digits = max(0, 4 - math.floor(math.log10(abs(value))) - 1)
    return round(value, digits)


@dataclass
class Outcome:
    """What one benchmark hands back: its figures and notes for the report."""

    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)


def figures_json(figures: Iterable[Figure]) -> str:
    return json.dumps([asdict(f) for f in figures], indent=2) + "\n"


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile, ``p`` in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc; NaN if unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process (all threads)."""
    times = os.times()
    return times.user + times.system


# -- the broker ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def own_broker(data_dir: Path) -> Iterator[str]:
    """Start ``deploy/kafka`` on free ports in ``data_dir``; stop and purge it afterwards."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(data_dir),
    }
    started = subprocess.run(
        ["bash", str(KAFKA_DEPLOY / "up.sh")], env=env, capture_output=True, text=True, check=False
    )
    try:
        if started.returncode != 0:
            raise RuntimeError(
                f"the benchmark's Kafka broker did not start (exit {started.returncode}):\n"
                f"{started.stderr[-3000:]}"
            )
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            ["bash", str(KAFKA_DEPLOY / "down.sh"), "--purge"],
            env=env,
            check=False,
            timeout=120,
            capture_output=True,
        )


# -- settings and fixtures ----------------------------------------------------------------


def bench_settings(bootstrap: str, work: Path, name: str, **overrides: Any) -> Settings:
    """Production defaults with this benchmark's own topics, group, home and secret."""
    suffix = f"{name}.{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "home": work / name / "home",
        "kafka_bootstrap_servers": bootstrap,
        "commands_topic": f"bench.{suffix}.commands",
        "events_topic": f"bench.{suffix}.events",
        "dead_letter_topic": f"bench.{suffix}.commands.dlq",
        "environments_topic": f"bench.{suffix}.environments",
        "consumer_group": f"bench-{suffix}",
        "jwt_secret": secrets.token_urlsafe(32),
        "log_format": "json",
        **overrides,
    }
    return Settings(**values)


def settings_to_json(settings: Settings) -> dict[str, Any]:
    """Settings as JSON for a child process, the secret included."""
    values = settings.model_dump(mode="json")
    assert settings.jwt_secret is not None
    values["jwt_secret"] = settings.jwt_secret.get_secret_value()
    return values


async def create_topics(settings: Settings) -> None:
    """The four topics, as ``worker.bootstrap`` creates them."""
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        (
            settings.commands_topic,
            settings.events_topic,
            settings.dead_letter_topic,
            settings.environments_topic,
        ),
        settings.topic_partitions,
        settings.topic_replication_factor,
        {
            settings.events_topic: {"retention.ms": str(settings.events_retention_ms)},
            settings.environments_topic: {"retention.ms": str(settings.events_retention_ms)},
        },
    )


def prepare_requests(settings: Settings, count: int) -> list[JobRequest]:
    """``count`` job requests on one model and one input/output folder pair, each with its own
    environment configuration (one environment per configuration: no job waits for another)."""
    home = LocalHome(settings.home)
    note = settings.home / "bench.zpln"
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps(NOTE))
    model_id = home.add_model(TENANT, note)
    input_id = home.create_folder(TENANT)
    output_id = home.create_folder(TENANT)
    return [
        JobRequest(
            model_id=model_id,
            configuration_id=home.add_configuration(TENANT, f"bench {i}"),
            input_folder_id=input_id,
            output_folder_id=output_id,
            maximum_execution_time_in_seconds=600,
        )
        for i in range(count)
    ]


def submit_command(request: JobRequest) -> SubmitJob:
    moment = datetime.now(UTC)
    return SubmitJob(
        command_id=uuid.uuid4().hex,
        job_id=uuid.uuid4().hex,
        tenant=TENANT,
        request=request,
        creation_date=moment,
        issued_at=moment,
    )


def raw_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """An aiokafka producer configured as ``adapters.kafka.KafkaProducer`` configures its own."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        **overrides,
    }
    return AIOKafkaProducer(**options)


async def produce_commands(bootstrap: str, topic: str, commands: Sequence[SubmitJob]) -> None:
    """Publish commands exactly as ``KafkaCommandPublisher`` does, pipelined (setup only)."""
    producer = raw_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                value=command.model_dump_json().encode(),
                key=command.job_id.encode(),
                headers=[
                    ("type", command.type.encode()),
                    ("schema-version", str(command.schema_version).encode()),
                ],
            )
            for command in commands
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


# -- processes ----------------------------------------------------------------------------


def configure_production_logging(log_file: Path) -> None:
    """structlog exactly as ``jobmanager serve`` sets it up (JSON lines, info), into a file.

    Log lines are part of what production pays per job, so they stay on; they just do not
    flood the benchmark's output.
    """
    from worker.logging import configure_logging

    log_file.parent.mkdir(parents=True, exist_ok=True)
    sink = log_file.open("a", buffering=1)  # kept open for the life of the process
    with contextlib.redirect_stderr(sink):
        configure_logging(Settings(log_format="json", log_level="info"))


async def spawn(role: str, config: dict[str, Any], log_file: Path) -> asyncio.subprocess.Process:
    """Start ``python -m bench.procs ROLE`` with ``config`` (JSON on its stdin's first line).

    The child writes its log (stderr) to ``log_file`` and status lines to stdout.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.procs",
            role,
            json.dumps(config),
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
        )
    return process


def _tail(log_file: Path) -> str:
    return log_file.read_text()[-3000:] if log_file.exists() else ""


async def expect_line(
    process: asyncio.subprocess.Process, prefix: str, within: float, log_file: Path
) -> str:
    """The child's next stdout line starting with ``prefix`` (others are skipped)."""
    assert process.stdout is not None
    try:
        async with asyncio.timeout(within):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("child exited")
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    except (TimeoutError, RuntimeError) as failure:
        raise RuntimeError(
            f"no '{prefix}' from child ({failure!r}); log tail:\n{_tail(log_file)}"
        ) from None


async def terminate(process: asyncio.subprocess.Process, within: float = 30.0) -> None:
    """SIGTERM the child and wait; SIGKILL it if it does not stop."""
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(within):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


# -- a run --------------------------------------------------------------------------------


@dataclass
class Scale:
    """How much work each benchmark does (``--quick`` shrinks everything for a smoke run)."""

    gateway_seconds: float = 4.0
    gateway_rounds: int = 3
    gateway_clients: int = 32
    lifecycle_jobs: int = 400
    lifecycle_rounds: int = 3
    #: Also measure settings that would change a figure (e.g. worker concurrency).
    what_if: bool = True
    latency_saturation_jobs: int = 400
    latency_seconds: float = 15.0
    replay_events: int = 1_000_000
    replay_rounds: int = 2
    memory_jobs: int = 1_000_000
    tracemalloc_jobs: int = 100_000
    paragraphs: int = 100
    engine_rounds: int = 3
    job_starts: int = 5
    scaleout_jobs: int = 600


QUICK = Scale(
    gateway_seconds=2.0,
    gateway_rounds=1,
    lifecycle_jobs=100,
    lifecycle_rounds=1,
    what_if=False,
    latency_saturation_jobs=100,
    latency_seconds=4.0,
    replay_events=70_000,
    replay_rounds=1,
    memory_jobs=50_000,
    tracemalloc_jobs=10_000,
    paragraphs=30,
    engine_rounds=1,
    job_starts=2,
    scaleout_jobs=100,
)


@dataclass
class Context:
    bootstrap: str
    work: Path
    scale: Scale
    #: Benchmarks whose "ours" side runs under pyinstrument (profile-<name>.txt in results).
    profile: frozenset[str] = frozenset()
    #: Figures measured earlier in the run, by name (the latency benchmark reads the
    #: lifecycle throughput).
    measured: dict[str, Figure] = field(default_factory=dict)
    #: The broker's process id when this run started it (for its CPU time), else None.
    broker_pid: int | None = None

    def broker_cpu(self) -> float:
        return cpu_seconds(self.broker_pid) if self.broker_pid else math.nan

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"


IDLE = "idle (waiting in epoll)"
_AREAS = (
    ("/aiokafka/", "aiokafka (Kafka client)"),
    ("/pydantic", "pydantic (models, JSON)"),
    ("/structlog/", "structlog (log lines)"),
    ("/logging/", "structlog (log lines)"),
    ("/jwt/", "PyJWT (token check)"),
    ("/cryptography/", "PyJWT (token check)"),
    ("/aiohttp/", "aiohttp (HTTP)"),
    ("/multidict/", "aiohttp (HTTP)"),
    ("/yarl/", "aiohttp (HTTP)"),
    ("/transitions/", "transitions (state machine)"),
    ("/prometheus_client/", "prometheus_client (metrics)"),
    ("/jupyter_client/", "jupyter_client / zmq"),
    ("/zmq/", "jupyter_client / zmq"),
    ("/asyncio/", "asyncio (event loop, tasks)"),
    ("/concurrent/", "threads (to_thread hand-offs)"),
    ("/threading.py", "threads (to_thread hand-offs)"),
    ("/queue.py", "threads (to_thread hand-offs)"),
    ("/pathlib.py", "pathlib"),
    ("/shutil.py", "files (shutil)"),
    ("/json/", "json"),
    ("/uuid.py", "uuid"),
    ("/bench/", "benchmark harness"),
)
_BUILTINS = (
    ("poll", IDLE),
    ("select", IDLE),
    ("send", "socket send/recv (syscalls)"),
    ("recv", "socket send/recv (syscalls)"),
    ("write", "file writes (log lines)"),
    ("print", "file writes (log lines)"),
    ("put", "threads (to_thread hand-offs)"),
    ("validate", "pydantic (models, JSON)"),
    ("to_json", "pydantic (models, JSON)"),
)


def _area(path: str, function: str) -> str:
    for marker, area in _AREAS:
        if marker in path:
            return area
    if path.startswith(str(REPO)):
        return "jobmanager code (worker, adapters, schemas)"
    if "built-in" in path:
        for word, area in _BUILTINS:
            if word in function.lower():
                return area
        return "other built-ins"
    return "other"


def by_area(root: Any, top: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """Self time of a pyinstrument frame tree, summed by library or kind of work (and, in
    ``top``, by function within each area)."""
    areas: dict[str, float] = {}
    stack = [(root, "", "")] if root is not None else []
    while stack:
        frame, path, function = stack.pop()
        if not frame.is_synthetic:  # "[self]" leaves stand for their parent's own time
            path, function = frame.file_path or "", frame.function or ""
        own = frame.time - sum(child.time for child in frame.children)
        if own > 0:
            area = _area(path, function)
            areas[area] = areas.get(area, 0.0) + own
            if top is not None:
                functions = top.setdefault(area, {})
                name = f"{Path(path).name}:{function}" if path != "<built-in>" else function
                functions[name] = functions.get(name, 0.0) + own
        stack.extend((child, path, function) for child in frame.children)
    return areas


@contextlib.contextmanager
def profiled(enabled: bool, name: str) -> Iterator[None]:
    """Run the block under pyinstrument and write ``bench/results/profile-<name>.txt``."""
    if not enabled:
        yield
        return
    from pyinstrument import Profiler  # optional: pip install pyinstrument

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        RESULTS.mkdir(parents=True, exist_ok=True)
        target = RESULTS / f"profile-{name}.txt"
        tree = profiler.output_text(unicode=True, processor_options={"filter_threshold": 0.005})
        session = profiler.last_session
        top: dict[str, dict[str, float]] = {}
        areas = by_area(session.root_frame(trim_stem=False), top) if session else {}
        busy = sum(seconds for area, seconds in areas.items() if area != IDLE) or 1.0

        def leaders(area: str) -> str:
            ranked = sorted(top.get(area, {}).items(), key=lambda item: -item[1])[:3]
            return ", ".join(f"{name} {100 * t / busy:.1f}%" for name, t in ranked)

        table = "\n".join(
            f"{seconds:8.3f} s {100 * seconds / busy:5.1f}%  {area}  [{leaders(area)}]"
            for area, seconds in sorted(areas.items(), key=lambda item: -item[1])
            if area != IDLE and seconds / busy >= 0.005
        )
        idle = areas.get(IDLE, 0.0)
        target.write_text(
            f"Self time by area (share of busy time; idle in epoll {idle:.2f} s):\n"
            f"{table}\n\n{tree}"
        )
        print(f"  profile written to {target.relative_to(REPO)}", flush=True)


async def read_topic(bootstrap: str, topic: str, within: float = 60.0) -> list[Any]:
    """Every record published to ``topic`` so far (a group-less consumer to the end offsets)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no event
                await asyncio.sleep(0.05)
            partitions = sorted(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            while any([await consumer.position(p) < end for p, end in ends.items()]):
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for batch in batches.values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


@contextlib.contextmanager
def kafka_requests() -> Iterator[dict[str, int]]:
    """Count the Kafka requests this process sends, by kind (a diagnostic wrapper around
    aiokafka's connection; requests already in flight are not counted)."""
    from aiokafka.conn import AIOKafkaConnection

    counts: dict[str, int] = {}
    original = AIOKafkaConnection.send

    def send(self: Any, request: Any, expect_response: bool = True) -> Any:
        kind = type(request).__name__.removesuffix("Request")
        counts[kind] = counts.get(kind, 0) + 1
        return original(self, request, expect_response)

    AIOKafkaConnection.send = send  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        AIOKafkaConnection.send = original  # type: ignore[method-assign]


def per_job(counts: dict[str, int], jobs: int) -> str:
    """``Produce 2.9, Fetch 3.6, ...`` per job, the largest first."""
    total = sum(counts.values()) / jobs
    parts = ", ".join(
        f"{kind} {count / jobs:.2f}"
        for kind, count in sorted(counts.items(), key=lambda item: -item[1])
        if count / jobs >= 0.01
    )
    return f"{total:.2f} ({parts})"
