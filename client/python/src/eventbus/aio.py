"""The asyncio client: :class:`AsyncClient` and the notification stream :class:`AsyncSubscription`.

The same calls as :class:`eventbus.Client`, as coroutines over a ``grpc.aio`` channel, with
the same channel options, retries, timeouts and trace-context metadata. Listing methods are
async generators.

Hazard: a ``grpc.aio`` channel belongs to the event loop it is first used on. Create the client
inside a coroutine (``async with AsyncClient(...) as client``) and do not share it between
loops or threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TypeVar

import grpc
import grpc.aio

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
from eventbus.client import DEFAULT_TIMEOUT
from eventbus.events import new_event_id, to_timestamp
from eventbus.listeners import ListenerSpecBuilder
from eventbus.publisher import AsyncPublisher
from eventbus.tracing import call_metadata
from eventbus.v1 import cloudevent_pb2, event_bus_service_pb2_grpc, listener_pb2, notification_pb2
from eventbus.v1 import event_bus_service_pb2 as pb

__all__ = ["AsyncClient", "AsyncSubscription"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AsyncClient:
    """An asyncio eventbus client over one ``grpc.aio`` channel.

    Arguments as for :class:`eventbus.Client`. Use it with ``async with``, or await
    :meth:`close`.
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
            channel = grpc.aio.secure_channel(address, creds, options=merged)
        else:
            channel = grpc.aio.insecure_channel(address, options=merged)
        self._init(channel, every_call, timeout)

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, metadata: Metadata | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> AsyncClient:
        """Returns a client over an existing ``grpc.aio`` channel; :meth:`close` closes it."""
        client = cls.__new__(cls)
        client._init(channel, metadata, timeout)
        return client

    def _init(self, channel: grpc.aio.Channel, metadata: Metadata | None, timeout: float | None) -> None:
        self._channel = channel
        self._metadata = tuple(metadata or ())
        self._timeout = timeout
        #: The generated stub, for calls this class does not wrap.
        self.stub = event_bus_service_pb2_grpc.EventBusServiceStub(channel)
        stub = self.stub
        self._publish: grpc.aio.UnaryUnaryMultiCallable[pb.PublishRequest, pb.PublishResponse] = stub.Publish
        self._publish_stream: grpc.aio.StreamStreamMultiCallable[
            pb.PublishStreamRequest, pb.PublishStreamResponse
        ] = stub.PublishStream
        self._register: grpc.aio.UnaryUnaryMultiCallable[
            pb.RegisterListenerRequest, pb.RegisterListenerResponse
        ] = stub.RegisterListener
        self._get_listener: grpc.aio.UnaryUnaryMultiCallable[pb.GetListenerRequest, pb.GetListenerResponse] = (
            stub.GetListener
        )
        self._list_listeners: grpc.aio.UnaryUnaryMultiCallable[
            pb.ListListenersRequest, pb.ListListenersResponse
        ] = stub.ListListeners
        self._delete_listener: grpc.aio.UnaryUnaryMultiCallable[
            pb.DeleteListenerRequest, pb.DeleteListenerResponse
        ] = stub.DeleteListener
        self._delete_listeners: grpc.aio.UnaryUnaryMultiCallable[
            pb.DeleteListenersRequest, pb.DeleteListenersResponse
        ] = stub.DeleteListeners
        self._subscribe: grpc.aio.UnaryStreamMultiCallable[pb.SubscribeRequest, pb.SubscribeResponse] = (
            stub.Subscribe
        )
        self._ack: grpc.aio.UnaryUnaryMultiCallable[pb.AckRequest, pb.AckResponse] = stub.Ack
        self._nack: grpc.aio.UnaryUnaryMultiCallable[pb.NackRequest, pb.NackResponse] = stub.Nack
        self._list_dead_letters: grpc.aio.UnaryUnaryMultiCallable[
            pb.ListDeadLettersRequest, pb.ListDeadLettersResponse
        ] = stub.ListDeadLetters
        self._redrive: grpc.aio.UnaryUnaryMultiCallable[
            pb.RedriveDeadLettersRequest, pb.RedriveDeadLettersResponse
        ] = stub.RedriveDeadLetters
        self._get_event: grpc.aio.UnaryUnaryMultiCallable[pb.GetEventRequest, pb.GetEventResponse] = stub.GetEvent
        self._list_events: grpc.aio.UnaryUnaryMultiCallable[pb.ListEventsRequest, pb.ListEventsResponse] = (
            stub.ListEvents
        )

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying ``grpc.aio`` channel."""
        return self._channel

    async def close(self, grace: float | None = None) -> None:
        """Closes the channel, giving calls in flight ``grace`` seconds (default: cancel them)."""
        await self._channel.close(grace)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req, timeout: float | None
    ) -> _Resp:
        return await rpc(
            request,
            timeout=self._timeout if timeout is None else timeout,
            metadata=call_metadata(self._metadata),
        )

    # --- events -----------------------------------------------------------------------------

    async def publish(
        self, namespace: str, events: Iterable[cloudevent_pb2.CloudEvent], *, timeout: float | None = None
    ) -> list[pb.PublishResult]:
        """See :meth:`eventbus.Client.publish`."""
        request = pb.PublishRequest(namespace=namespace, events=list(events))
        return list((await self._call(self._publish, request, timeout)).results)

    def publisher(self) -> AsyncPublisher:
        """Opens a PublishStream call and returns the :class:`AsyncPublisher` that sends on it:
        ``async with client.publisher() as publisher:``. Not a coroutine: the stream starts at
        once. See :meth:`eventbus.Client.publisher`.
        """
        return AsyncPublisher(self._publish_stream, call_metadata(self._metadata), self._timeout)

    async def get_event(
        self,
        namespace: str,
        sequence: int | None = None,
        *,
        source: str | None = None,
        id: str | None = None,
        timeout: float | None = None,
    ) -> cloudevent_pb2.StoredEvent:
        """See :meth:`eventbus.Client.get_event`."""
        request = get_event_request(namespace, sequence, source, id)
        return (await self._call(self._get_event, request, timeout)).event

    async def list_events(
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
    ) -> AsyncIterator[cloudevent_pb2.StoredEvent]:
        """See :meth:`eventbus.Client.list_events`."""
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
            response = await self._call(self._list_events, request, timeout)
            for event in response.events:
                yield event
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    # --- listeners --------------------------------------------------------------------------

    async def register_listener(
        self,
        namespace: str,
        spec: listener_pb2.ListenerSpec | ListenerSpecBuilder,
        request_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> pb.RegisterListenerResponse:
        """See :meth:`eventbus.Client.register_listener`."""
        if isinstance(spec, ListenerSpecBuilder):
            spec = spec.build()
        request = pb.RegisterListenerRequest(
            namespace=namespace, listener=spec, request_id=request_id or new_event_id()
        )
        return await self._call(self._register, request, timeout)

    async def get_listener(self, namespace: str, id: str, *, timeout: float | None = None) -> listener_pb2.Listener:
        """See :meth:`eventbus.Client.get_listener`."""
        request = pb.GetListenerRequest(namespace=namespace, id=id)
        return (await self._call(self._get_listener, request, timeout)).listener

    async def list_listeners(
        self,
        namespace: str,
        *,
        kind: int = listener_pb2.LISTENER_KIND_UNSPECIFIED,
        workflow_id: str = "",
        instance_id: str = "",
        include_finished: bool = False,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[listener_pb2.Listener]:
        """See :meth:`eventbus.Client.list_listeners`."""
        request = pb.ListListenersRequest(
            namespace=namespace,
            kind=listener_kind(kind),
            workflow_id=workflow_id,
            instance_id=instance_id,
            include_finished=include_finished,
            page_size=page_size,
        )
        while True:
            response = await self._call(self._list_listeners, request, timeout)
            for listener in response.listeners:
                yield listener
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def delete_listener(self, namespace: str, id: str, *, timeout: float | None = None) -> None:
        """See :meth:`eventbus.Client.delete_listener`."""
        request = pb.DeleteListenerRequest(namespace=namespace, id=id)
        await self._call(self._delete_listener, request, timeout)

    async def delete_listeners(
        self,
        namespace: str,
        *,
        workflow_id: str | None = None,
        instance_id: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """See :meth:`eventbus.Client.delete_listeners`."""
        request = delete_listeners_request(namespace, workflow_id, instance_id)
        return (await self._call(self._delete_listeners, request, timeout)).deleted_count

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
    ) -> AsyncSubscription:
        """Opens a notification stream: ``async for notification in client.subscribe(...)``.

        Not a coroutine: the stream starts at once. See :meth:`eventbus.Client.subscribe`.
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

    def open_subscription(self, options: SubscribeOptions) -> AsyncSubscription:
        """Opens a notification stream described by ``options``."""
        call = self._subscribe(options.to_request(), metadata=call_metadata(self._metadata))
        return AsyncSubscription(call, self, options)

    async def ack(
        self, namespace: str, consumer_group: str, sequences: int | Iterable[int], *, timeout: float | None = None
    ) -> int:
        """See :meth:`eventbus.Client.ack`."""
        acked = 0
        for batch in ack_batches(sequences):
            request = pb.AckRequest(namespace=namespace, consumer_group=consumer_group, sequences=batch)
            acked += (await self._call(self._ack, request, timeout)).acked_count
        return acked

    async def nack(
        self,
        namespace: str,
        consumer_group: str,
        sequence: int,
        *,
        retry_after: timedelta | float | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> bool:
        """See :meth:`eventbus.Client.nack`."""
        request = nack_request(namespace, consumer_group, sequence, retry_after, reason)
        return (await self._call(self._nack, request, timeout)).dead_lettered

    async def list_dead_letters(
        self, namespace: str, consumer_group: str, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[notification_pb2.DeadLetter]:
        """See :meth:`eventbus.Client.list_dead_letters`."""
        request = pb.ListDeadLettersRequest(namespace=namespace, consumer_group=consumer_group, page_size=page_size)
        while True:
            response = await self._call(self._list_dead_letters, request, timeout)
            for dead_letter in response.dead_letters:
                yield dead_letter
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def redrive_dead_letters(
        self,
        namespace: str,
        consumer_group: str,
        sequences: Iterable[int] = (),
        *,
        timeout: float | None = None,
    ) -> int:
        """See :meth:`eventbus.Client.redrive_dead_letters`."""
        request = pb.RedriveDeadLettersRequest(
            namespace=namespace, consumer_group=consumer_group, sequences=list(sequences)
        )
        return (await self._call(self._redrive, request, timeout)).redriven_count


def task_cancelling() -> bool:
    """True if the current asyncio task has a cancellation pending (always False on 3.10)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class AsyncSubscription(AsyncIterator[notification_pb2.Notification]):
    """A Subscribe stream: ``async for`` yields notifications, skipping keepalives.

    Iteration ends after :meth:`cancel` or when the server ends the stream, and raises
    ``grpc.aio.AioRpcError`` when the stream fails. Does not reconnect; see
    :class:`eventbus.AsyncRunner`. ``async with`` cancels it on exit.
    """

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[pb.SubscribeRequest, pb.SubscribeResponse],
        client: AsyncClient,
        options: SubscribeOptions,
    ) -> None:
        self._call = call
        self._client = client
        self.options = options
        self._cancelled = False
        #: Keepalives received so far.
        self.keepalives = 0

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> notification_pb2.Notification:
        response = await self.read()
        if response is None:
            raise StopAsyncIteration
        return response

    async def read(self) -> notification_pb2.Notification | None:
        """Returns the next notification, or None once the stream has ended or was cancelled."""
        while True:
            if self._cancelled:
                return None
            try:
                response = await self._call.read()
            except asyncio.CancelledError:
                # grpc.aio raises CancelledError from a call cancelled locally: ours, unless this
                # task is itself being cancelled.
                if self._cancelled and not task_cancelling():
                    return None
                raise
            except grpc.aio.AioRpcError as exc:
                if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                    return None
                raise
            if response is grpc.aio.EOF:
                return None
            assert isinstance(response, pb.SubscribeResponse)
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

    async def ack(self, notification: notification_pb2.Notification) -> int:
        """Acks a notification of this stream's group."""
        return await self._client.ack(self.options.namespace, self.options.consumer_group, notification.sequence)

    async def nack(
        self,
        notification: notification_pb2.Notification,
        *,
        retry_after: timedelta | float | None = None,
        reason: str = "",
    ) -> bool:
        """Nacks a notification of this stream's group; see :meth:`eventbus.Client.nack`."""
        return await self._client.nack(
            self.options.namespace,
            self.options.consumer_group,
            notification.sequence,
            retry_after=retry_after,
            reason=reason,
        )

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()
