"""The allowed moves of a job, as data. The worker, the docs and the tests all read this table."""

from typing import Final, NamedTuple

from schemas.status import JobStatus

S = JobStatus


class Move(NamedTuple):
    """One allowed move: ``trigger`` takes a job from ``source`` to ``dest``."""

    trigger: str
    source: JobStatus
    dest: JobStatus
    why: str


TRANSITIONS: Final[tuple[Move, ...]] = (
    Move("start", S.SUBMITTED, S.STARTING, "worker picks the job up"),
    Move("stop", S.SUBMITTED, S.STOPPING, "stop requested"),
    Move("fail", S.SUBMITTED, S.FAILED, "inputs invalid"),
    Move("run", S.STARTING, S.RUNNING, "environment up, note started"),
    Move("stop", S.STARTING, S.STOPPING, "stop requested"),
    Move("abort", S.STARTING, S.STOPPING, "fatal error needing cleanup"),
    Move("fail", S.STARTING, S.FAILED, "environment could not start"),
    Move("succeed", S.RUNNING, S.SUCCEEDED, "all paragraphs succeeded, outputs stored"),
    Move("stop", S.RUNNING, S.STOPPING, "stop requested"),
    Move("abort", S.RUNNING, S.STOPPING, "timeout or fatal error"),
    Move("fail", S.RUNNING, S.FAILED, "a paragraph failed"),
    Move("stopped", S.STOPPING, S.STOPPED, "user stop finished"),
    Move("fail", S.STOPPING, S.FAILED, "stopping after a fatal error or timeout"),
)

TRIGGERS: Final[tuple[str, ...]] = tuple(dict.fromkeys(move.trigger for move in TRANSITIONS))

FINAL_STATUSES: Final[frozenset[JobStatus]] = frozenset(
    status for status in JobStatus if not any(move.source is status for move in TRANSITIONS)
)
