"""An in-process, scriptable EventBusService for testing the client side on loopback.

It is not a model of eventbus: it records what clients send and plays back what a test puts
in its outbox (notifications, keepalives, stream aborts, stream ends). Tests of the real
semantics run against the live server (test_integration.py).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from eventbus.v1 import cloudevent_pb2, event_bus_service_pb2_grpc, listener_pb2, notification_pb2
from eventbus.v1 import event_bus_service_pb2 as pb


class _Keepalive:
    pass


class _End:
    pass


class _Hold:
    pass


#: Outbox item: send a Keepalive.
KEEPALIVE = _Keepalive()
#: Outbox item: end the stream that takes it with OK.
END = _End()
#: Stream script item: leave the message unanswered.
HOLD = _Hold()

OutboxItem = notification_pb2.Notification | grpc.StatusCode | _Keepalive | _End
StreamItem = pb.PublishError | pb.PublishStreamResponse | grpc.StatusCode | _Hold | None

_T = TypeVar("_T")


def wait_for(predicate: Callable[[], _T], timeout: float = 10.0, what: str = "condition") -> _T:
    """Polls ``predicate`` every 10 ms until it returns something truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


async def async_wait_for(predicate: Callable[[], _T], timeout: float = 10.0, what: str = "condition") -> _T:
    """Like :func:`wait_for`, yielding to the event loop between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class FakeBus(event_bus_service_pb2_grpc.EventBusServiceServicer):
    """The servicer. Every field may be read by tests; take ``lock`` for consistent snapshots."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    outbox: queue.Queue[OutboxItem] = field(default_factory=queue.Queue)
    #: Method name -> request messages received, in order.
    requests: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    #: Method name -> invocation metadata of each call, as dicts.
    metadata: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    #: Method name -> statuses the next calls fail with, first one first.
    failures: dict[str, list[grpc.StatusCode]] = field(default_factory=lambda: defaultdict(list))
    acked: list[int] = field(default_factory=list)
    nacks: list[pb.NackRequest] = field(default_factory=list)
    #: A nacked notification goes back into the outbox with attempt + 1.
    redeliver_on_nack: bool = True
    streams_opened: int = 0
    streams_closed: int = 0
    #: PublishStream: the answer of each message, first one first. None (or an empty script)
    #: publishes it as Publish does; a PublishError fails it; a PublishStreamResponse is sent
    #: with the message's id; HOLD leaves it unanswered; a StatusCode ends the call with it.
    stream_script: list[StreamItem] = field(default_factory=list)
    #: PublishStream calls whose client half-closed them.
    publish_streams_half_closed: int = 0
    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    events: list[cloudevent_pb2.StoredEvent] = field(default_factory=list)
    page_size: int = 2
    _sequence: int = 0
    _delivered: dict[int, notification_pb2.Notification] = field(default_factory=dict)

    # --- helpers for tests ------------------------------------------------------------------

    def deliver(self, notification: notification_pb2.Notification) -> None:
        self.outbox.put(notification)

    def calls(self, method: str) -> int:
        with self.lock:
            return len(self.requests[method])

    def _enter(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.requests[method].append(request)
            self.metadata[method].append({key: str(value) for key, value in context.invocation_metadata()})
            failure = self.failures[method].pop(0) if self.failures[method] else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")

    def _next_sequence(self) -> int:
        with self.lock:
            self._sequence += 1
            return self._sequence

    # --- the service ------------------------------------------------------------------------

    def Publish(self, request: pb.PublishRequest, context: grpc.ServicerContext) -> pb.PublishResponse:
        self._enter("Publish", request, context)
        return pb.PublishResponse(
            results=[pb.PublishResult(sequence=self._next_sequence()) for _ in request.events]
        )

    def PublishStream(
        self, request_iterator: Iterator[pb.PublishStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PublishStreamResponse]:
        with self.lock:
            self.metadata["PublishStream"].append({key: str(value) for key, value in context.invocation_metadata()})
        for request in request_iterator:
            with self.lock:
                self.requests["PublishStream"].append(request)
                item = self.stream_script.pop(0) if self.stream_script else None
            if isinstance(item, grpc.StatusCode):
                context.abort(item, f"scripted {item.name}")
            if isinstance(item, _Hold):
                continue
            if isinstance(item, pb.PublishError):
                yield pb.PublishStreamResponse(id=request.id, error=item)
            elif isinstance(item, pb.PublishStreamResponse):
                answer = pb.PublishStreamResponse()
                answer.CopyFrom(item)
                answer.id = request.id
                yield answer
            else:
                results = [pb.PublishResult(sequence=self._next_sequence()) for _ in request.publish.events]
                yield pb.PublishStreamResponse(id=request.id, published=pb.PublishResponse(results=results))
        with self.lock:
            self.publish_streams_half_closed += 1

    def RegisterListener(
        self, request: pb.RegisterListenerRequest, context: grpc.ServicerContext
    ) -> pb.RegisterListenerResponse:
        self._enter("RegisterListener", request, context)
        listener = listener_pb2.Listener(
            id=str(uuid.uuid4()),
            namespace=request.namespace,
            spec=request.listener,
            status=listener_pb2.LISTENER_STATUS_ACTIVE,
            request_id=request.request_id,
        )
        with self.lock:
            self.listeners.append(listener)
        return pb.RegisterListenerResponse(listener=listener, created=True)

    def GetListener(self, request: pb.GetListenerRequest, context: grpc.ServicerContext) -> pb.GetListenerResponse:
        self._enter("GetListener", request, context)
        with self.lock:
            found = [listener for listener in self.listeners if listener.id == request.id]
        if not found:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such listener")
        return pb.GetListenerResponse(listener=found[0])

    def ListListeners(
        self, request: pb.ListListenersRequest, context: grpc.ServicerContext
    ) -> pb.ListListenersResponse:
        self._enter("ListListeners", request, context)
        offset = int(request.page_token or "0")
        with self.lock:
            page = self.listeners[offset : offset + self.page_size]
            more = offset + self.page_size < len(self.listeners)
        return pb.ListListenersResponse(
            listeners=page, next_page_token=str(offset + self.page_size) if more else ""
        )

    def DeleteListener(
        self, request: pb.DeleteListenerRequest, context: grpc.ServicerContext
    ) -> pb.DeleteListenerResponse:
        self._enter("DeleteListener", request, context)
        return pb.DeleteListenerResponse()

    def DeleteListeners(
        self, request: pb.DeleteListenersRequest, context: grpc.ServicerContext
    ) -> pb.DeleteListenersResponse:
        self._enter("DeleteListeners", request, context)
        return pb.DeleteListenersResponse(deleted_count=3)

    def GetEvent(self, request: pb.GetEventRequest, context: grpc.ServicerContext) -> pb.GetEventResponse:
        self._enter("GetEvent", request, context)
        return pb.GetEventResponse(event=cloudevent_pb2.StoredEvent(sequence=request.sequence or 7))

    def ListEvents(self, request: pb.ListEventsRequest, context: grpc.ServicerContext) -> pb.ListEventsResponse:
        self._enter("ListEvents", request, context)
        offset = int(request.page_token or "0")
        with self.lock:
            page = self.events[offset : offset + self.page_size]
            more = offset + self.page_size < len(self.events)
        return pb.ListEventsResponse(events=page, next_page_token=str(offset + self.page_size) if more else "")

    def Ack(self, request: pb.AckRequest, context: grpc.ServicerContext) -> pb.AckResponse:
        self._enter("Ack", request, context)
        with self.lock:
            new = [sequence for sequence in request.sequences if sequence not in self.acked]
            self.acked.extend(new)
        return pb.AckResponse(acked_count=len(new))

    def Nack(self, request: pb.NackRequest, context: grpc.ServicerContext) -> pb.NackResponse:
        self._enter("Nack", request, context)
        with self.lock:
            self.nacks.append(request)
            previous = self._delivered.get(request.sequence)
        if previous is not None and self.redeliver_on_nack:
            again = notification_pb2.Notification()
            again.CopyFrom(previous)
            again.attempt += 1
            self.outbox.put(again)
        return pb.NackResponse()

    def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SubscribeResponse]:
        self._enter("Subscribe", request, context)
        with self.lock:
            self.streams_opened += 1
        try:
            while context.is_active():
                try:
                    item = self.outbox.get(timeout=0.01)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    return
                if isinstance(item, grpc.StatusCode):
                    context.abort(item, f"scripted {item.name}")
                if isinstance(item, _Keepalive):
                    yield pb.SubscribeResponse(keepalive=pb.Keepalive())
                    continue
                assert isinstance(item, notification_pb2.Notification)
                with self.lock:
                    self._delivered[item.sequence] = item
                yield pb.SubscribeResponse(notification=item)
        finally:
            with self.lock:
                self.streams_closed += 1


@dataclass
class FakeServer:
    bus: FakeBus
    server: grpc.Server
    target: str


def start_fake_server() -> FakeServer:
    bus = FakeBus()
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    event_bus_service_pb2_grpc.add_EventBusServiceServicer_to_server(bus, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return FakeServer(bus=bus, server=server, target=f"127.0.0.1:{port}")


def notification(
    sequence: int,
    *,
    kind: notification_pb2.NotificationKind = notification_pb2.NOTIFICATION_KIND_START,
    attempt: int = 1,
    traceparent: str = "",
    tracestate: str = "",
    consumer_group: str = "runners",
) -> notification_pb2.Notification:
    return notification_pb2.Notification(
        fire_id=f"fire-{sequence}",
        sequence=sequence,
        kind=kind,
        listener_id="0190c0de-0000-7000-8000-000000000001",
        workflow_id="wf" if kind == notification_pb2.NOTIFICATION_KIND_START else "",
        instance_id="" if kind == notification_pb2.NOTIFICATION_KIND_START else "inst-1",
        attempt=attempt,
        traceparent=traceparent,
        tracestate=tracestate,
        consumer_group=consumer_group,
    )
