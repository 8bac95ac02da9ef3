"""Failpoints, for the reliability tests only: kill this process at a named point of a job.

``JOBMANAGER_FAILPOINTS=after_starting_published:kill,storing_outputs:kill`` is read once, at
import. Unset (always, outside those tests), :func:`reach` is a dictionary lookup that does
nothing. ``kill`` is SIGKILL to the process itself: no cleanup runs, as in a real crash.
"""

import os
import signal
from typing import Final, Literal

import structlog

log = structlog.get_logger(__name__)

Point = Literal[
    "command_received",
    "after_starting_published",
    "after_running_published",
    "after_stopping_published",
    "storing_outputs",
]

ENV: Final = "JOBMANAGER_FAILPOINTS"


def _parse(spec: str) -> frozenset[str]:
    points = set()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition(":")
        if action != "kill":
            raise SystemExit(f"{ENV}: unknown action {action!r} for {name!r} (only 'kill')")
        points.add(name)
    return frozenset(points)


_ARMED: Final = _parse(os.environ.get(ENV, ""))


def armed(point: Point) -> bool:
    return point in _ARMED


def reach(point: Point) -> None:
    """Kill the process here if the failpoint ``point`` is armed."""
    if point in _ARMED:
        log.warning("failpoint reached; killing the process", failpoint=point)
        os.kill(os.getpid(), signal.SIGKILL)
