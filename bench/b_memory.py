"""Projection memory per job: the in-memory store holding N realistic job records.

Each job's record is folded from its final SUCCEEDED event exactly as a replay leaves it
(``Projection.apply`` of ``EVENTS.validate_json``), with distinct job, configuration and event
ids and one model and folder pair, in a fresh process: RSS growth / N at full scale, and the
tracemalloc count on a smaller sample. The prototype of the proposed compact record
(``bench.prototypes.CompactProjectionStore``) is measured the same way.
"""

import json
import sys

from bench.common import REPO, Context, Outcome, figure

NAME = "projection memory per job"


async def measure(ctx: Context, store: str, jobs: int, traced: bool) -> dict[str, float]:
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.procs",
        "memory",
        json.dumps({"jobs": jobs, "traced": traced, "store": store}),
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
    full = await measure(ctx, "memory", jobs, traced=False)
    traced = await measure(ctx, "memory", sample, traced=True)
    compact = await measure(ctx, "compact", jobs, traced=False)
    compact_traced = await measure(ctx, "compact", sample, traced=True)
    outcome.figures.append(
        figure(f"{NAME} ({jobs:,} jobs)", full["rss_per_job"], None, "bytes", "ours <= 550")
    )
    outcome.note(
        f"RSS growth per job at {jobs:,} jobs: {full['rss_per_job']:.0f} B; tracemalloc at "
        f"{sample:,} jobs: {traced['traced_per_job']:.0f} B. Records of jobs without paragraph "
        "results; every finished paragraph adds its ParagraphResult (output included) on top."
    )
    outcome.note(
        f"prototype CompactProjectionStore (bench/prototypes.py): {compact['rss_per_job']:.0f} B "
        f"RSS at {jobs:,} jobs, {compact_traced['traced_per_job']:.0f} B tracemalloc."
    )
    return outcome
