"""Retrying a send whose outcome is already decided (a move, a claim) until the broker acks."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from adapters.ports import BrokerUnavailable

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 10.0

T = TypeVar("T")


async def until_acknowledged(send: Callable[[], Awaitable[T]], what: str) -> T:
    """Call ``send`` until it succeeds, backing off while the broker is away.

    Giving up would lose a decision already taken; re-sending is safe because every message
    sent this way is idempotent for its readers (same event id and sequence, same claim).
    """
    backoff = 0.5
    while True:
        try:
            return await send()
        except BrokerUnavailable as failure:
            log.warning(
                "not acknowledged; retrying", message=what, retry_in_seconds=backoff,
                error=str(failure),
            )  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
