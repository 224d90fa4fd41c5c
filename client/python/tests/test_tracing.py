"""Trace-context propagation into call metadata and out of notifications."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from conftest import Tracing
from eventbus.tracing import call_metadata, kind_name, notification_context, process_span
from eventbus.v1 import notification_pb2
from fakebus import notification

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_call_metadata_without_a_span_adds_nothing() -> None:
    assert call_metadata([("authorization", "Bearer x")]) == (("authorization", "Bearer x"),)


def test_call_metadata_injects_the_current_span(tracing: Tracing) -> None:
    tracer = tracing.provider.get_tracer("test")
    with tracer.start_as_current_span("producer") as span:
        metadata = dict(call_metadata([("traceparent", "stale"), ("x-tenant", "t1")]))
    context = span.get_span_context()
    assert metadata["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert metadata["x-tenant"] == "t1"
    assert len(call_metadata([("traceparent", "stale")])) == 1  # the stale one is replaced


def test_notification_context_extracts_traceparent_and_tracestate() -> None:
    note = notification(1, traceparent=TRACEPARENT, tracestate="vendor=abc")
    span_context = trace.get_current_span(notification_context(note)).get_span_context()
    assert span_context.is_remote
    assert f"{span_context.trace_id:032x}" == TRACE_ID
    assert f"{span_context.span_id:016x}" == PARENT_ID
    assert span_context.trace_state.get("vendor") == "abc"


def test_notification_without_trace_context_gives_an_empty_context(tracing: Tracing) -> None:
    with tracing.provider.get_tracer("test").start_as_current_span("ambient"):
        context = notification_context(notification(1))
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_process_span_continues_the_trigger_and_sets_messaging_attributes(tracing: Tracing) -> None:
    note = notification(9, traceparent=TRACEPARENT, consumer_group="runners")
    with process_span(note, namespace="shop", tracer_provider=tracing.provider):
        inner = trace.get_current_span().get_span_context()
    assert f"{inner.trace_id:032x}" == TRACE_ID
    assert not trace.get_current_span().get_span_context().is_valid  # detached afterwards
    (span,) = tracing.exporter.get_finished_spans()
    assert span.name == "process START"
    assert span.kind == SpanKind.CONSUMER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert dict(span.attributes or {}) == {
        "messaging.system": "eventbus",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "shop",
        "messaging.consumer.group.name": "runners",
        "messaging.message.id": "fire-9",
        "eventbus.notification.kind": "START",
        "eventbus.notification.sequence": 9,
        "eventbus.notification.attempt": 1,
        "eventbus.listener.id": note.listener_id,
        "eventbus.workflow.id": "wf",
    }


def test_process_span_records_an_escaping_exception(tracing: Tracing) -> None:
    note = notification(3, kind=notification_pb2.NOTIFICATION_KIND_WAKE)
    with (
        pytest.raises(RuntimeError, match="boom"),
        process_span(note, namespace="shop", tracer_provider=tracing.provider),
    ):
        raise RuntimeError("boom")
    (span,) = tracing.exporter.get_finished_spans()
    assert span.name == "process WAKE"
    assert span.parent is None
    assert span.status.status_code == StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert (span.attributes or {})["eventbus.instance.id"] == "inst-1"


def test_kind_names() -> None:
    assert [kind_name(k) for k in (1, 2, 3, 0, 99)] == ["START", "WAKE", "TIMEOUT", "UNSPECIFIED", "99"]
