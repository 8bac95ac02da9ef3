"""Worker lifecycle throughput: SubmitJob to SUCCEEDED with a no-op engine.

Ours: the worker built as ``worker.bootstrap`` builds it (in this process), commands
pre-loaded on its topic; the clock runs from the partition assignment to the last job's
SUCCEEDED in the worker's ledger.
Baseline: a raw aiokafka loop with the same consumer and producer settings that, per command,
decodes it and produces the same messages (7 events and the environment claim and release)
with the same waits the worker must keep: SUBMITTED and the claim together, the four events up
to RUNNING pipelined, then STORING, SUCCEEDED and the release each acknowledged before the
next; with as many jobs in flight as the worker's default concurrency (4). The same loop with
every fetched job in flight is reported too: it lets the producer batch across jobs and shows
the client and broker ceiling.
"""

import asyncio
import json
from collections import defaultdict, deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from bench.common import (
    Context,
    Outcome,
    bench_settings,
    create_topics,
    figure,
    kafka_requests,
    now,
    own_cpu,
    per_job,
    prepare_requests,
    produce_commands,
    profiled,
    raw_producer,
    submit_command,
)
from bench.compose import NoopEngine, running_service
from bench.samples import Template
from schemas.status import JobStatus
from worker.settings import Settings

NAME = "worker lifecycle throughput"
#: The worker's default concurrency; the baseline keeps as many jobs in flight.
PARALLEL = Settings.model_fields["worker_concurrency"].default
TIMEOUT = 180.0


@dataclass
class Run:
    rate: float  # jobs per second
    cpu_ms: float  # CPU of this process per job
    broker_cpu_ms: float  # CPU of the broker per job
    requests: str  # Kafka requests per job, by kind


async def ours(ctx: Context, jobs: int, profile: bool, concurrency: int = 4) -> tuple[Run, int]:
    """The run, and the events each job published."""
    settings = bench_settings(ctx.bootstrap, ctx.work, "lifecycle", worker_concurrency=concurrency)
    await create_topics(settings)
    commands = [submit_command(r) for r in prepare_requests(settings, jobs)]
    await produce_commands(settings.kafka_bootstrap_servers, settings.commands_topic, commands)
    assigned: list[float] = []
    engine = NoopEngine()
    async with running_service(
        settings,
        worker={"local": engine},
        gateway=None,
        on_assigned=lambda _: assigned.append(now()),
    ) as service:
        cpu, broker = own_cpu(), ctx.broker_cpu()
        with profiled(profile, "lifecycle"), kafka_requests() as requests:
            waiting = asyncio.create_task(service.projection.wait_final(jobs, TIMEOUT))
            while not waiting.done():
                service.check()
                await asyncio.sleep(0.05)
            waiting.result()
        cpu, broker = own_cpu() - cpu, ctx.broker_cpu() - broker
        projection = service.projection
        elapsed = max(projection.final_at.values()) - assigned[0]
        statuses = set(projection.final_status.values())
        if statuses != {JobStatus.SUCCEEDED}:
            raise RuntimeError(f"jobs ended {statuses}, expected SUCCEEDED only")
        sequences = {projection.store.record(c.job_id).sequence for c in commands}  # type: ignore[union-attr]
    if len(sequences) != 1:
        raise RuntimeError(f"jobs published different event counts: {sequences}")
    run = Run(jobs / elapsed, cpu / jobs * 1e3, broker / jobs * 1e3, per_job(requests, jobs))
    return run, sequences.pop()


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.at: list[float] = []

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.at.append(now())


