"""Projection memory per job: the in-memory store holding N realistic job records.

Each job's record is what a replay leaves: its record after six events (six timeline entries)
then its SUCCEEDED event folded by ``Projection.apply`` from the event's bytes, with distinct
job, configuration and event ids and one model and folder pair, into the production store
(``MemoryProjectionStore`` with its 90-day retention), in a fresh process: RSS growth / N at
full scale, and the tracemalloc count on a smaller sample.
"""

import json
import sys

from bench.common import REPO, Context, Outcome, figure

NAME = "projection memory per job"


async def measure(ctx: Context, jobs: int, traced: bool) -> dict[str, float]:
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.procs",
        "memory",
        json.dumps({"jobs": jobs, "traced": traced}),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    for line in out.decode().splitlines():
        if line.startswith("result "):
            result: dict[str, float] = json.loads(line[len("result ") :])
            return result
    raise RuntimeError(f"memory child failed ({process.returncode}): {err.decode()[-2000:]}")


async def run(ctx: Context) -> Outcome:
    outcome = Outcome()
    jobs = ctx.scale.memory_jobs
    sample = ctx.scale.tracemalloc_jobs
    full = await measure(ctx, jobs, traced=False)
    traced = await measure(ctx, sample, traced=True)
    outcome.figures.append(
        figure(f"{NAME} ({jobs:,} jobs)", full["rss_per_job"], None, "bytes", "ours <= 550")
    )
    outcome.note(
        f"RSS growth per job at {jobs:,} jobs: {full['rss_per_job']:.0f} B; tracemalloc at "
        f"{sample:,} jobs: {traced['traced_per_job']:.0f} B. Final jobs without paragraph "
        "results, each with its 7-entry timeline; every finished paragraph adds its "
        "ParagraphResult (output included) on top. Records of jobs still moving are kept "
        "uncompacted (about 3 KB with a timeline), as they change with every event; there are "
        "at most as many as jobs in flight."
    )
    outcome.note(
        "before the compact final record (last run without it, records without timelines): "
        "2212 B RSS per job at 1,000,000 jobs."
    )
    return outcome
