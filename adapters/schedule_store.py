"""The schedule store: every tenant's schedules and the scheduler's bookkeeping, in memory.

Folded from the compacted schedules topic at start-up and kept current while the process runs,
so it holds nothing Kafka does not. The gateway also applies its own records right after the
broker acknowledged them, so a client reads its write at once; the later copy from the topic
then changes nothing because its revision is not newer.
"""

import asyncio
from collections.abc import Sequence

from pydantic import ValidationError

from schemas.schedules import (
    SCHEDULE_MESSAGES,
    Schedule,
    ScheduleDefined,
    ScheduleDeleted,
    ScheduleMessage,
    ScheduleTicked,
)

_TICKS_SUFFIX = "ticks"


class UnreadableRecord(ValueError):
    """A record of the schedules topic that is neither a known message nor a tombstone."""


class MemoryScheduleStore:
    def __init__(self) -> None:
        self._schedules: dict[tuple[str, str], Schedule] = {}
        # Kept after a delete, so a late copy of an older definition cannot bring it back.
        self._revisions: dict[tuple[str, str], int] = {}
        self._ticks: dict[tuple[str, str], ScheduleTicked] = {}
        self._changed = asyncio.Event()

    # -- reading --------------------------------------------------------------------------

    def get(self, tenant: str, schedule_id: str) -> Schedule | None:
        return self._schedules.get((tenant, schedule_id))

    def revision(self, tenant: str, schedule_id: str) -> int:
        return self._revisions.get((tenant, schedule_id), 0)

    def list(self, tenant: str) -> Sequence[Schedule]:
        found = [s for (owner, _), s in self._schedules.items() if owner == tenant]
        found.sort(key=lambda s: (s.creation_date, s.id), reverse=True)
        return found

    def all(self) -> Sequence[tuple[str, Schedule]]:
        return [(tenant, schedule) for (tenant, _), schedule in self._schedules.items()]

    def last_tick(self, tenant: str, schedule_id: str) -> ScheduleTicked | None:
        return self._ticks.get((tenant, schedule_id))

    def __len__(self) -> int:
        return len(self._schedules)

    async def wait_for_change(self, seconds: float) -> None:
        """Return after the next change, or after ``seconds``, whichever comes first."""
        changed = self._changed
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await changed.wait()
        except TimeoutError:
            pass

    # -- folding ----------------------------------------------------------------------------

    def apply(self, message: ScheduleMessage) -> bool:
        """Fold one message in; True when it changed anything. Older revisions are ignored."""
        where = (message.tenant, message.schedule_id)
        if isinstance(message, ScheduleTicked):
            current = self._ticks.get(where)
            # Two schedulers may record the same due time; the latest due time is what counts.
            if current is not None and message.due_at < current.due_at:
                return False
            self._ticks[where] = message
            self._announce()
            return True
        if message.revision <= self._revisions.get(where, 0):
            return False
        self._revisions[where] = message.revision
        if isinstance(message, ScheduleDefined):
            self._schedules[where] = message.schedule
        elif isinstance(message, ScheduleDeleted):
            self._forget(where)
        self._announce()
        return True

    def apply_record(self, key: bytes | None, value: bytes | None) -> bool:
        """Fold one record of the topic: a message, or a tombstone (``value`` None)."""
        if value is not None:
            try:
                return self.apply(SCHEDULE_MESSAGES.validate_json(value))
            except ValidationError as invalid:
                raise UnreadableRecord(str(invalid)[:500]) from None
        parts = (key or b"").decode(errors="replace").split("/")
        if len(parts) == 3 and parts[2] == _TICKS_SUFFIX:
            dropped = self._ticks.pop((parts[0], parts[1]), None) is not None
        elif len(parts) == 2:
            where = (parts[0], parts[1])
            dropped = where in self._schedules
            self._forget(where)
        else:
            raise UnreadableRecord(f"tombstone with an unknown key {key!r}")
        if dropped:
            self._announce()
        return dropped

    def _forget(self, where: tuple[str, str]) -> None:
        self._schedules.pop(where, None)
        self._ticks.pop(where, None)

    def _announce(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
