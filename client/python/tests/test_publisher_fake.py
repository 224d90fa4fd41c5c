"""Publisher and AsyncPublisher against the scriptable fake server: messages, answers by id,
message errors, the end of the stream, timeouts and closing."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from conftest import Tracing
from eventbus import AsyncClient, Client, StatusError, new_event
from eventbus.v1 import cloudevent_pb2
from eventbus.v1 import event_bus_service_pb2 as pb
from fakebus import HOLD, FakeServer, wait_for

VIOLATION = pb.FieldViolation(field="events[0].source", description="must not be empty")

#: Message errors as the fake answers them, and what the publish raises for each.
ERRORS: list[tuple[pb.PublishError | pb.PublishStreamResponse, grpc.StatusCode, str, list[pb.FieldViolation]]] = [
    (
        pb.PublishError(code=3, message="events[0].source: must not be empty", field_violations=[VIOLATION]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[0].source: must not be empty",
        [VIOLATION],
    ),
    (pb.PublishError(code=14, message="database unavailable"), grpc.StatusCode.UNAVAILABLE, "database unavailable", []),
    (pb.PublishError(code=0, message="no code"), grpc.StatusCode.UNKNOWN, "no code", []),
    (pb.PublishError(code=99, message="unknown code"), grpc.StatusCode.UNKNOWN, "unknown code", []),
    (
        pb.PublishStreamResponse(),
        grpc.StatusCode.INTERNAL,
        "a PublishStream answer without an outcome",
        [],
    ),
]


def event(i: int = 0) -> cloudevent_pb2.CloudEvent:
    return new_event("/shop", "order.created", id=f"o-{i}")


def messages(fake: FakeServer) -> list[pb.PublishStreamRequest]:
    """The PublishStream messages the fake received, in order."""
    received = fake.bus.requests["PublishStream"]
    assert all(isinstance(m, pb.PublishStreamRequest) for m in received)
    return [m for m in received if isinstance(m, pb.PublishStreamRequest)]


def arrival_sequences(fake: FakeServer) -> dict[str, int]:
    """Event id -> the sequence the fake gave it: its message's place in arrival order, from 1."""
    return {m.publish.events[0].id: i + 1 for i, m in enumerate(messages(fake))}


def test_publishes_are_messages_of_one_stream_with_trace_context(fake: FakeServer, tracing: Tracing) -> None:
    events = [event(i) for i in range(3)]
    with Client(fake.target, metadata=[("x-tenant", "acme")]) as client:
        with tracing.provider.get_tracer("test").start_as_current_span("produce") as span:
            publisher = client.publisher()
        with publisher:
            first = publisher.publish("shop", events[:2])
            second = publisher.publish("depot", events[2:])
        assert fake.bus.publish_streams_half_closed == 1  # close() waited for the end of the call
    assert [r.sequence for r in first] == [1, 2]
    assert [r.sequence for r in second] == [3]
    assert [(m.id, m.publish.namespace, list(m.publish.events)) for m in messages(fake)] == [
        (0, "shop", events[:2]),
        (1, "depot", events[2:]),
    ]
    (metadata,) = fake.bus.metadata["PublishStream"]
    assert metadata["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    assert metadata["x-tenant"] == "acme"


def test_concurrent_publishes_each_get_their_own_answer(fake: FakeServer) -> None:
    events = [event(i) for i in range(50)]
    with Client(fake.target) as client, client.publisher() as publisher:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda e: publisher.publish("shop", [e]), events))
    sequence_of = arrival_sequences(fake)
    assert [r.sequence for (r,) in results] == [sequence_of[e.id] for e in events]
    assert sorted(r.sequence for (r,) in results) == list(range(1, 51))


def test_message_errors_fail_only_their_publish(fake: FakeServer) -> None:
    fake.bus.stream_script = [answer for answer, *_ in ERRORS]
    with Client(fake.target) as client, client.publisher() as publisher:
        for _, code, details, violations in ERRORS:
            with pytest.raises(StatusError) as raised:
                publisher.publish("shop", [event()])
            assert isinstance(raised.value, grpc.RpcError)
            assert (raised.value.code(), raised.value.details()) == (code, details)
            assert list(raised.value.field_violations) == violations
        assert [r.sequence for r in publisher.publish("shop", [event(1), event(2)])] == [1, 2]


