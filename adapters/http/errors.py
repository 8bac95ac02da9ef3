"""Errors as MindSphere answers them: ``{"errors": [{"code", "message", "logref"}]}``.

``logref`` is the request id, also sent as ``X-Request-Id`` and bound to every log line of the
request, so a user's error report leads straight to the log.
"""

from collections.abc import Awaitable, Callable
from time import perf_counter

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from structlog.contextvars import bind_contextvars, reset_contextvars

from adapters.http.ids import random_id
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


# aiohttp's own errors (404 route, 405 method, 413 body) keep the headers HTTP requires.
_KEPT_HEADERS = ("allow", "retry-after")


#: Called once per request with the request, the status answered and the seconds it took
#: (the metrics' request counter and latency histogram).
RequestRecorder = Callable[[web.Request, int, float], None]


def answering_middleware(record: RequestRecorder | None = None) -> Middleware:
    """Errors as MindSphere bodies with a request id, and ``record`` of every answer.

    One middleware rather than a metrics one around an errors one: each aiohttp middleware is
    another coroutine per request, and this is the gateway's per-request overhead. ``record``
    sees the status this answered with, as a metrics middleware outside it would.
    """

    @web.middleware
    async def answering(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = perf_counter()
        # Unless an answer or an HTTP exception says otherwise (a cancelled request).
        status = 500
        request_id = _request_id(request)
        request[REQUEST_ID] = request_id
        tokens = bind_contextvars(request_id=request_id)
        try:
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
                response = error_response(
                    error.status, error.code, error.message, request_id, error.headers
                )
            except web.HTTPException as http:
                if http.status < 400:
                    status = http.status
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
                response = error_response(
                    http.status, code, message or http.reason, request_id, kept
                )
            except Exception:
                log.exception(
                    "request failed", method=request.method, path=request.path, status=500
                )
                response = error_response(
                    500, CODES[500], "internal error; report the logref", request_id
                )
            else:
                response.headers["X-Request-Id"] = request_id
            status = response.status
            return response
        finally:
            reset_contextvars(**tokens)
            if record is not None:
                record(request, status, perf_counter() - started)

    return answering


def _request_id(request: web.Request) -> str:
    # A caller's id is reused only when it is short and printable, so it cannot forge log lines.
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    return random_id()
