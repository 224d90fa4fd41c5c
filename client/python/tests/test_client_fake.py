"""Client and AsyncClient against the scriptable fake server on loopback: requests, metadata,
retries, paging, and subscription streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timezone

import grpc
import pytest

from conftest import Tracing
from eventbus import AsyncClient, Client, ListenerSpecBuilder, new_event
from eventbus.v1 import cloudevent_pb2, listener_pb2, notification_pb2
from eventbus.v1 import event_bus_service_pb2 as pb
from fakebus import END, KEEPALIVE, FakeServer, notification, wait_for


def test_publish_sends_events_and_trace_context(fake: FakeServer, tracing: Tracing) -> None:
    events = [new_event("/shop", "order.created", id=f"o-{i}") for i in range(3)]
    with Client(fake.target, metadata=[("x-tenant", "acme")]) as client:
        with tracing.provider.get_tracer("test").start_as_current_span("produce") as span:
            results = client.publish("shop", events)
    assert [result.sequence for result in results] == [1, 2, 3]
    (request,) = fake.bus.requests["Publish"]
    assert isinstance(request, pb.PublishRequest)
    assert request.namespace == "shop"
    assert list(request.events) == events
    (metadata,) = fake.bus.metadata["Publish"]
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert metadata["traceparent"].split("-")[1] == trace_id
    assert metadata["x-tenant"] == "acme"


def test_unary_calls_are_retried_on_unavailable(fake: FakeServer) -> None:
    fake.bus.failures["Publish"] = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    with Client(fake.target) as client:
        results = client.publish("shop", [new_event("/s", "t")])
    assert len(results) == 1
    assert fake.bus.calls("Publish") == 3


def test_calls_that_may_have_taken_effect_are_not_retried_and_other_codes_raise(fake: FakeServer) -> None:
    not_retried: dict[str, Callable[[Client], object]] = {
        "DeleteListener": lambda c: c.delete_listener("shop", "0190c0de-0000-7000-8000-000000000001"),
        "DeleteListeners": lambda c: c.delete_listeners("shop", workflow_id="wf"),
        "Nack": lambda c: c.nack("shop", "g", 7, retry_after=1.5),
    }
    for method in not_retried:
        fake.bus.failures[method] = [grpc.StatusCode.UNAVAILABLE]
    fake.bus.failures["Publish"] = [grpc.StatusCode.INVALID_ARGUMENT]
    with Client(fake.target) as client:
        for method, call in not_retried.items():
            with pytest.raises(grpc.RpcError) as unavailable:
                call(client)
            assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE, method
            assert fake.bus.calls(method) == 1, method
        with pytest.raises(grpc.RpcError) as invalid:
            client.publish("shop", [new_event("/s", "t")])
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.bus.calls("Publish") == 1


def test_register_listener_sends_a_request_id(fake: FakeServer) -> None:
    with Client("http://" + fake.target) as client:
        first = client.register_listener("shop", ListenerSpecBuilder.start("wf").one("a"))
        second = client.register_listener("shop", ListenerSpecBuilder.start("wf").one("a").build(), "fire-1")
        assert client.get_listener("shop", first.listener.id) == first.listener
    requests = fake.bus.requests["RegisterListener"]
    assert isinstance(requests[0], pb.RegisterListenerRequest)
    assert isinstance(requests[1], pb.RegisterListenerRequest)
    assert len(requests[0].request_id) == 36  # a generated UUIDv7
    assert requests[1].request_id == "fire-1"
    assert second.listener.spec.workflow_id == "wf"


def test_list_listeners_and_events_follow_pages(fake: FakeServer) -> None:
    fake.bus.listeners = [listener_pb2.Listener(id=f"l{i}") for i in range(5)]
    fake.bus.events = [cloudevent_pb2.StoredEvent(sequence=i) for i in range(1, 4)]
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with Client(fake.target) as client:
        listeners = list(client.list_listeners("shop", kind=listener_pb2.LISTENER_KIND_WAIT, include_finished=True))
        events = list(client.list_events("shop", type="order.created", start_time=since))
    assert [listener.id for listener in listeners] == ["l0", "l1", "l2", "l3", "l4"]
    assert [event.sequence for event in events] == [1, 2, 3]
    tokens = [r.page_token for r in fake.bus.requests["ListListeners"] if isinstance(r, pb.ListListenersRequest)]
    assert tokens == ["", "2", "4"]
    first = fake.bus.requests["ListListeners"][0]
    assert isinstance(first, pb.ListListenersRequest)
    assert first.kind == listener_pb2.LISTENER_KIND_WAIT and first.include_finished
    list_events = fake.bus.requests["ListEvents"][0]
    assert isinstance(list_events, pb.ListEventsRequest)
    assert list_events.type == "order.created"
    assert list_events.start_time.ToJsonString() == "2026-01-01T00:00:00Z"


def test_delete_listeners_needs_exactly_one_selector(fake: FakeServer) -> None:
    with Client(fake.target) as client:
        assert client.delete_listeners("shop", workflow_id="wf") == 3
        assert client.delete_listeners("shop", instance_id="i-1") == 3
        with pytest.raises(ValueError):
            client.delete_listeners("shop")
        with pytest.raises(ValueError):
            client.delete_listeners("shop", workflow_id="wf", instance_id="i")
    requests = [r for r in fake.bus.requests["DeleteListeners"] if isinstance(r, pb.DeleteListenersRequest)]
    assert [r.WhichOneof("selector") for r in requests] == ["workflow_id", "instance_id"]


def test_get_event_by_sequence_or_key(fake: FakeServer) -> None:
    with Client(fake.target) as client:
        assert client.get_event("shop", 5).sequence == 5
        client.get_event("shop", source="/s", id="e-1")
        with pytest.raises(ValueError):
            client.get_event("shop", source="/s")
    second = fake.bus.requests["GetEvent"][1]
    assert isinstance(second, pb.GetEventRequest)
    assert (second.source_id.source, second.source_id.id) == ("/s", "e-1")


def test_ack_batches_and_nack_fields(fake: FakeServer) -> None:
    with Client(fake.target) as client:
        assert client.ack("shop", "g", range(1, 2501)) == 2500
        assert client.ack("shop", "g", 1) == 0
        assert client.ack("shop", "g", []) == 0
        client.nack("shop", "g", 7, retry_after=1.5, reason="x" * 2000)
    sizes = [len(r.sequences) for r in fake.bus.requests["Ack"] if isinstance(r, pb.AckRequest)]
    assert sizes == [1000, 1000, 500, 1]
    (nack,) = fake.bus.nacks
    assert nack.sequence == 7
    assert nack.retry_after.ToMilliseconds() == 1500
    assert len(nack.reason) == 1024


def test_subscribe_skips_keepalives_and_ends_on_cancel(fake: FakeServer) -> None:
    for item in (KEEPALIVE, notification(1), KEEPALIVE, notification(2)):
        fake.bus.outbox.put(item)
    with Client(fake.target) as client:
        subscription = client.subscribe(
            "shop", "runners", kinds=["start", notification_pb2.NOTIFICATION_KIND_WAKE], max_in_flight=8,
            lease_duration=10, start="latest", max_attempts=3,
        )
        got = [next(subscription).sequence, next(subscription).sequence]
        assert subscription.keepalives == 2
        subscription.ack(notification(1))
        threading.Timer(0.1, subscription.cancel).start()
        assert list(subscription) == []
    assert got == [1, 2]
    request = fake.bus.requests["Subscribe"][0]
    assert isinstance(request, pb.SubscribeRequest)
    assert list(request.kinds) == [notification_pb2.NOTIFICATION_KIND_START, notification_pb2.NOTIFICATION_KIND_WAKE]
    assert (request.max_in_flight, request.lease_duration.seconds, request.max_attempts) == (8, 10, 3)
    assert request.start == pb.START_POSITION_LATEST
    assert fake.bus.acked == [1]
    wait_for(lambda: fake.bus.streams_closed == 1, what="stream closed on the server")


def test_subscribe_raises_stream_errors_and_stops_at_stream_end(fake: FakeServer) -> None:
    fake.bus.outbox.put(grpc.StatusCode.FAILED_PRECONDITION)
    with Client(fake.target) as client:
        with pytest.raises(grpc.RpcError) as failed:
            next(client.subscribe("shop", "runners"))
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        fake.bus.outbox.put(END)
        assert list(client.subscribe("shop", "runners")) == []


def test_unknown_kinds_and_start_positions_are_rejected(fake: FakeServer) -> None:
    with Client(fake.target) as client:
        with pytest.raises(ValueError, match="kind"):
            client.subscribe("shop", "g", kinds=["begin"])
        with pytest.raises(ValueError, match="start"):
            client.subscribe("shop", "g", start="newest")


@pytest.mark.asyncio
async def test_async_client_calls_and_subscription(fake: FakeServer, tracing: Tracing) -> None:
    fake.bus.listeners = [listener_pb2.Listener(id=f"l{i}") for i in range(3)]
    fake.bus.failures["Ack"] = [grpc.StatusCode.UNAVAILABLE]
    for item in (KEEPALIVE, notification(1), notification(2), END):
        fake.bus.outbox.put(item)
    async with AsyncClient(fake.target) as client:
        with tracing.provider.get_tracer("test").start_as_current_span("produce") as span:
            results = await client.publish("shop", [new_event("/s", "t")])
        assert [r.sequence for r in results] == [1]
        registration = await client.register_listener("shop", ListenerSpecBuilder.start("wf").one("a"))
        assert registration.created
        listed = [listener.id async for listener in client.list_listeners("shop")]
        assert listed == ["l0", "l1", "l2", registration.listener.id]
        got = []
        async with client.subscribe("shop", "runners") as subscription:
            async for note in subscription:
                got.append(note.sequence)
                assert await subscription.ack(note) == 1
        assert got == [1, 2]
        assert subscription.keepalives == 1
        assert await client.delete_listeners("shop", workflow_id="wf") == 3
        assert await client.nack("shop", "runners", 1, retry_after=0.25) is False
    (metadata,) = fake.bus.metadata["Publish"]
    assert metadata["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    assert fake.bus.acked == [1, 2]
    assert fake.bus.calls("Ack") == 3  # one retried after UNAVAILABLE


@pytest.mark.asyncio
async def test_async_subscription_cancel_ends_a_pending_read(fake: FakeServer) -> None:
    async with AsyncClient(fake.target) as client:
        subscription = client.subscribe("shop", "runners")
        reader = asyncio.ensure_future(subscription.read())
        await asyncio.sleep(0.1)
        assert not reader.done()
        subscription.cancel()
        assert await asyncio.wait_for(reader, 5) is None
        assert subscription.cancelled
        assert [n async for n in subscription] == []


def test_token_is_sent_as_a_bearer_authorization_by_both_clients(fake: FakeServer) -> None:
    with Client(fake.target, token="ebt_secret", metadata=[("x-tenant", "acme")]) as client:
        client.publish("shop", [new_event("/s", "t", id="sync")])

    async def publish() -> None:
        async with AsyncClient(fake.target, token="ebt_secret") as client:
            await client.publish("shop", [new_event("/s", "t", id="async")])

    asyncio.run(publish())
    sync, aio = fake.bus.metadata["Publish"]
    assert (sync["authorization"], sync["x-tenant"]) == ("Bearer ebt_secret", "acme")
    assert aio["authorization"] == "Bearer ebt_secret"


@pytest.mark.parametrize(
    ("target", "kwargs", "error"),
    [
        ("http://h:1", {"root_certificates": b"ca"}, "http://h:1 is plaintext, but TLS settings were given"),
        ("h:1", {"certificate_chain": b"c"}, "certificate_chain and private_key go together"),
        ("h:1", {"token": "two words"}, "token must be a non-empty string"),
        ("h:1", {"token": ""}, "token must be a non-empty string"),
    ],
)
def test_tls_and_token_arguments_are_checked(target: str, kwargs: dict[str, object], error: str) -> None:
    for client_class in (Client, AsyncClient):
        with pytest.raises(ValueError, match=error):
            client_class(target, **kwargs)  # type: ignore[arg-type]
