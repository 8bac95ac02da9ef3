"""Optional OpenTelemetry tracing, off by default (``JOBMANAGER_TRACING``).

When on, a trace follows a job from the HTTP request to every status change: the gateway opens
a span per request (continuing a caller's W3C ``traceparent``), each command and event is sent
in a child span whose context travels in the message's Kafka headers (``traceparent``,
``tracestate``), and the worker continues that context in one span per command, which for a
``SubmitJob`` lasts as long as the job runs. A downstream consumer of the events topic can
continue the trace from any event's headers.

When off, nothing of OpenTelemetry is imported: callers hold ``None`` (they import this module
for typing only) and add no header. The SDK, the ``otel`` extra, is imported only by
:func:`build_tracing`.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import structlog
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

TracingMode = Literal["off", "console", "otlp"]
Headers = Sequence[tuple[str, bytes]]
Attributes = Mapping[str, AttributeValue]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICE_NAME = "jobmanager"
TRACE_HEADERS = ("traceparent", "tracestate")

# W3C Trace Context only, not the process-wide propagator: what is in the headers is fixed here.
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingUnavailable(Exception):
    """Tracing was asked for, but the OpenTelemetry SDK (the ``otel`` extra) is not installed."""


def _trace_id(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


class Tracing:
    """Spans for requests, commands and events, and the W3C trace context in message headers."""

    def __init__(self, tracer: trace.Tracer, shutdown: Callable[[], None] = lambda: None) -> None:
        self._tracer = tracer
        self._shutdown = shutdown

    @classmethod
    def with_exporter(cls, exporter: "SpanExporter", *, batch: bool = True) -> "Tracing":
        """A tracer of its own provider (never the global one) that sends spans to ``exporter``.

        ``batch=False`` exports each span as it ends (tests read an in-memory exporter at once).
        """
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create()
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; without them the service is ours.
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
        provider = TracerProvider(resource=resource)
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider.get_tracer(SERVICE_NAME), provider.shutdown)

    def shutdown(self) -> None:
        """Export what is still buffered; blocking, so call it in a thread."""
        self._shutdown()

    # -- Kafka ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def sending(
        self, name: str, topic: str, attributes: Attributes
    ) -> Iterator[list[tuple[str, bytes]]]:
        """A producer span, child of the current one, around one send; yields the headers that
        carry it."""
        with self._tracer.start_as_current_span(
            f"send {name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                **attributes,
            },
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            yield [(key, value.encode()) for key, value in carrier.items()]

    async def processing(
        self,
        name: str,
        headers: Headers,
        attributes: Attributes,
        work: Callable[[], Awaitable["asyncio.Task[None] | None"]],
    ) -> "asyncio.Task[None] | None":
        """Run ``work`` in a consumer span that continues the trace carried in ``headers``.

        The span stays open until the task ``work`` returns is done (a job run), so every event
        the job publishes is a child of it: the task copies the context the span is current in.
        """
        carrier = {key: value.decode("latin-1") for key, value in headers if key in TRACE_HEADERS}
        span = self._tracer.start_span(
            f"process {name}",
            context=_PROPAGATOR.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                **attributes,
            },
        )
        try:
            with (
                trace.use_span(span, end_on_exit=False),
                structlog.contextvars.bound_contextvars(trace_id=_trace_id(span)),
            ):
                task = await work()
        except BaseException as failure:
            span.record_exception(failure)
            span.set_status(Status(StatusCode.ERROR, type(failure).__name__))
            span.end()
            raise
        if task is None:
            span.end()
        else:
            task.add_done_callback(lambda done: _end_with(span, done))
        return task

    # -- HTTP -----------------------------------------------------------------------------

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """A server span per request, continuing a caller's ``traceparent``.

        Put it outermost, so the span sees the status and ``X-Request-Id`` (the logref) that the
        error middleware answered with.
        """
        tracer = self._tracer

        @web.middleware
        async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            with (
                tracer.start_as_current_span(
                    f"{request.method} {route}",
                    context=_PROPAGATOR.extract(request.headers),
                    kind=SpanKind.SERVER,
                    attributes={
                        "http.request.method": request.method,
                        "http.route": route,
                        "url.path": request.path,
                    },
                ) as span,
                structlog.contextvars.bound_contextvars(trace_id=_trace_id(span)),
            ):
                try:
                    response = await handler(request)
                except web.HTTPException as http:
                    _answered(span, http.status, http.headers)
                    raise
                _answered(span, response.status, response.headers)
                return response

        return tracing_middleware


def _answered(span: Span, status: int, headers: Mapping[str, str]) -> None:
    span.set_attribute("http.response.status_code", status)
    request_id = headers.get("X-Request-Id")
    if request_id is not None:
        span.set_attribute("jobmanager.request_id", request_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def _end_with(span: Span, task: "asyncio.Task[None]") -> None:
    if task.cancelled():
        # A hand-over to another worker, which continues the trace from the redelivered command.
        span.set_attribute("jobmanager.handed_over", True)
    elif (failure := task.exception()) is not None:
        span.record_exception(failure)
        span.set_status(Status(StatusCode.ERROR, type(failure).__name__))
    span.end()


def build_tracing(mode: TracingMode) -> Tracing | None:
    """The process's tracing for ``JOBMANAGER_TRACING``; None when off.

    ``console`` prints spans to stdout; ``otlp`` sends them over OTLP/HTTP to
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default
    ``http://localhost:4318``), with the exporter's other standard ``OTEL_*`` settings.
    """
    if mode == "off":
        return None
    try:
        if mode == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return Tracing.with_exporter(ConsoleSpanExporter())
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return Tracing.with_exporter(OTLPSpanExporter())
    except ImportError as missing:
        raise TracingUnavailable(
            f"JOBMANAGER_TRACING={mode} needs the OpenTelemetry SDK and exporter: "
            f"pip install 'jobmanager[otel]' ({missing})"
        ) from missing