async def baseline(ctx: Context, jobs: int, template: Template, parallel: int | None) -> Run:
    """The raw loop's run, with at most ``parallel`` jobs in flight (None: no limit)."""
    settings = bench_settings(ctx.bootstrap, ctx.work, "lifecycle-raw")
    await create_topics(settings)
    commands = [submit_command(template.request) for _ in range(jobs)]
    await produce_commands(settings.kafka_bootstrap_servers, settings.commands_topic, commands)
    bootstrap = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=100,
    )
    listener = _Assigned()
    consumer.subscribe([settings.commands_topic], listener=listener)
    producer = raw_producer(bootstrap)
    await producer.start()
    await consumer.start()
    first, *middle = template.events
    claim, release = template.claims
    events, claims = settings.events_topic, settings.environments_topic
    finished: list[float] = []
    done: dict[TopicPartition, set[int]] = defaultdict(set)
    seen: dict[TopicPartition, deque[int]] = defaultdict(deque)

    slots = asyncio.Semaphore(parallel or jobs)

    async def job(partition: TopicPartition, offset: int, raw: bytes) -> None:
        try:
            await produce(partition, offset, raw)
        finally:
            slots.release()

    async def produce(partition: TopicPartition, offset: int, raw: bytes) -> None:
        command = json.loads(raw)
        key = command["jobId"].encode()
        lock = f"{command['tenant']}/{command['request']['configurationId']}".encode()
        await asyncio.gather(
            producer.send_and_wait(events, value=first, key=key),
            producer.send_and_wait(claims, value=claim, key=lock),
        )
        *pipelined, storing, final = middle
        queued = [await producer.send(events, value=value, key=key) for value in pipelined]
        await asyncio.gather(*queued)
        for value in (storing, final):
            await producer.send_and_wait(events, value=value, key=key)
        await producer.send_and_wait(claims, value=release, key=lock)
        done[partition].add(offset)
        finished.append(now())

    async def commit() -> None:
        """Commit, per partition, up to the first command whose job is not done."""
        offsets = {}
        for partition, pending in seen.items():
            finished_here = done[partition]
            while pending and pending[0] in finished_here:
                finished_here.discard(offset := pending.popleft())
                offsets[partition] = offset + 1
            if partition in offsets and pending:
                offsets[partition] = pending[0]
        if offsets:
            await consumer.commit(offsets)

    tasks: list[asyncio.Task[None]] = []
    cpu, broker = own_cpu(), ctx.broker_cpu()
    try:
        with kafka_requests() as requests:
            async with asyncio.timeout(TIMEOUT):
                while len(finished) < jobs:
                    batches = await consumer.getmany(timeout_ms=200)
                    for partition, records in batches.items():
                        for record in records:
                            seen[partition].append(record.offset)
                            await slots.acquire()
                            tasks.append(
                                asyncio.create_task(job(partition, record.offset, record.value))
                            )
                    await commit()
                await asyncio.gather(*tasks)
                await consumer.commit()
        cpu, broker = own_cpu() - cpu, ctx.broker_cpu() - broker
    finally:
        await consumer.stop()
        await producer.stop()
    rate = jobs / (max(finished) - listener.at[0])
    return Run(rate, cpu / jobs * 1e3, broker / jobs * 1e3, per_job(requests, jobs))


async def run(ctx: Context) -> Outcome:
    outcome = Outcome()
    jobs = ctx.scale.lifecycle_jobs
    rounds = ctx.scale.lifecycle_rounds
    template = await Template.make()
    best_ours: Run | None = None
    best_raw: Run | None = None
    for round_ in range(rounds):
        mine, events = await ours(ctx, jobs, "lifecycle" in ctx.profile and round_ == 0)
        raw = await baseline(ctx, jobs, template, PARALLEL)
        if events != len(template.events):
            raise RuntimeError(f"{events} events per job, the template has {len(template.events)}")
        if best_ours is None or mine.rate > best_ours.rate:
            best_ours = mine
        if best_raw is None or raw.rate > best_raw.rate:
            best_raw = raw
    assert best_ours is not None
    assert best_raw is not None
    ctx.measured[NAME] = figure(NAME, best_ours.rate, best_raw.rate, "jobs/s", "ratio >= 0.4")
    outcome.figures.append(ctx.measured[NAME])
    outcome.note(
        f"{jobs} jobs, each with its own configuration, best of {rounds} rounds; 7 events + "
        f"claim + release per job. Ours: worker_concurrency {PARALLEL} (the default). Baseline: "
        f"{PARALLEL} jobs in flight, with the waits the worker must keep (SUBMITTED with the "
        "claim, then the events to RUNNING pipelined, then STORING, SUCCEEDED and the release "
        "one by one). Production logging on."
    )
    ceiling = await baseline(ctx, jobs, template, None)
    outcome.note(
        "raw loop with every fetched job in flight (the producer then batches across jobs): "
        f"{ceiling.rate:.0f} jobs/s, {ceiling.rate / best_ours.rate:.0f}x ours - the client and "
        "broker ceiling on this machine."
    )
    runs = (("ours", best_ours), ("baseline", best_raw), ("unbounded raw", ceiling))
    for label, best in runs:
        outcome.note(
            f"{label}: CPU per job {best.cpu_ms:.2f} ms in this process, "
            f"{best.broker_cpu_ms:.2f} ms in the broker; Kafka requests per job {best.requests}"
        )
    if ctx.scale.what_if:
        wider = 16
        mine, _ = await ours(ctx, jobs, False, wider)
        raw = await baseline(ctx, jobs, template, wider)
        outcome.note(
            f"what-if JOBMANAGER_WORKER_CONCURRENCY={wider}: ours {mine.rate:.0f} jobs/s, baseline "
            f"with {wider} in flight {raw.rate:.0f} jobs/s (ratio {mine.rate / raw.rate:.2f}); "
            f"Kafka requests per job {mine.requests}"
        )
    return outcome
