"""One shared ``transitions`` machine that validates every move of every job.

A ``Machine`` per job costs ~20 KiB and ``add_model`` ~180 µs, so jobs are not attached to it:
a single cursor model is set to the job's current status and triggered, which costs a few µs.
"""

from typing import Any

from transitions import Machine, MachineError

from schemas.status import JobStatus
from statemachine.table import TRANSITIONS


class IllegalMove(Exception):
    """A trigger that the table does not allow from the job's current status."""

    def __init__(self, job_id: str, status: JobStatus, trigger: str) -> None:
        super().__init__(f"job {job_id}: '{trigger}' is not allowed in status {status}")
        self.job_id = job_id
        self.status = status
        self.trigger = trigger


class _Cursor:
    """The one model bound to the machine; ``transitions`` adds the trigger methods to it."""

    state: str
    trigger: Any


class JobMachine:
    """Validates moves against :data:`statemachine.table.TRANSITIONS`.

    Not safe for use from several threads; the worker is single-threaded asyncio and nothing
    awaits between ``set_state`` and the trigger.
    """

    def __init__(self) -> None:
        self._cursor = _Cursor()
        self._machine = Machine(
            model=self._cursor,
            states=[status.value for status in JobStatus],
            transitions=[
                {"trigger": m.trigger, "source": m.source.value, "dest": m.dest.value}
                for m in TRANSITIONS
            ],
            initial=JobStatus.SUBMITTED.value,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )

    def next_status(self, job_id: str, status: JobStatus, trigger: str) -> JobStatus:
        """The status ``trigger`` leads to from ``status``; raises :class:`IllegalMove`."""
        self._machine.set_state(status.value, model=self._cursor)
        try:
            self._cursor.trigger(trigger)
        except (MachineError, AttributeError) as refused:
            raise IllegalMove(job_id, status, trigger) from refused
        return JobStatus(self._cursor.state)
