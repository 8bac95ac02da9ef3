"""Run the benchmarks: ``python -m bench`` or ``python bench/run.py`` from the repository root.

Starts its own Kafka broker (``deploy/kafka``, free ports, a temporary data dir) unless
``--bootstrap`` names one, runs the benchmarks, then stops and deletes the broker. A full run
writes ``bench/results/latest.json`` (the list of figures) with ``latest-details.json`` (how
each was measured, notes) and regenerates ``docs/PERFORMANCE.md``; a ``--quick`` or ``--only``
run writes ``bench/results/partial.json`` and leaves the page alone.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    b_engine,
    b_gateway,
    b_latency,
    b_lifecycle,
    b_memory,
    b_replay,
    b_scaleout,
)
from bench.common import (
    QUICK,
    RESULTS,
    Context,
    Figure,
    Scale,
    configure_production_logging,
    figures_json,
    own_broker,
)
from bench.report import write as write_page

BENCHMARKS = {
    "gateway": ("Gateway POST /jobs throughput", b_gateway),
    "lifecycle": ("Worker lifecycle throughput", b_lifecycle),
    "latency": ("Latency submit -> RUNNING visible", b_latency),
    "replay": ("Projection replay", b_replay),
    "memory": ("Projection memory per job", b_memory),
    "engine": ("Embedded engine", b_engine),
    "scaleout": ("Scale-out", b_scaleout),
}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument(
        "--only", help=f"comma-separated subset of: {','.join(BENCHMARKS)}", default=""
    )
    parser.add_argument("--quick", action="store_true", help="small scale (a smoke run)")
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated: gateway, lifecycle, latency, replay, paragraph, job-start "
        "(needs pyinstrument; profiles slow the measured side down)",
    )
    return parser.parse_args(argv)


def _machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


#: The whole run (broker included) must stay under 10 minutes: a benchmark is given at most
#: this long, and none is started once the run is past ``DEADLINE_SECONDS``.
BENCHMARK_SECONDS = 240.0
DEADLINE_SECONDS = 480.0


async def _run_all(
    ctx: Context, names: list[str], began: float
) -> tuple[list[Figure], list[dict], list[str]]:
    figures: list[Figure] = []
    sections: list[dict] = []
    failed: list[str] = []
    for name in names:
        title, module = BENCHMARKS[name]
        print(f"== {title}", flush=True)
        started = time.monotonic()
        try:
            if started - began > DEADLINE_SECONDS:
                raise TimeoutError(f"not started: the run is past {DEADLINE_SECONDS:.0f} s")
            async with asyncio.timeout(BENCHMARK_SECONDS):
                outcome = await module.run(ctx)
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            sections.append({"title": title, "method": module.__doc__ or "", "notes": ["FAILED"]})
            continue
        figures += outcome.figures
        seconds = time.monotonic() - started
        print(f"   ({seconds:.0f} s)", flush=True)
        sections.append(
            {
                "title": title,
                "method": module.__doc__ or "",
                "notes": [*outcome.notes, f"took {seconds:.0f} s"],
            }
        )
    return figures, sections, failed


def _terminated(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmarks: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    scale = QUICK if args.quick else Scale()
    full = not args.quick and names == list(BENCHMARKS)
    profile = frozenset(p.strip() for p in args.profile.split(",") if p.strip())
    started = time.monotonic()
    # A terminated run (make interrupted, CI time-out) still stops its broker and children.
    signal.signal(signal.SIGTERM, _terminated)
    work = Path(tempfile.mkdtemp(prefix="jobmanager-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    configure_production_logging(work / "logs" / "bench.log")
    try:
        if args.bootstrap:
            ctx = Context(args.bootstrap, work, scale, profile)
            figures, sections, failed = asyncio.run(_run_all(ctx, names, started))
        else:
            with own_broker(work / "kafka") as bootstrap:
                pid_file = work / "kafka" / "kafka.pid"
                pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
                print(f"broker {bootstrap} (pid {pid})", flush=True)
                ctx = Context(bootstrap, work, scale, profile, broker_pid=pid)
                figures, sections, failed = asyncio.run(_run_all(ctx, names, started))
    finally:
        logs = RESULTS / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        if (work / "logs").exists():
            shutil.copytree(work / "logs", logs)
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    details = {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "seconds": seconds,
        "scale": "quick" if args.quick else "full",
        "scale_parameters": asdict(scale),
        "benchmarks": names,
        "failed": failed,
        "sections": sections,
    }
    stem = "latest" if full else "partial"
    (RESULTS / f"{stem}.json").write_text(figures_json(figures))
    (RESULTS / f"{stem}-details.json").write_text(json.dumps(details, indent=2) + "\n")
    if full and not failed:
        write_page([asdict(f) for f in figures], details)
        print("wrote docs/PERFORMANCE.md", flush=True)
    met = [f for f in figures if f.met is True]
    unmet = [f for f in figures if f.met is False]
    print(
        f"done in {seconds:.0f} s: {len(met)} targets met, {len(unmet)} not met"
        + (f" ({', '.join(f.name for f in unmet)})" if unmet else "")
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
        + f"; results in bench/results/{stem}.json",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
