"""Scale-out: two worker processes on one commands topic against one, no-op engine.

Each worker is its own process (``jobmanager worker`` wiring, no-op engine). Once the group's
assignment is settled, this process publishes N SubmitJobs and reads the events topic until
every job is SUCCEEDED; jobs per second from the first publish to the last SUCCEEDED read.
Then every worker reports the jobs its engine started: none may have started twice, and no job
may have two SUCCEEDED events.
"""

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.common import (
    Context,
    Outcome,
    bench_settings,
    cpu_seconds,
    create_topics,
    expect_line,
    figure,
    now,
    prepare_requests,
    produce_commands,
    settings_to_json,
    spawn,
    submit_command,
    terminate,
)
from worker.settings import Settings

TIMEOUT = 180.0
PARTITIONS = Settings.model_fields["topic_partitions"].default


async def settled(processes: list[asyncio.subprocess.Process], partitions: int, log: Path) -> None:
    """Wait until the workers' latest assignments are disjoint, non-empty and cover all."""
    latest: dict[int, frozenset[int]] = {}

    async def follow(index: int, process: asyncio.subprocess.Process) -> None:
        while True:
            line = await expect_line(process, "assigned", TIMEOUT, log)
            latest[index] = frozenset(int(p) for p in line.split(",") if p)

    followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(processes)]
    try:
        async with asyncio.timeout(90):
            while True:
                sets = list(latest.values())
                union = frozenset().union(*sets) if sets else frozenset()
                if (
                    len(sets) == len(processes)
                    and all(sets)
                    and sum(len(s) for s in sets) == partitions == len(union)
                ):
                    return
                for follower in followers:
                    if follower.done():
                        follower.result()
                await asyncio.sleep(0.05)
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


@dataclass
class ScaleRun:
    rate: float  # jobs per second
    twice: int  # jobs whose engine started more than once
    extra: int  # SUCCEEDED events beyond one per job
    worker_cpu_ms: float  # CPU per job, all worker processes together
    broker_cpu_ms: float  # CPU per job in the broker
    busy: float  # share of the machine's cores busy with workers and broker


async def one_run(ctx: Context, workers: int) -> ScaleRun:
    """``workers`` processes on one commands topic."""
    jobs = ctx.scale.scaleout_jobs
    settings = bench_settings(ctx.bootstrap, ctx.work, f"scaleout{workers}")
    await create_topics(settings)
    commands = [submit_command(r) for r in prepare_requests(settings, jobs)]
    log = ctx.log(f"scaleout-{workers}")
    outputs = [ctx.work / f"scaleout{workers}-started-{i}.json" for i in range(workers)]
    processes = [
        await spawn("worker", {"settings": settings_to_json(settings), "started": str(out)}, log)
        for out in outputs
    ]
    tail = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    succeeded: Counter[str] = Counter()
    try:
        await settled(processes, settings.topic_partitions, log)
        await tail.start()
        async with asyncio.timeout(30):
            while not tail.assignment():  # noqa: ASYNC110 - aiokafka has no event
                await asyncio.sleep(0.05)
        cpu = sum(cpu_seconds(p.pid) for p in processes)
        broker = ctx.broker_cpu()
        began = now()
        await produce_commands(settings.kafka_bootstrap_servers, settings.commands_topic, commands)
        last = began
        async with asyncio.timeout(TIMEOUT):
            while len(succeeded) < jobs:
                batches = await tail.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        event = json.loads(record.value)
                        if event["type"] == "JobStatusChanged" and event["status"] == "SUCCEEDED":
                            succeeded[event["jobId"]] += 1
                            last = now()
        cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu
        broker = ctx.broker_cpu() - broker
        # A moment for late duplicates to show up before counting them.
        await asyncio.sleep(1.0)
        for records in (await tail.getmany(timeout_ms=500)).values():
            for record in records:
                event = json.loads(record.value)
                if event["type"] == "JobStatusChanged" and event["status"] == "SUCCEEDED":
                    succeeded[event["jobId"]] += 1
    finally:
        await tail.stop()
        for process in processes:
            await terminate(process)
    started: Counter[str] = Counter()
    for out in outputs:
        started.update(json.loads(out.read_text()))
    twice = sum(1 for count in started.values() if count > 1)
    extra = sum(count - 1 for count in succeeded.values())
    if set(started) != {c.job_id for c in commands}:
        raise RuntimeError(f"{len(set(started))} of {jobs} jobs were started")
    elapsed = last - began
    return ScaleRun(
        jobs / elapsed,
        twice,
        extra,
        cpu / jobs * 1e3,
        broker / jobs * 1e3,
        (cpu + broker) / (elapsed * (os.cpu_count() or 1)),
    )


async def run(ctx: Context) -> Outcome:
    outcome = Outcome()
    one = await one_run(ctx, 1)
    two = await one_run(ctx, 2)
    outcome.figures.append(
        figure("scale-out: 2 worker processes vs 1", two.rate, one.rate, "jobs/s", None)
    )
    outcome.figures.append(
        figure(
            "scale-out: jobs run twice (2 workers)",
            two.twice + two.extra,
            None,
            "jobs",
            "ours == 0",
        )
    )
    outcome.note(
        f"{ctx.scale.scaleout_jobs} jobs per run, {PARTITIONS} partitions; engine started twice: "
        f"{one.twice} (1 worker), {two.twice} (2 workers); SUCCEEDED events beyond one per job: "
        f"{one.extra}, {two.extra}."
    )
    for label, run_ in (("1 worker", one), ("2 workers", two)):
        outcome.note(
            f"{label}: CPU per job {run_.worker_cpu_ms:.1f} ms in the worker(s), "
            f"{run_.broker_cpu_ms:.1f} ms in the broker; workers + broker kept "
            f"{100 * run_.busy:.0f}% of the {os.cpu_count()} cores busy."
        )
    return outcome
