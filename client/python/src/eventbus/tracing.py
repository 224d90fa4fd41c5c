"""OpenTelemetry context propagation for eventbus calls and notifications.

Outgoing calls: :func:`call_metadata` injects the current context with the globally
configured propagator (``opentelemetry.propagate``, W3C ``traceparent`` / ``tracestate`` and
``baggage`` by default) into gRPC metadata; the server continues that trace and records it with
published events. Without an OpenTelemetry SDK the current context is empty and nothing is
added. The ``opentelemetry-instrumentation-grpc`` package is not needed; if you install it as
well, both write the same keys and the instrumented span's context wins.

Incoming notifications: :func:`notification_context` extracts the trigger's trace context
that a notification carries (always W3C Trace Context, whatever the global propagator), and
:func:`process_span` runs code in a ``CONSUMER`` span ``process <KIND>`` that continues it. The
runners use both; call them yourself when you consume :meth:`Client.subscribe` directly.

Hazard: the OpenTelemetry context is a ``contextvars`` value. Threads started inside a handler
do not inherit it, and ``asyncio`` tasks copy it when they are created.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventbus.v1 import notification_pb2

__all__ = [
    "TRACER_NAME",
    "call_metadata",
    "kind_name",
    "notification_context",
    "process_span",
]

#: Instrumentation scope name of the spans the runners start.
TRACER_NAME = "eventbus"

_W3C = TraceContextTextMapPropagator()

Metadata = Sequence[tuple[str, str]]


def call_metadata(extra: Metadata | None = None, context: Context | None = None) -> tuple[tuple[str, str], ...]:
    """Returns ``extra`` plus the trace context of ``context`` (default: the current one).

    Keys set by the propagator replace keys of the same name in ``extra``.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    injected = {key.lower(): value for key, value in carrier.items()}
    metadata = [(key, value) for key, value in (extra or ()) if key.lower() not in injected]
    metadata.extend(injected.items())
    return tuple(metadata)


def notification_context(notification: notification_pb2.Notification) -> Context:
    """Returns a fresh context holding the notification's trigger trace context, if it has one.

    The result does not inherit the caller's current context, so a runner thread's own spans
    never become the parent of a notification's processing.
    """
    if not notification.traceparent:
        return Context()
    carrier = {"traceparent": notification.traceparent}
    if notification.tracestate:
        carrier["tracestate"] = notification.tracestate
    return _W3C.extract(carrier, context=Context())


def kind_name(kind: int) -> str:
    """Returns ``START``, ``WAKE``, ``TIMEOUT`` (or ``UNSPECIFIED``) for a ``NotificationKind``."""
    try:
        return notification_pb2.NotificationKind.Name(kind).removeprefix("NOTIFICATION_KIND_")
    except ValueError:
        return str(kind)


@contextmanager
def process_span(
    notification: notification_pb2.Notification,
    *,
    namespace: str,
    tracer_provider: trace.TracerProvider | None = None,
) -> Iterator[trace.Span]:
    """Attaches the notification's trace context and runs the block in a consumer span.

    The span is named ``process <KIND>`` (for example ``process START``), is a child of the
    trigger's trace context (a root span when the notification carries none) and has the
    OpenTelemetry messaging attributes plus ``eventbus.*`` ones. An exception leaving the block
    is recorded on the span, which is then marked as an error.
    """
    kind = kind_name(notification.kind)
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    attributes: dict[str, str | int] = {
        "messaging.system": "eventbus",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": namespace,
        "messaging.consumer.group.name": notification.consumer_group,
        "messaging.message.id": notification.fire_id,
        "eventbus.notification.kind": kind,
        "eventbus.notification.sequence": notification.sequence,
        "eventbus.notification.attempt": notification.attempt,
        "eventbus.listener.id": notification.listener_id,
    }
    if notification.workflow_id:
        attributes["eventbus.workflow.id"] = notification.workflow_id
    if notification.instance_id:
        attributes["eventbus.instance.id"] = notification.instance_id
    token = otel_context.attach(notification_context(notification))
    try:
        with tracer.start_as_current_span(
            f"process {kind}", kind=trace.SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield span
    finally:
        otel_context.detach(token)
