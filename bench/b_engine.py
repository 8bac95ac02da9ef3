"""The embedded engine (``adapters.engine_local``) against bare ``jupyter_client``.

Per-paragraph overhead: ours runs a note of N Python paragraphs in a started
``LocalNoteSession``; the baseline sends the same code with a bare ``AsyncKernelClient``
(execute, IOPub until idle, shell reply) to a kernel started the same way (same argv with the
history database off, ipc transport), so the ratio is the engine's own cost per paragraph.

Job start: ours is SUBMITTED -> RUNNING of a job on the worker (built as bootstrap builds it)
with the embedded engine, from publishing its SubmitJob to RUNNING in the ledger; the baseline
is a bare kernel start and first execute of the same code.
"""

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from adapters.engine_local import LocalNoteEngine
from adapters.kafka import KafkaCommandPublisher
from bench.common import (
    Context,
    Outcome,
    bench_settings,
    create_topics,
    figure,
    median,
    now,
    prepare_requests,
    profiled,
    submit_command,
)
from bench.compose import running_service
from schemas.jobs import EnvironmentConfiguration
from schemas.notes import Note, Paragraph, ParagraphResult, ParagraphStatus

FIRST_CODE = "print(1)"  # the benchmark note's one paragraph (bench.common.NOTE)


def code(i: int) -> str:
    return f"v = {i} * 2\nprint(v)"


def note(count: int, offset: int = 0) -> Note:
    return Note(
        id="bench",
        name="bench",
        default_interpreter_group="python",
        paragraphs=tuple(
            Paragraph(
                index=i, id=f"p{i}", title=None, text=f"%python\n{code(offset + i)}", enabled=True
            )
            for i in range(count)
        ),
    )


class _SameKernel(KernelSpecManager):
    """The kernel the engine starts: this interpreter, ipykernel, no history database."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[
                sys.executable,
                "-m",
                "ipykernel_launcher",
                "-f",
                "{connection_file}",
                "--HistoryManager.enabled=False",
            ],
            display_name="bench",
            language="python",
            interrupt_mode="signal",
        )


@contextlib.asynccontextmanager
async def bare_kernel(runtime: Path) -> AsyncIterator[AsyncKernelClient]:
    manager = AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=_SameKernel(),
        transport="ipc",
        ip=str(runtime / "kernel"),
        connection_file=str(runtime / "kernel.json"),
    )
    await manager.start_kernel(cwd=str(runtime))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


async def bare_execute(client: AsyncKernelClient, source: str) -> dict[str, Any]:
    msg_id = client.execute(source, store_history=True, stop_on_error=False)
    while True:
        message = await client.get_iopub_msg()
        if (
            message["parent_header"].get("msg_id") == msg_id
            and message["msg_type"] == "status"
            and message["content"]["execution_state"] == "idle"
        ):
            break
    while True:
        reply: dict[str, Any] = await client.get_shell_msg()
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


async def bare_start(runtime: Path) -> float:
    """Seconds to start a kernel and get the reply to a first execute: the execute is sent at
    once (ZeroMQ queues it until the kernel listens), so no readiness polling is counted
    (``wait_for_ready`` would add ~0.2 s and flatter ours)."""
    manager = AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=_SameKernel(),
        transport="ipc",
        ip=str(runtime / "kernel"),
        connection_file=str(runtime / "kernel.json"),
    )
    began = now()
    await manager.start_kernel(cwd=str(runtime))
    client = manager.client()
    client.start_channels()
    try:
        msg_id = client.execute(FIRST_CODE, store_history=True, stop_on_error=False)
        async with asyncio.timeout(60):
            while True:
                reply = await client.get_shell_msg()
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        elapsed = now() - began
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"first execute failed: {reply['content']}")
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    return elapsed


async def paragraphs(ctx: Context, outcome: Outcome) -> None:
    count, rounds = ctx.scale.paragraphs, ctx.scale.engine_rounds
    work = Path(tempfile.mkdtemp(prefix="engine-", dir=ctx.work))
    configuration = EnvironmentConfiguration(id="bench", name="bench")
    variables = {"jobId": "bench", "inputFolder": "", "outputFolder": "", "datasetName": ""}

    async def listener(_: ParagraphResult) -> None:
        return None

    session = await LocalNoteEngine().start(work, variables, configuration)
    ours: list[float] = []
    raw: list[float] = []
    try:
        async with bare_kernel(work) as client:
            await session.run(note(5), listener)  # warm-up, both sides
            for i in range(5):
                await bare_execute(client, code(i))
            for r in range(rounds):
                with profiled("paragraph" in ctx.profile and r == 0, "paragraph"):
                    began = now()
                    run = await session.run(note(count, r * count), listener)
                    ours.append((now() - began) / count)
                if {p.status for p in run.paragraphs} != {ParagraphStatus.FINISHED}:
                    raise RuntimeError(f"paragraphs did not finish: {run.failure_summary()}")
                began = now()
                for i in range(count):
                    reply = await bare_execute(client, code(r * count + i))
                    if reply["content"]["status"] != "ok":
                        raise RuntimeError(f"bare execute failed: {reply['content']}")
                raw.append((now() - began) / count)
    finally:
        await session.close()
    outcome.figures.append(
        figure(
            "embedded engine time per paragraph",
            min(ours) * 1000,
            min(raw) * 1000,
            "ms",
            "ratio <= 1.2",
        )
    )
    outcome.note(
        f"{count} two-line Python paragraphs with output, best of {rounds} rounds, kernels "
        "started identically (same argv, ipc); ours includes ParagraphResult building."
    )


async def job_start(ctx: Context, outcome: Outcome) -> None:
    jobs = ctx.scale.job_starts
    settings = bench_settings(ctx.bootstrap, ctx.work, "job-start")
    await create_topics(settings)
    requests = prepare_requests(settings, jobs + 1)  # the first one warms up
    ours: list[float] = []
    raw: list[float] = []
    runtime = Path(tempfile.mkdtemp(prefix="kernel-", dir=ctx.work))
    async with running_service(
        settings, worker={"local": LocalNoteEngine()}, gateway=None
    ) as service:
        publisher = KafkaCommandPublisher(service.producer, settings.commands_topic)
        projection = service.projection
        for i, request in enumerate(requests):
            command = submit_command(request)
            with profiled("job-start" in ctx.profile and i == 1, "job-start"):
                began = now()
                await publisher.publish(command)
                async with asyncio.timeout(120):
                    while command.job_id not in projection.running_at:
                        service.check()
                        await asyncio.sleep(0.005)
            if i > 0:
                ours.append(projection.running_at[command.job_id] - began)
            await projection.wait_final(i + 1, 120)
            if projection.final_status[command.job_id] != "SUCCEEDED":
                record = projection.store.record(command.job_id)
                raise RuntimeError(f"job did not succeed: {record}")
            started = await bare_start(runtime)
            if i > 0:
                raw.append(started)
    outcome.figures.append(
        figure(
            "job start SUBMITTED -> RUNNING (embedded engine)",
            median(ours) * 1000,
            median(raw) * 1000,
            "ms",
            "ratio <= 1.5",
        )
    )
    outcome.note(
        f"median of {jobs} jobs run one at a time (after one warm-up job), alternating with "
        "bare kernel starts; ours "
        "includes the Kafka round trips, the claim, validation, workspace and the z set-up."
    )


async def run(ctx: Context) -> Outcome:
    outcome = Outcome()
    await paragraphs(ctx, outcome)
    await job_start(ctx, outcome)
    return outcome
