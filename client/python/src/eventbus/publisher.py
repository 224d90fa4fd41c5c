"""Many publishes in flight on one PublishStream call: :class:`Publisher` and :class:`AsyncPublisher`.

Open one with :meth:`eventbus.Client.publisher` or :meth:`eventbus.AsyncClient.publisher`. Each
``publish`` is one message of the stream, answered by the server as a Publish call would be:
the error of one message fails only that publish, raised as a :class:`StatusError` (a
``grpc.RpcError`` with ``code()``, ``details()`` and the ``field_violations`` of an
``INVALID_ARGUMENT``). The server sequences the messages in the order they were sent.

Hazards:

* When the stream itself ends (the server shuts down with ``UNAVAILABLE``, the connection
  breaks, the client is closed), every publish still waiting and every later one raises the
  stream's status. There is no reconnect: open a new publisher and publish the same built
  events again, which is safe (a stored ``(source, id)`` is answered as a duplicate).
* A publish that times out (``timeout``, by default the client's) raises ``DEADLINE_EXCEEDED``
  but its message stays sent: the events may or may not be stored, and publishing them again
  is safe for the same reason.
* An :class:`AsyncPublisher` belongs to the event loop it was opened on, as its client does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import grpc
import grpc.aio

from eventbus.v1 import cloudevent_pb2
from eventbus.v1 import event_bus_service_pb2 as pb

if TYPE_CHECKING:
    _PublishCall = grpc._CallIterator[pb.PublishStreamResponse]

__all__ = ["AsyncPublisher", "Publisher", "StatusError"]

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class StatusError(grpc.RpcError):
    """A gRPC status raised by a publisher: the error of one message, or of the whole stream.

    ``code()`` and ``details()`` are those a Publish call would have raised;
    ``field_violations`` names the fields at fault of an ``INVALID_ARGUMENT`` (each with
    ``.field``, such as ``events[3].source``, and ``.description``).
    """

    def __init__(
        self, code: grpc.StatusCode, details: str, field_violations: Sequence[pb.FieldViolation] = ()
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self.field_violations = tuple(field_violations)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def status_code(code: int) -> grpc.StatusCode:
    """Returns the ``grpc.StatusCode`` of a google.rpc code number; ``UNKNOWN`` for another number."""
    return _CODES.get(code, grpc.StatusCode.UNKNOWN)


def outcome(response: pb.PublishStreamResponse) -> list[pb.PublishResult] | StatusError:
    """Returns what the publish of an answered message returns or raises."""
    kind = response.WhichOneof("outcome")
    if kind == "published":
        return list(response.published.results)
    if kind == "error":
        error = response.error
        code = status_code(error.code)
        # An error answer always fails its publish, whatever its code says.
        return StatusError(
            grpc.StatusCode.UNKNOWN if code == grpc.StatusCode.OK else code, error.message, error.field_violations
        )
    return StatusError(grpc.StatusCode.INTERNAL, "a PublishStream answer without an outcome")


class _Answer(Protocol):
    """Where the answer of one message goes: a ``concurrent.futures`` or an ``asyncio`` future."""

    def done(self) -> bool: ...

    def set_result(self, result: list[pb.PublishResult], /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


#: An item of a publisher's request queue: a message to send, or None, which ends the requests
#: (the half-close).
_Request = pb.PublishStreamRequest | None


class _Messages:
    """What both publishers keep: the next message id, the answers waited for by id, and how
    the stream ended. Thread-safe; subclasses put requests on their stream with :meth:`_put`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, _Answer] = {}
        self._ended: tuple[grpc.StatusCode, str] | None = None
        self._closed = False

    def _put(self, request: _Request) -> None:
        raise NotImplementedError

    def _send(self, namespace: str, events: Iterable[cloudevent_pb2.CloudEvent], answer: _Answer) -> int:
        """Sends a message whose answer goes to ``answer``; returns its id."""
        request = pb.PublishStreamRequest(publish=pb.PublishRequest(namespace=namespace, events=list(events)))
        with self._lock:
            if self._closed:
                raise RuntimeError("publish on a closed publisher")
            if self._ended is not None:
                raise StatusError(*self._ended)
            request.id = self._next_id
            self._next_id += 1
            self._waiting[request.id] = answer
            self._put(request)
        return request.id

    def _forget(self, id: int) -> None:
        with self._lock:
            self._waiting.pop(id, None)

    def _answer(self, response: pb.PublishStreamResponse) -> None:
        with self._lock:
            answer = self._waiting.pop(response.id, None)
        if answer is None or answer.done():
            return  # its publish gave up waiting
        result = outcome(response)
        if isinstance(result, StatusError):
            answer.set_exception(result)
        else:
            answer.set_result(result)

    def _end(self, code: grpc.StatusCode, details: str) -> None:
        """Records how the stream ended and fails the publishes still waiting with it."""
        with self._lock:
            self._ended = (code, details)
            waiting = list(self._waiting.values())
            self._waiting.clear()
            self._put(None)  # ends the requests, if they are still read
        for answer in waiting:
            if not answer.done():
                answer.set_exception(StatusError(code, details))

    def _half_close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._put(None)


