"""Errors as MindSphere answers them: ``{"errors": [{"code", "message", "logref"}]}``.

``logref`` is the request id, also sent as ``X-Request-Id`` and bound to every log line of the
request, so a user's error report leads straight to the log.
"""

import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from schemas.jobs import ErrorBody, ErrorDetail

log = structlog.get_logger(__name__)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)

CODES = {
    400: "jobmanager.badRequest",
    401: "jobmanager.unauthorized",
    403: "jobmanager.forbidden",
    404: "jobmanager.notFound",
    405: "jobmanager.methodNotAllowed",
    409: "jobmanager.conflict",
    413: "jobmanager.payloadTooLarge",
    415: "jobmanager.unsupportedMediaType",
    429: "jobmanager.tooManyRequests",
    500: "jobmanager.internalError",
    503: "jobmanager.serviceUnavailable",
}


class ApiError(Exception):
    """An answer with an error body; ``code`` defaults to the status's generic code."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, f"jobmanager.http{status}")
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = ErrorBody(errors=(ErrorDetail(code=code, message=message, logref=request_id),))
    return web.json_response(
        text=body.model_dump_json(),
        status=status,
        headers={**(headers or {}), "X-Request-Id": request_id},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class bound_to_logs:
    """``structlog.contextvars.bound_contextvars`` without its copy of the whole context
    (a quarter of its cost, which every request paid twice): binds ``values`` to the log
    context and restores the previous values on exit."""

    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: object) -> None:
        self._values = values

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._values)

    def __exit__(self, *_: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


# aiohttp's own errors (404 route, 405 method, 413 body) keep the headers HTTP requires.
_KEPT_HEADERS = ("allow", "retry-after")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    with bound_to_logs(request_id=request_id):
        try:
            response = await handler(request)
        except ApiError as error:
            log.info(
                "request refused",
                method=request.method,
                path=request.path,
                status=error.status,
                code=error.code,
                reason=error.message,
            )
            return error_response(
                error.status, error.code, error.message, request_id, error.headers
            )
        except web.HTTPException as http:
            if http.status < 400:
                raise
            kept = {k: v for k, v in http.headers.items() if k.lower() in _KEPT_HEADERS}
            message = http.text if http.status == 413 else http.reason
            code = CODES.get(http.status, f"jobmanager.http{http.status}")
            # Logged like an ApiError, so every logref answered has its log line.
            log.info(
                "request refused",
                method=request.method,
                path=request.path,
                status=http.status,
                code=code,
                reason=message or http.reason,
            )
            return error_response(http.status, code, message or http.reason, request_id, kept)
        except Exception:
            log.exception("request failed", method=request.method, path=request.path, status=500)
            return error_response(500, CODES[500], "internal error; report the logref", request_id)
        response.headers["X-Request-Id"] = request_id
        return response


def _request_id(request: web.Request) -> str:
    # A caller's id is reused only when it is short and printable, so it cannot forge log lines.
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex
