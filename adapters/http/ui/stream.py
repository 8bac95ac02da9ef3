"""Server-sent events: every projection change of a tenant's jobs, pushed to its open pages.

The projection calls :meth:`JobStream.publish` synchronously while folding, so publishing only
records the change per connection and wakes it. A connection that falls behind keeps just the
newest record per job (the page wants the current state, not every step), so memory is bounded
by the jobs that changed, never by the event rate.
"""

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from schemas.jobs import JobRecord

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 15.0
#: How long a browser waits before reconnecting a dropped stream.
RETRY_MILLISECONDS = 2000

Render = Callable[[JobRecord], Mapping[str, Any]]


class _Connection:
    __slots__ = ("pending", "tenant", "wake")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.pending: dict[str, JobRecord] = {}
        self.wake = asyncio.Event()


def sse_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One event in the text/event-stream format; JSON has no raw newlines, so one data line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class JobStream:
    """Fans job changes out to the open event streams of the job's tenant."""

    def __init__(self, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self._heartbeat = heartbeat_seconds
        self._connections: set[_Connection] = set()
        self._closing = False

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def publish(self, record: JobRecord) -> None:
        """The projection's listener: never blocks, never raises."""
        for connection in self._connections:
            if connection.tenant == record.tenant:
                connection.pending[record.view.id] = record
                connection.wake.set()

    async def close(self, _app: web.Application | None = None) -> None:
        """End every open stream, so the gateway's shutdown does not wait on them."""
        self._closing = True
        for connection in self._connections:
            connection.wake.set()

    async def serve(self, request: web.Request, tenant: str, render: Render) -> web.StreamResponse:
        """Stream ``tenant``'s job changes until the client leaves or the gateway stops."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                # Reverse proxies must pass events on at once rather than buffer them.
                "X-Accel-Buffering": "no",
            }
        )
        connection = _Connection(tenant)
        self._connections.add(connection)
        try:
            await response.prepare(request)
            await response.write(f"retry: {RETRY_MILLISECONDS}\n: connected\n\n".encode())
            log.info("event stream opened", tenant=tenant)
            while not self._closing:
                try:
                    await asyncio.wait_for(connection.wake.wait(), self._heartbeat)
                except TimeoutError:
                    # A comment line keeps proxies from timing out an idle stream, and finds a
                    # gone client (the write fails).
                    await response.write(b": keep-alive\n\n")
                    continue
                connection.wake.clear()
                changed, connection.pending = connection.pending, {}
                for record in changed.values():
                    await response.write(sse_event("job", render(record)))
        except ConnectionResetError:
            log.info("event stream closed by the client", tenant=tenant)
        finally:
            self._connections.discard(connection)
        return response
