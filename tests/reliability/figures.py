"""Figures the reliability tests record; ``tests.reliability.report`` turns them into docs.

Each test calls :func:`record` with counts it measured (never constants). The last run's
figures live under ``.last-run/`` (ignored by git), one JSON file per test, so a partial run
updates only the properties it exercised.
"""

import json
import os
import re
from pathlib import Path

LAST_RUN = Path(__file__).resolve().parent / ".last-run"

# The eleven properties of the reliability suite, in the order the docs list them.
PROPERTIES: dict[str, str] = {
    "P1": "No accepted job lost (SIGKILL at each point of a job's life)",
    "P2": "Exactly one terminal event per job, strictly increasing sequences",
    "P3": "Only legal moves, ever (model-checked)",
    "P4": "Broker restart under load",
    "P5": "Poison input goes to the dead-letter topic",
    "P6": "Projection rebuild equals the live projection",
    "P7": "Time limits survive worker restarts",
    "P8": "Zombie fencing",
    "P9": "Graceful shutdown",
    "P10": "Hostile HTTP input and tenant isolation",
    "P11": "Backpressure",
}


def record(prop: str, test: str, **counts: int | float | str) -> None:
    """Store what one test measured for property ``prop`` (e.g. ``"P1"``)."""
    if prop not in PROPERTIES:
        raise ValueError(f"unknown property {prop!r}")
    LAST_RUN.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{prop}-{test}")
    entry = {"property": prop, "test": test, "counts": counts, "pid": os.getpid()}
    (LAST_RUN / f"{name}.json").write_text(json.dumps(entry, indent=2, sort_keys=True))


def recorded() -> list[dict[str, object]]:
    if not LAST_RUN.is_dir():
        return []
    return [json.loads(path.read_text()) for path in sorted(LAST_RUN.glob("*.json"))]
