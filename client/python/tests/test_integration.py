"""End to end against a live eventbus server started from $EVENTBUS_BIN (see conftest.py).

Every test uses its own namespace, so they share one server. Without EVENTBUS_BIN these tests
fail; select them with ``-m integration`` or leave them out with ``-m 'not integration'``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace

from conftest import LiveServer, Tracing, start_server
from fakebus import wait_for
from eventbus import (
    AsyncClient,
    AsyncRunner,
    Backoff,
    Client,
    ListenerSpecBuilder,
    Notification,
    Runner,
    event_data,
    get_attribute,
    new_event,
)
from eventbus.v1 import listener_pb2, notification_pb2

pytestmark = pytest.mark.integration

ORDER_CREATED = "com.example.order.created"
WAIT_TIMEOUT = 20.0
FAST_RETRY = Backoff(initial=0.05, max=0.05)


def traceparent_of(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def register_start(client: Client, namespace: str, workflow_id: str = "fulfilment") -> listener_pb2.Listener:
    registration = client.register_listener(namespace, ListenerSpecBuilder.start(workflow_id).one(ORDER_CREATED))
    assert registration.created
    return registration.listener


def test_runner_receives_start_with_event_and_trace_context(
    client: Client, namespace: str, tracing: Tracing
) -> None:
    listener = register_start(client, namespace)
    event = new_event(
        "/shop", ORDER_CREATED, subject="order-1", data={"orderid": "1", "total": 12}, extensions={"orderid": "1"}
    )
    with tracing.provider.get_tracer("test").start_as_current_span("produce order") as producer:
        (result,) = client.publish(namespace, [event])
    assert not result.duplicate
    sent_traceparent = traceparent_of(producer)

    received: list[tuple[Notification, trace.SpanContext]] = []
    handled = threading.Event()

    def handler(note: Notification) -> None:
        received.append((note, trace.get_current_span().get_span_context()))
        handled.set()

    # Leaving the block stops the runner, which settles the handler in flight (acks it) first.
    with Runner(client, namespace, "runners", handler, kinds=["start"], tracer_provider=tracing.provider) as runner:
        assert handled.wait(WAIT_TIMEOUT), "no START notification within the timeout"

    ((note, span_context),) = received
    assert note.kind == notification_pb2.NOTIFICATION_KIND_START
    assert note.workflow_id == "fulfilment"
    assert note.instance_id == ""
    assert note.listener_id == listener.id
    assert note.consumer_group == "runners"
    assert note.attempt == 1
    assert list(note.events) == [event]
    assert list(note.event_sequences) == [result.sequence]
    assert event_data(note.events[0]) == {"orderid": "1", "total": 12}
    # The notification carries the trigger's span (its id derived from the fire id), a child of
    # the Publish call's context, and the handler continues it.
    trigger_span_id = note.fire_id.replace("-", "")[:16]
    flags = producer.get_span_context().trace_flags
    assert note.traceparent == f"00-{producer.get_span_context().trace_id:032x}-{trigger_span_id}-{flags:02x}"
    assert span_context.trace_id == producer.get_span_context().trace_id
    (process,) = [s for s in tracing.exporter.get_finished_spans() if s.name == "process START"]
    assert process.parent is not None and process.parent.span_id == int(trigger_span_id, 16)
    assert process.kind == trace.SpanKind.CONSUMER
    assert client.get_event(namespace, result.sequence).traceparent == sent_traceparent
    assert runner.stats.acked == 1
    assert client.ack(namespace, "runners", note.sequence) == 0  # the runner acked it already


def test_handler_exception_leads_to_redelivery_with_attempt_2(client: Client, namespace: str) -> None:
    register_start(client, namespace)
    client.publish(namespace, [new_event("/shop", ORDER_CREATED, subject="order-2")])
    deliveries: list[tuple[str, int, int]] = []
    second = threading.Event()

    def handler(note: Notification) -> None:
        deliveries.append((note.fire_id, note.sequence, note.attempt))
        if note.attempt == 1:
            raise RuntimeError("payment service down")
        second.set()

    with Runner(client, namespace, "runners", handler, retry_backoff=FAST_RETRY) as runner:
        assert second.wait(WAIT_TIMEOUT), f"no redelivery within the timeout; deliveries: {deliveries}"
    assert [attempt for _, _, attempt in deliveries] == [1, 2]
    assert deliveries[0][:2] == deliveries[1][:2]  # same fire_id, same sequence
    assert (runner.stats.nacked, runner.stats.acked) == (1, 1)
    assert client.ack(namespace, "runners", deliveries[0][1]) == 0


def test_stop_waits_for_the_handler_in_flight_and_settles_it(client: Client, namespace: str) -> None:
    register_start(client, namespace)
    client.publish(namespace, [new_event("/shop", ORDER_CREATED)])
    started = threading.Event()
    release = threading.Event()
    sequences: list[int] = []

    def handler(note: Notification) -> None:
        sequences.append(note.sequence)
        started.set()
        assert release.wait(WAIT_TIMEOUT)

    runner = Runner(client, namespace, "runners", handler).start()
    assert started.wait(WAIT_TIMEOUT)
    runner.stop()
    time.sleep(0.2)
    assert not runner.done, "run() returned while a handler was still running"
    release.set()
    runner.join(WAIT_TIMEOUT)
    assert runner.stats.acked == 1
    assert client.ack(namespace, "runners", sequences[0]) == 0


def test_wait_listener_all_with_correlation_wakes_once(client: Client, namespace: str) -> None:
    spec = (
        ListenerSpecBuilder.wait("order-7")
        .all("payment.received", "shipment.sent")
        .correlate_by("orderid")
        .filter("payment.received", orderid="7")
        .filter("shipment.sent", orderid="7")
    )
    listener = client.register_listener(namespace, spec, request_id="wait-order-7").listener
    again = client.register_listener(namespace, spec, request_id="wait-order-7")
    assert not again.created and again.listener.id == listener.id
    client.publish(
        namespace,
        [
            new_event("/payments", "payment.received", extensions={"orderid": "8"}),  # filtered out
            new_event("/payments", "payment.received", extensions={"orderid": "7"}),
            new_event("/shipping", "shipment.sent", extensions={"orderid": "7"}),
        ],
    )
    with client.subscribe(namespace, "waiters", kinds=["wake"]) as subscription:
        note = next(subscription)
        subscription.ack(note)
    assert note.kind == notification_pb2.NOTIFICATION_KIND_WAKE
    assert note.instance_id == "order-7"
    assert dict(note.correlation) == {"orderid": "7"}
    assert [e.type for e in note.events] == ["payment.received", "shipment.sent"]
    assert all(get_attribute(e, "orderid") == "7" for e in note.events)
    finished = client.get_listener(namespace, listener.id)
    assert finished.status == listener_pb2.LISTENER_STATUS_FIRED
    assert finished.fire_id == note.fire_id


def test_listener_and_event_calls(client: Client, namespace: str) -> None:
    ids = [register_start(client, namespace, workflow_id=f"wf-{i % 2}").id for i in range(5)]
    assert [l.id for l in client.list_listeners(namespace, page_size=2)] == ids
    assert [l.id for l in client.list_listeners(namespace, workflow_id="wf-0", page_size=1)] == ids[0::2]
    assert client.get_listener(namespace, ids[0]).spec.workflow_id == "wf-0"
    client.delete_listener(namespace, ids[0])
    with pytest.raises(grpc.RpcError) as missing:
        client.get_listener(namespace, ids[0])
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert client.delete_listeners(namespace, workflow_id="wf-1") == 2
    assert [l.id for l in client.list_listeners(namespace)] == [ids[2], ids[4]]

    events = [new_event("/shop", "a" if i % 2 else "b", id=f"e-{i}") for i in range(5)]
    results = client.publish(namespace, events)
    sequences = [r.sequence for r in results]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5
    (duplicate,) = client.publish(namespace, [events[3]])
    assert duplicate.duplicate and duplicate.sequence == sequences[3]
    assert client.get_event(namespace, sequences[2]).event == events[2]
    assert client.get_event(namespace, source="/shop", id="e-4").sequence == sequences[4]
    assert [s.event.id for s in client.list_events(namespace, page_size=2)] == [e.id for e in events]
    assert [s.event.id for s in client.list_events(namespace, type="a", page_size=1)] == ["e-1", "e-3"]
    assert [s.sequence for s in client.list_events(namespace, after_sequence=sequences[2])] == sequences[3:]


def test_non_retryable_statuses_stop_the_runner(client: Client, namespace: str) -> None:
    with pytest.raises(grpc.RpcError) as invalid:
        Runner(client, "not a namespace!", "runners", lambda note: None).run()
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    register_start(client, namespace)
    client.publish(namespace, [new_event("/shop", ORDER_CREATED)])
    handled = threading.Event()
    with Runner(client, namespace, "runners", lambda note: handled.set(), max_attempts=3):
        assert handled.wait(WAIT_TIMEOUT)  # the group now exists with max_attempts 3
    with pytest.raises(grpc.RpcError) as mismatch:
        Runner(client, namespace, "runners", lambda note: None, max_attempts=5).run()
    assert mismatch.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.asyncio
async def test_async_client_subscribe(eventbus_server: LiveServer, namespace: str) -> None:
    async with AsyncClient(eventbus_server.address, timeout=10) as client:
        await client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one(ORDER_CREATED))
        event = new_event("/shop", ORDER_CREATED, data="hello")
        (result,) = await client.publish(namespace, [event])
        async with client.subscribe(namespace, "async-runners") as subscription:
            note = await asyncio.wait_for(subscription.__anext__(), WAIT_TIMEOUT)
            assert await subscription.ack(note) == 1
        assert note.kind == notification_pb2.NOTIFICATION_KIND_START
        assert list(note.events) == [event]
        assert list(note.event_sequences) == [result.sequence]
        assert await client.ack(namespace, "async-runners", note.sequence) == 0
        stored = [s.event.id async for s in client.list_events(namespace)]
        assert stored == [event.id]


@pytest.mark.asyncio
async def test_async_runner_redelivers_and_stops_cleanly(
    eventbus_server: LiveServer, namespace: str, tracing: Tracing
) -> None:
    attempts: list[int] = []
    trace_ids: list[int] = []
    done = asyncio.Event()

    async def handler(note: Notification) -> None:
        attempts.append(note.attempt)
        trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        if note.attempt == 1:
            raise RuntimeError("transient")
        done.set()

    async with AsyncClient(eventbus_server.address, timeout=10) as client:
        await client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one(ORDER_CREATED))
        with tracing.provider.get_tracer("test").start_as_current_span("produce") as producer:
            await client.publish(namespace, [new_event("/shop", ORDER_CREATED)])
        runner = AsyncRunner(
            client, namespace, "runners", handler, retry_backoff=FAST_RETRY, tracer_provider=tracing.provider
        )
        task = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(done.wait(), WAIT_TIMEOUT)
        runner.stop()  # the handler in flight finishes and settles (acks) before run returns
        await asyncio.wait_for(task, WAIT_TIMEOUT)
    assert attempts == [1, 2]
    assert trace_ids == [producer.get_span_context().trace_id] * 2
    assert (runner.stats.nacked, runner.stats.acked) == (1, 1)


def test_runner_reconnects_after_the_server_restarts(server_dir: Path, namespace: str) -> None:
    first = start_server(server_dir, name="first")
    handled: list[str] = []
    arrived = threading.Condition()

    def handler(note: Notification) -> None:
        with arrived:
            handled.append(note.events[0].id)
            arrived.notify_all()

    def wait_handled(count: int) -> None:
        with arrived:
            assert arrived.wait_for(lambda: len(handled) >= count, WAIT_TIMEOUT), f"handled only {handled}"

    second: LiveServer | None = None
    with Client(first.address, timeout=10) as client:
        register_start(client, namespace)
        runner = Runner(client, namespace, "runners", handler, reconnect_backoff=Backoff(0.05, 0.5)).start()
        try:
            client.publish(namespace, [new_event("/shop", ORDER_CREATED, id="before")])
            wait_handled(1)
            wait_for(lambda: runner.stats.acked >= 1, WAIT_TIMEOUT, "the ack of 'before'")
            assert first.stop() == 0  # the stream ends with UNAVAILABLE
            second = start_server(server_dir, listen=first.address, name="second")  # same port, same data
            client.publish(namespace, [new_event("/shop", ORDER_CREATED, id="after")])
            wait_handled(2)
        finally:
            runner.stop()
            runner.join(WAIT_TIMEOUT)
            if second is not None:
                assert second.stop() == 0
    assert handled == ["before", "after"]
    assert runner.stats.reconnects >= 1
    assert runner.stats.acked == 2
