"""What the job and schedule routes read from a request, each read failing as a 4xx ApiError.

One place, so a JSON body, an ``Idempotency-Key`` or a listing's ``pageNumber``/``filter`` is
refused with the same status and wording on every route that takes it.
"""

import functools
from collections.abc import Mapping
from typing import TypeVar

from aiohttp import web
from aiohttp.hdrs import CONTENT_TYPE
from pydantic import BaseModel, ValidationError

from adapters.http.errors import ApiError
from adapters.http.filters import FieldKind, Filter, FilterError, parse_filter
from adapters.http.paging import PageRequest

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

JSON_TYPES = ("application/json", "application/octet-stream")


async def json_body(
    request: web.Request, model: type[M], what: str, media_types: tuple[str, ...] = JSON_TYPES
) -> M:
    """The body as ``model``: 415 for another media type, 400 naming each field at fault."""
    # The header exactly as clients send it needs no parse (aiohttp's takes a few µs, a few
    # per cent of a POST /jobs); any other spelling, or none, is parsed as before.
    if request.headers.get(CONTENT_TYPE) not in _exact_spellings(media_types) and (
        request.content_type not in media_types
    ):
        raise ApiError(415, f"send the {what} as application/json")
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as invalid:
        raise ApiError(400, explain(invalid)) from None


@functools.cache
def _exact_spellings(media_types: tuple[str, ...]) -> frozenset[str]:
    """Content-Type values that parse to one of ``media_types``, as clients commonly send them."""
    return frozenset(
        spelling
        for media_type in media_types
        for spelling in (media_type, f"{media_type}; charset=utf-8", f"{media_type};charset=utf-8")
    )


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise ApiError(400, "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def found(item: T | None, kind: str, item_id: str) -> T:
    """``item`` (looked up in the caller's tenant), or a 404.

    Another tenant's item is looked up as absent, so it is answered exactly like an unknown
    one: ids of other tenants cannot be probed.
    """
    if item is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    return item


def listing(
    query: Mapping[str, str], fields: Mapping[str, FieldKind]
) -> tuple[PageRequest, Filter]:
    """A listing's page and ``filter``; a malformed filter is a 400 that says what is wrong."""
    page = PageRequest.from_query(query)
    try:
        return page, parse_filter(query.get("filter"), fields)
    except FilterError as malformed:
        raise ApiError(400, f"filter: {malformed}") from None


def explain(invalid: ValidationError) -> str:
    """The first ten validation errors, each as ``field.path: problem``."""
    parts = []
    for error in invalid.errors()[:10]:
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "json_invalid":
            parts.append(f"body is not valid JSON ({error.get('ctx', {}).get('error', '')})")
        elif error["type"] == "model_type":
            parts.append("body must be a JSON object")
        elif error["type"] == "missing":
            parts.append(f"{where}: is required")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
