"""The synchronous client: :class:`Client` and the notification stream :class:`Subscription`.

Every call sends the current OpenTelemetry trace context as ``traceparent`` / ``tracestate``
metadata (see :mod:`eventbus.tracing`) and raises ``grpc.RpcError`` on failure; ``e.code()``
is the status (the contract lists which codes each RPC returns). Unary calls are retried by the
channel on ``UNAVAILABLE`` (gRPC retry policy; see ``eventbus._common.RETRIED_METHODS``) and
time out after the client's ``timeout`` (30 s by default).

A :class:`Subscription` is a plain stream: it does not reconnect. :class:`eventbus.Runner`
adds reconnects, handler dispatch, ack / nack and tracing on top of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import grpc

from eventbus._common import (
    ChannelOptions,
    KindLike,
    Metadata,
    StartLike,
    SubscribeOptions,
    ack_batches,
    channel_options,
    delete_listeners_request,
    get_event_request,
    listener_kind,
    nack_request,
    subscribe_options,
    token_metadata,
    transport_credentials,
)
from eventbus.events import new_event_id, to_timestamp
from eventbus.listeners import ListenerSpecBuilder
from eventbus.publisher import Publisher
from eventbus.tracing import call_metadata
from eventbus.v1 import cloudevent_pb2, event_bus_service_pb2_grpc, listener_pb2, notification_pb2
from eventbus.v1 import event_bus_service_pb2 as pb

if TYPE_CHECKING:
    _SubscribeCall = grpc._CallIterator[pb.SubscribeResponse]

__all__ = ["Client", "Subscription"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

#: Unary call timeout of a client unless it is given another one, in seconds.
DEFAULT_TIMEOUT = 30.0


class Client:
    """A synchronous eventbus client over one gRPC channel. Thread-safe.

    ``target`` is ``host:port`` (or ``http://host:port``; ``https://`` uses TLS with the
    system roots unless ``credentials`` are given), or any gRPC target such as
    ``dns:///eventbus:50051``. ``options`` are gRPC channel options applied over the defaults
    (keepalive, retries on ``UNAVAILABLE``, reconnect backoff); ``metadata`` is sent with every
    call; ``timeout`` bounds each unary call, in seconds (``None``: no deadline).

    TLS: ``root_certificates`` (PEM of the CAs to trust), and for mutual TLS
    ``certificate_chain`` and ``private_key`` (PEM), turn TLS on as ``https://`` does; or pass
    ready ``credentials``. ``https://`` never falls back to plaintext. ``token`` is sent as
    ``authorization: Bearer <token>`` with every call.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        target: str,
        *,
        options: ChannelOptions | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        token: str | None = None,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
    ) -> None:
        address, creds = transport_credentials(target, credentials, root_certificates, certificate_chain, private_key)
        every_call = token_metadata(metadata, token)
        merged = channel_options(options)
        if creds is not None:
            channel = grpc.secure_channel(address, creds, options=merged)
        else:
            channel = grpc.insecure_channel(address, options=merged)
        self._init(channel, every_call, timeout)

    @classmethod
    def from_channel(
        cls, channel: grpc.Channel, *, metadata: Metadata | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Client:
        """Returns a client over an existing channel (for example an intercepted one).

        :meth:`close` closes the channel.
        """
        client = cls.__new__(cls)
        client._init(channel, metadata, timeout)
        return client

    def _init(self, channel: grpc.Channel, metadata: Metadata | None, timeout: float | None) -> None:
        self._channel = channel
        self._metadata = tuple(metadata or ())
        self._timeout = timeout
        #: The generated stub, for calls this class does not wrap.
        self.stub = event_bus_service_pb2_grpc.EventBusServiceStub(channel)
        stub = self.stub
        self._publish: grpc.UnaryUnaryMultiCallable[pb.PublishRequest, pb.PublishResponse] = stub.Publish
        self._publish_stream: grpc.StreamStreamMultiCallable[pb.PublishStreamRequest, pb.PublishStreamResponse] = (
            stub.PublishStream
        )
        self._register: grpc.UnaryUnaryMultiCallable[pb.RegisterListenerRequest, pb.RegisterListenerResponse] = (
            stub.RegisterListener
        )
        self._get_listener: grpc.UnaryUnaryMultiCallable[pb.GetListenerRequest, pb.GetListenerResponse] = (
            stub.GetListener
        )
        self._list_listeners: grpc.UnaryUnaryMultiCallable[pb.ListListenersRequest, pb.ListListenersResponse] = (
            stub.ListListeners
        )
        self._delete_listener: grpc.UnaryUnaryMultiCallable[pb.DeleteListenerRequest, pb.DeleteListenerResponse] = (
            stub.DeleteListener
        )
        self._delete_listeners: grpc.UnaryUnaryMultiCallable[
            pb.DeleteListenersRequest, pb.DeleteListenersResponse
        ] = stub.DeleteListeners
        self._subscribe: grpc.UnaryStreamMultiCallable[pb.SubscribeRequest, pb.SubscribeResponse] = stub.Subscribe
        self._ack: grpc.UnaryUnaryMultiCallable[pb.AckRequest, pb.AckResponse] = stub.Ack
        self._nack: grpc.UnaryUnaryMultiCallable[pb.NackRequest, pb.NackResponse] = stub.Nack
        self._list_dead_letters: grpc.UnaryUnaryMultiCallable[
            pb.ListDeadLettersRequest, pb.ListDeadLettersResponse
        ] = stub.ListDeadLetters
        self._redrive: grpc.UnaryUnaryMultiCallable[pb.RedriveDeadLettersRequest, pb.RedriveDeadLettersResponse] = (
            stub.RedriveDeadLetters
        )
        self._get_event: grpc.UnaryUnaryMultiCallable[pb.GetEventRequest, pb.GetEventResponse] = stub.GetEvent
        self._list_events: grpc.UnaryUnaryMultiCallable[pb.ListEventsRequest, pb.ListEventsResponse] = (
            stub.ListEvents
        )

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel."""
        return self._channel

    def close(self) -> None:
        """Closes the channel; streams still open end with ``CANCELLED``."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(
        self, rpc: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req, timeout: float | None
    ) -> _Resp:
        return rpc(
            request,
            timeout=self._timeout if timeout is None else timeout,
            metadata=call_metadata(self._metadata),
        )

    # --- events -----------------------------------------------------------------------------

    def publish(
        self, namespace: str, events: Iterable[cloudevent_pb2.CloudEvent], *, timeout: float | None = None
    ) -> list[pb.PublishResult]:
        """Publishes a batch of events (at most 1000) and returns one result per event, in order.

        Each result has the event's ``sequence`` and ``duplicate`` (True when the (source, id)
        pair was stored before, whose sequence it then carries). Retrying with the same events
        is safe. Errors: ``INVALID_ARGUMENT`` (nothing stored), ``RESOURCE_EXHAUSTED``.
        """
        request = pb.PublishRequest(namespace=namespace, events=list(events))
        return list(self._call(self._publish, request, timeout).results)

    def publisher(self) -> Publisher:
        """Opens a PublishStream call and returns the :class:`Publisher` that sends on it.

        Each ``publisher.publish(namespace, events)`` is one message of the stream, so many
        threads can have a publish in flight at once without a call each; the error of one
        message fails only its publish. The stream is not retried or reopened: see
        :mod:`eventbus.publisher`. Use it as a context manager (``with client.publisher() as
        publisher:``), or call its ``close()``.
        """
        return Publisher(self._publish_stream, call_metadata(self._metadata), self._timeout)

    def get_event(
        self,
        namespace: str,
        sequence: int | None = None,
        *,
        source: str | None = None,
        id: str | None = None,
        timeout: float | None = None,
    ) -> cloudevent_pb2.StoredEvent:
        """Returns a stored event by ``sequence`` or by ``source=`` and ``id=``. ``NOT_FOUND`` if none."""
        request = get_event_request(namespace, sequence, source, id)
        return self._call(self._get_event, request, timeout).event

    def list_events(
        self,
        namespace: str,
        *,
        type: str = "",
        source: str = "",
        subject: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        after_sequence: int = 0,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[cloudevent_pb2.StoredEvent]:
        """Yields the namespace's stored events in ascending sequence, fetching page by page.

        Empty filters match everything; times are receive times (``start_time`` inclusive,
        ``end_time`` exclusive). ``page_size`` 0 lets the server choose (100).
        """
        request = pb.ListEventsRequest(
            namespace=namespace,
            type=type,
            source=source,
            subject=subject,
            after_sequence=after_sequence,
            page_size=page_size,
        )
        if start_time is not None:
            request.start_time.CopyFrom(to_timestamp(start_time, "start_time"))
        if end_time is not None:
            request.end_time.CopyFrom(to_timestamp(end_time, "end_time"))
        while True:
            response = self._call(self._list_events, request, timeout)
            yield from response.events
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    # --- listeners --------------------------------------------------------------------------

    def register_listener(
        self,
        namespace: str,
        spec: listener_pb2.ListenerSpec | ListenerSpecBuilder,
        request_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> pb.RegisterListenerResponse:
        """Registers a listener; returns the response (``.listener`` with its id, ``.created``).

        ``request_id`` makes registration idempotent: a retry with the same id and spec returns
        the first listener (``created`` False); the same id with another spec is
        ``ALREADY_EXISTS``. Without one the client sends a fresh UUIDv7, so its own transport
        retries cannot register twice; pass a stable id (for example the ``fire_id`` of the
        notification being handled) to make retries across processes idempotent too.
        """
        if isinstance(spec, ListenerSpecBuilder):
            spec = spec.build()
        request = pb.RegisterListenerRequest(
            namespace=namespace, listener=spec, request_id=request_id or new_event_id()
        )
        return self._call(self._register, request, timeout)

    def get_listener(self, namespace: str, id: str, *, timeout: float | None = None) -> listener_pb2.Listener:
        """Returns a listener, active or finished. ``NOT_FOUND`` if there is none with that id."""
        request = pb.GetListenerRequest(namespace=namespace, id=id)
        return self._call(self._get_listener, request, timeout).listener

    def list_listeners(
        self,
        namespace: str,
        *,
        kind: int = listener_pb2.LISTENER_KIND_UNSPECIFIED,
        workflow_id: str = "",
        instance_id: str = "",
        include_finished: bool = False,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[listener_pb2.Listener]:
        """Yields the namespace's listeners in registration order, fetching page by page.

        Only ACTIVE ones unless ``include_finished``; ``kind``, ``workflow_id`` and
        ``instance_id`` narrow the listing when set.
        """
        request = pb.ListListenersRequest(
            namespace=namespace,
            kind=listener_kind(kind),
            workflow_id=workflow_id,
            instance_id=instance_id,
            include_finished=include_finished,
            page_size=page_size,
        )
        while True:
            response = self._call(self._list_listeners, request, timeout)
            yield from response.listeners
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def delete_listener(self, namespace: str, id: str, *, timeout: float | None = None) -> None:
        """Deletes one listener (cancelling a WAIT). ``NOT_FOUND`` if there is none with that id."""
        request = pb.DeleteListenerRequest(namespace=namespace, id=id)
        self._call(self._delete_listener, request, timeout)

    def delete_listeners(
        self,
        namespace: str,
        *,
        workflow_id: str | None = None,
        instance_id: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Deletes every START listener of ``workflow_id`` or every WAIT listener of
        ``instance_id`` (give exactly one); returns how many were deleted."""
        request = delete_listeners_request(namespace, workflow_id, instance_id)
        return self._call(self._delete_listeners, request, timeout).deleted_count

    # --- notifications ----------------------------------------------------------------------

    def subscribe(
        self,
        namespace: str,
        consumer_group: str,
        *,
        kinds: Iterable[KindLike] = (),
        workflow_ids: Iterable[str] = (),
        max_in_flight: int = 0,
        lease_duration: timedelta | float | None = None,
        start: StartLike = None,
        start_sequence: int = 0,
        max_attempts: int = 0,
    ) -> Subscription:
        """Opens a notification stream for a consumer group; see :class:`SubscribeOptions`.

        Iterate the returned :class:`Subscription` for notifications (keepalives are skipped)
        and settle each with :meth:`ack` / :meth:`nack` (or ``Subscription.ack``). Errors
        surface while iterating: ``FAILED_PRECONDITION`` when the group exists with other
        settings, ``UNAVAILABLE`` when the server goes away.
        """
        options = subscribe_options(
            namespace,
            consumer_group,
            kinds=kinds,
            workflow_ids=workflow_ids,
            max_in_flight=max_in_flight,
            lease_duration=lease_duration,
            start=start,
            start_sequence=start_sequence,
            max_attempts=max_attempts,
        )
        return self.open_subscription(options)

    def open_subscription(self, options: SubscribeOptions) -> Subscription:
        """Opens a notification stream described by ``options``."""
        call = self._subscribe(options.to_request(), metadata=call_metadata(self._metadata))
        return Subscription(call, self, options)

    def ack(
        self, namespace: str, consumer_group: str, sequences: int | Iterable[int], *, timeout: float | None = None
    ) -> int:
        """Acks notifications of a group; returns how many were unsettled and are now acked.

        Sends batches of 1000; acking an acked or unknown sequence is not an error.
        """
        acked = 0
        for batch in ack_batches(sequences):
            request = pb.AckRequest(namespace=namespace, consumer_group=consumer_group, sequences=batch)
            acked += self._call(self._ack, request, timeout).acked_count
        return acked

    def nack(
        self,
        namespace: str,
        consumer_group: str,
        sequence: int,
        *,
        retry_after: timedelta | float | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> bool:
        """Gives a notification back as a failed attempt, redelivered after ``retry_after``
        (seconds or ``timedelta``; default at once). ``reason`` is cut to 1024 bytes.

        Returns True if that was the last attempt and it became a dead letter.
        ``FAILED_PRECONDITION`` if it is already acked or dead.
        """
        request = nack_request(namespace, consumer_group, sequence, retry_after, reason)
        return self._call(self._nack, request, timeout).dead_lettered

    def list_dead_letters(
        self, namespace: str, consumer_group: str, *, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[notification_pb2.DeadLetter]:
        """Yields a group's dead letters in ascending sequence, fetching page by page."""
        request = pb.ListDeadLettersRequest(namespace=namespace, consumer_group=consumer_group, page_size=page_size)
        while True:
            response = self._call(self._list_dead_letters, request, timeout)
            yield from response.dead_letters
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def redrive_dead_letters(
        self,
        namespace: str,
        consumer_group: str,
        sequences: Iterable[int] = (),
        *,
        timeout: float | None = None,
    ) -> int:
        """Puts dead letters back into delivery (all of the group's when ``sequences`` is empty);
        returns how many."""
        request = pb.RedriveDeadLettersRequest(
            namespace=namespace, consumer_group=consumer_group, sequences=list(sequences)
        )
        return self._call(self._redrive, request, timeout).redriven_count


class Subscription(Iterator[notification_pb2.Notification]):
    """A Subscribe stream: iterates notifications, skipping keepalives.

    Iteration ends after :meth:`cancel` (from any thread) and raises ``grpc.RpcError`` when the
    stream fails; when the server ends the stream it stops (``StopIteration``), which the
    contract only does on shutdown, so reconnect (or use :class:`eventbus.Runner`).
    Use it as a context manager to cancel it on exit.
    """

    def __init__(self, call: _SubscribeCall, client: Client, options: SubscribeOptions) -> None:
        self._call = call
        self._client = client
        self.options = options
        self._cancelled = False
        #: Keepalives received so far.
        self.keepalives = 0

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> notification_pb2.Notification:
        while True:
            try:
                response = next(self._call)
            except grpc.RpcError as exc:
                if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise
            if response.HasField("notification"):
                return response.notification
            self.keepalives += 1

    def cancel(self) -> None:
        """Ends the stream; the server redelivers unsettled notifications elsewhere."""
        self._cancelled = True
        self._call.cancel()

    @property
    def cancelled(self) -> bool:
        """True after :meth:`cancel`."""
        return self._cancelled

    def ack(self, notification: notification_pb2.Notification) -> int:
        """Acks a notification of this stream's group."""
        return self._client.ack(self.options.namespace, self.options.consumer_group, notification.sequence)

    def nack(
        self,
        notification: notification_pb2.Notification,
        *,
        retry_after: timedelta | float | None = None,
        reason: str = "",
    ) -> bool:
        """Nacks a notification of this stream's group; see :meth:`Client.nack`."""
        return self._client.nack(
            self.options.namespace,
            self.options.consumer_group,
            notification.sequence,
            retry_after=retry_after,
            reason=reason,
        )

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()