def _requests(items: queue.SimpleQueue[_Request]) -> Iterator[pb.PublishStreamRequest]:
    while (request := items.get()) is not None:
        yield request


async def _async_requests(items: asyncio.Queue[_Request]) -> AsyncIterator[pb.PublishStreamRequest]:
    while (request := await items.get()) is not None:
        yield request


class Publisher(_Messages):
    """Publishes over one PublishStream call; thread-safe, so many threads can have a publish
    in flight at once. Open one with :meth:`eventbus.Client.publisher`.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        rpc: grpc.StreamStreamMultiCallable[pb.PublishStreamRequest, pb.PublishStreamResponse],
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
    ) -> None:
        super().__init__()
        self._timeout = timeout
        self._items: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._call: _PublishCall = rpc(_requests(self._items), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name="eventbus-publisher", daemon=True)
        self._reader.start()

    def _put(self, request: _Request) -> None:
        self._items.put(request)

    def publish(
        self, namespace: str, events: Iterable[cloudevent_pb2.CloudEvent], *, timeout: float | None = None
    ) -> list[pb.PublishResult]:
        """Publishes a batch of events (at most 1000) as one message of the stream; returns one
        result per event, in order, as :meth:`eventbus.Client.publish` does.

        Waits at most ``timeout`` seconds (default: the client's) for the answer. Raises
        :class:`StatusError` for the message's error, the stream's end, or the timeout
        (``DEADLINE_EXCEEDED``), and ``RuntimeError`` after :meth:`close`.
        """
        answer: concurrent.futures.Future[list[pb.PublishResult]] = concurrent.futures.Future()
        id = self._send(namespace, events, answer)
        wait = self._timeout if timeout is None else timeout
        try:
            return answer.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            raise StatusError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {wait} s") from None
        finally:
            self._forget(id)

    def close(self) -> None:
        """Half-closes the stream and waits until the server has answered the messages sent and
        ended the call. Publishes after it raise ``RuntimeError``."""
        self._half_close()
        self._reader.join()

    def _read(self) -> None:
        code, details = grpc.StatusCode.UNAVAILABLE, "the publish stream ended"
        try:
            for response in self._call:
                self._answer(response)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        finally:
            self._end(code, details)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncPublisher(_Messages):
    """Publishes over one PublishStream call from many tasks at once; the asyncio twin of
    :class:`Publisher`. Open one with :meth:`eventbus.AsyncClient.publisher` inside a coroutine.

    Use it with ``async with``, or await :meth:`close`.
    """

    def __init__(
        self,
        rpc: grpc.aio.StreamStreamMultiCallable[pb.PublishStreamRequest, pb.PublishStreamResponse],
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
    ) -> None:
        super().__init__()
        self._timeout = timeout
        self._items: asyncio.Queue[_Request] = asyncio.Queue()
        self._call = rpc(_async_requests(self._items), metadata=metadata)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def _put(self, request: _Request) -> None:
        self._items.put_nowait(request)

    async def publish(
        self, namespace: str, events: Iterable[cloudevent_pb2.CloudEvent], *, timeout: float | None = None
    ) -> list[pb.PublishResult]:
        """See :meth:`Publisher.publish`."""
        answer: asyncio.Future[list[pb.PublishResult]] = asyncio.get_running_loop().create_future()
        id = self._send(namespace, events, answer)
        wait = self._timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(answer, wait)
        except asyncio.TimeoutError:
            raise StatusError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {wait} s") from None
        finally:
            self._forget(id)

    async def close(self) -> None:
        """See :meth:`Publisher.close`."""
        self._half_close()
        await asyncio.shield(self._reader)

    async def _read(self) -> None:
        code, details = grpc.StatusCode.UNAVAILABLE, "the publish stream ended"
        try:
            while (response := await self._call.read()) is not grpc.aio.EOF:
                assert isinstance(response, pb.PublishStreamResponse)
                self._answer(response)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        except asyncio.CancelledError:
            # grpc.aio raises it from a call cancelled locally (the channel closed); or this
            # task is being cancelled, which ends it all the same.
            code, details = grpc.StatusCode.CANCELLED, "the publish stream was cancelled"
        finally:
            self._end(code, details)

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