def test_the_end_of_the_stream_fails_waiting_and_later_publishes(fake: FakeServer) -> None:
    fake.bus.stream_script = [HOLD, HOLD, grpc.StatusCode.UNAVAILABLE]
    with Client(fake.target) as client, client.publisher() as publisher:
        with ThreadPoolExecutor(3) as pool:
            waiting = [pool.submit(publisher.publish, "shop", [event(i)]) for i in range(3)]
            for future in waiting:
                error = future.exception(timeout=10)
                assert isinstance(error, StatusError)
                assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "scripted UNAVAILABLE")
        with pytest.raises(StatusError) as later:
            publisher.publish("shop", [event(3)])
    assert (later.value.code(), later.value.details()) == (grpc.StatusCode.UNAVAILABLE, "scripted UNAVAILABLE")
    assert fake.bus.calls("PublishStream") == 3  # the later publish sent nothing


def test_a_timed_out_publish_leaves_the_stream_open(fake: FakeServer) -> None:
    fake.bus.stream_script = [HOLD]
    with Client(fake.target) as client, client.publisher() as publisher:
        with pytest.raises(StatusError) as timed_out:
            publisher.publish("shop", [event(1)], timeout=0.2)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert [r.sequence for r in publisher.publish("shop", [event(2)])] == [1]


def test_closing_the_client_fails_waiting_publishes_with_cancelled(fake: FakeServer) -> None:
    fake.bus.stream_script = [HOLD]
    client = Client(fake.target)
    publisher = client.publisher()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(publisher.publish, "shop", [event()])
        wait_for(lambda: fake.bus.calls("PublishStream") == 1, what="the message at the server")
        client.close()
        error = waiting.exception(timeout=10)
    assert isinstance(error, StatusError) and error.code() == grpc.StatusCode.CANCELLED
    publisher.close()  # the stream is over already; returns at once


def test_publish_after_close_raises(fake: FakeServer) -> None:
    with Client(fake.target) as client:
        publisher = client.publisher()
        publisher.close()
        publisher.close()
        with pytest.raises(RuntimeError, match="closed publisher"):
            publisher.publish("shop", [event()])
    assert fake.bus.calls("PublishStream") == 0
    assert fake.bus.publish_streams_half_closed == 1


@pytest.mark.asyncio
async def test_async_publisher_answers_many_tasks_on_one_stream(fake: FakeServer) -> None:
    events = [event(i) for i in range(50)]
    async with AsyncClient(fake.target) as client, client.publisher() as publisher:
        results = await asyncio.gather(*(publisher.publish("shop", [e]) for e in events))
    assert fake.bus.publish_streams_half_closed == 1
    sequence_of = arrival_sequences(fake)
    assert [r.sequence for (r,) in results] == [sequence_of[e.id] for e in events]


@pytest.mark.asyncio
async def test_async_publisher_errors_timeouts_and_the_end_of_the_stream(fake: FakeServer) -> None:
    fake.bus.stream_script = [ERRORS[0][0], HOLD, None, grpc.StatusCode.UNAVAILABLE]
    async with AsyncClient(fake.target) as client, client.publisher() as publisher:
        with pytest.raises(StatusError) as invalid:
            await publisher.publish("shop", [event(1)])
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(invalid.value.field_violations) == [VIOLATION]
        with pytest.raises(StatusError) as timed_out:
            await publisher.publish("shop", [event(2)], timeout=0.2)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert [r.sequence for r in await publisher.publish("shop", [event(3)])] == [1]
        for i in (4, 5):  # the first ends the call; the second is not sent
            with pytest.raises(StatusError) as ended:
                await publisher.publish("shop", [event(i)])
            assert (ended.value.code(), ended.value.details()) == (
                grpc.StatusCode.UNAVAILABLE,
                "scripted UNAVAILABLE",
            )
        await publisher.close()
        with pytest.raises(RuntimeError, match="closed publisher"):
            await publisher.publish("shop", [event(6)])
    assert fake.bus.calls("PublishStream") == 4
