"""The job state machine: the transition table as data and one shared ``transitions`` machine."""

from statemachine.machine import IllegalMove, JobMachine
from statemachine.table import FINAL_STATUSES, TRANSITIONS, TRIGGERS, Move

__all__ = ["FINAL_STATUSES", "TRANSITIONS", "TRIGGERS", "IllegalMove", "JobMachine", "Move"]
