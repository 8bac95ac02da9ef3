"""Command handlers, registered in one dict.

A handler returns the task that finishes the command's work when that outlives the handler
(a job run), so the consumer commits the command's offset only once the job is final.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from schemas.commands import StopJob, SubmitJob
from worker.jobs import JobRunner

Handler = Callable[[Any, JobRunner], Awaitable["asyncio.Task[None] | None"]]


async def submit_job(command: SubmitJob, runner: JobRunner) -> "asyncio.Task[None]":
    return await runner.submit(command)


async def stop_job(command: StopJob, runner: JobRunner) -> None:
    await runner.stop(command)


COMMAND_HANDLERS: dict[type, Handler] = {
    SubmitJob: submit_job,
    StopJob: stop_job,
}
