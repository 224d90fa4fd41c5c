"""Publisher and AsyncPublisher against a live eventbus server (see conftest.py). Each test uses
its own namespace, whose sequences start at 1."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from conftest import LiveServer, start_server
from eventbus import AsyncClient, Client, StatusError, new_event
from eventbus.v1 import cloudevent_pb2

pytestmark = pytest.mark.integration

ORDER_CREATED = "com.example.order.created"


def order(id: str) -> cloudevent_pb2.CloudEvent:
    return new_event("/shop/orders", ORDER_CREATED, id=id)


def assert_invalid_source(error: StatusError) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].source" in error.details()
    assert [v.field for v in error.field_violations] == ["events[0].source"]


def test_concurrent_publishes_each_get_their_own_answer(client: Client, namespace: str) -> None:
    events = [order(f"order-{i}") for i in range(200)]
    with client.publisher() as publisher, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda event: publisher.publish(namespace, [event]), events))
    assert all(len(r) == 1 and not r[0].duplicate for r in results)
    sequences = [r[0].sequence for r in results]
    assert sorted(sequences) == list(range(1, 201))
    # Each publish was answered with the sequence its own event was stored under.
    stored = {s.sequence: s.event.id for s in client.list_events(namespace, page_size=1000)}
    assert [stored[sequence] for sequence in sequences] == [e.id for e in events]


def test_an_invalid_message_fails_alone(client: Client, namespace: str) -> None:
    with client.publisher() as publisher:
        assert [r.sequence for r in publisher.publish(namespace, [order("1")])] == [1]
        with pytest.raises(StatusError) as invalid:
            publisher.publish(namespace, [new_event("", ORDER_CREATED)])
        assert_invalid_source(invalid.value)
        (result,) = publisher.publish(namespace, [order("2")])
    assert (result.sequence, result.duplicate) == (2, False)


def test_a_duplicate_event_id_is_answered_with_the_first_sequence(client: Client, namespace: str) -> None:
    event = order("7")
    with client.publisher() as publisher:
        (first,) = publisher.publish(namespace, [order("6"), event])[1:]
        (again,) = publisher.publish(namespace, [event])
    # The same built event on a new stream, as after a lost one, is safe too.
    with client.publisher() as publisher:
        (on_new_stream,) = publisher.publish(namespace, [event])
    assert (first.sequence, first.duplicate) == (2, False)
    assert (again.sequence, again.duplicate) == (2, True)
    assert (on_new_stream.sequence, on_new_stream.duplicate) == (2, True)


@pytest.mark.asyncio
async def test_async_publisher(eventbus_server: LiveServer, namespace: str) -> None:
    events = [order(f"order-{i}") for i in range(100)]
    async with AsyncClient(eventbus_server.address, timeout=10) as client, client.publisher() as publisher:
        results = await asyncio.gather(*(publisher.publish(namespace, [e]) for e in events))
        assert sorted(r.sequence for (r,) in results) == list(range(1, 101))
        stored = {s.sequence: s.event.id async for s in client.list_events(namespace, page_size=1000)}
        assert [stored[r.sequence] for (r,) in results] == [e.id for e in events]

        with pytest.raises(StatusError) as invalid:
            await publisher.publish(namespace, [new_event("", ORDER_CREATED)])
        assert_invalid_source(invalid.value)
        (duplicate,) = await publisher.publish(namespace, [events[3]])
        assert (duplicate.sequence, duplicate.duplicate) == (results[3][0].sequence, True)
        (next_one,) = await publisher.publish(namespace, [order("next")])
        assert (next_one.sequence, next_one.duplicate) == (101, False)


def test_the_stream_fails_with_unavailable_when_the_server_stops(server_dir: Path, namespace: str) -> None:
    server = start_server(server_dir)
    with Client(server.address, timeout=10) as client, client.publisher() as publisher:
        assert [r.sequence for r in publisher.publish(namespace, [order("1")])] == [1]
        assert server.stop() == 0
        with pytest.raises(StatusError) as first:
            publisher.publish(namespace, [order("2")])
        assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        # The stream is over for good: every later publish fails with its status.
        with pytest.raises(StatusError) as later:
            publisher.publish(namespace, [order("3")])
    assert (later.value.code(), later.value.details()) == (first.value.code(), first.value.details())
