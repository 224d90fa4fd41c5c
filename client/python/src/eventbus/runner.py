"""Workflow runners: subscribe with a consumer group and hand each notification to a handler.

:class:`Runner` (threads) and :class:`AsyncRunner` (asyncio) do the same thing:

* subscribe to the group and keep the subscription open, reconnecting after ``UNAVAILABLE``,
  other transient statuses or the end of the stream, with capped jittered backoff
  (``reconnect_backoff``, 50 ms to 5 s by default);
* call ``handler(notification)`` for each notification, up to ``max_in_flight`` at once, with
  the notification's trace context attached as the current OpenTelemetry context and a
  ``CONSUMER`` span ``process <KIND>`` around it (see :func:`eventbus.tracing.process_span`);
* ack when the handler returns, nack when it raises, with a ``retry_after`` that grows with the
  notification's attempt (``retry_backoff``, 1 s doubling to 5 min by default);
* raise the ``grpc.RpcError`` of a status reconnecting cannot fix: ``INVALID_ARGUMENT``,
  ``NOT_FOUND``, ``ALREADY_EXISTS``, ``FAILED_PRECONDITION`` (the group exists with other
  settings), ``OUT_OF_RANGE``, ``PERMISSION_DENIED``, ``UNAUTHENTICATED``, ``UNIMPLEMENTED``
  (the same set as the Go and Rust clients);
* stop on :meth:`Runner.stop` (or cancellation of :meth:`AsyncRunner.run`): stop handing out
  notifications, let the handlers in flight finish and settle, then close the stream.

Delivery is at least once: a notification can reach a handler again (with a higher
``attempt``) after a lease expiry, a lost stream or a nack. Make handlers idempotent on
``notification.fire_id``.

Hazards: a handler that never returns blocks :meth:`Runner.stop`. Do not call
:meth:`Runner.join` from inside a handler (it waits for that handler). A Runner runs once;
create a new one to run again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from types import TracebackType

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from eventbus._common import KindLike, StartLike, SubscribeOptions, is_retryable, subscribe_options
from eventbus.aio import AsyncClient
from eventbus.backoff import Backoff, BackoffState
from eventbus.client import Client, Subscription
from eventbus.tracing import kind_name, process_span
from eventbus.v1 import notification_pb2

__all__ = ["AsyncHandler", "AsyncRunner", "Handler", "Runner", "RunnerStats"]

_log = logging.getLogger("eventbus.runner")

Notification = notification_pb2.Notification
#: A :class:`Runner` handler; its return value is ignored.
Handler = Callable[[Notification], object]
#: An :class:`AsyncRunner` handler.
AsyncHandler = Callable[[Notification], Awaitable[object]]

#: Default ``reconnect_backoff``: 50 ms doubling to 5 s, like the Rust client.
RECONNECT_BACKOFF = Backoff(initial=0.05, max=5.0)
#: Default ``retry_backoff``: the ``retry_after`` of a nack, 1 s doubling to 5 minutes.
RETRY_BACKOFF = Backoff(initial=1.0, max=300.0)
#: Default ``max_in_flight``: notifications a runner holds and handles at once.
MAX_IN_FLIGHT = 16



@dataclass(frozen=True)
class RunnerStats:
    """Counters of a runner since it started."""

    #: Notifications received.
    delivered: int = 0
    #: Notifications acked after their handler returned.
    acked: int = 0
    #: Notifications nacked after their handler raised.
    nacked: int = 0
    #: Notifications left unhandled because they arrived while the runner was stopping; closing
    #: the stream gives them back to the group (as a failed attempt, like any unsettled one).
    released: int = 0
    #: Acks and nacks that failed; their leases expire and the server redelivers them.
    settle_failures: int = 0
    #: Times the subscription was opened again after it was lost.
    reconnects: int = 0


def _failure_reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _RunnerBase:
    """Configuration and bookkeeping shared by both runners."""

    def __init__(
        self,
        namespace: str,
        consumer_group: str,
        *,
        kinds: Iterable[KindLike],
        workflow_ids: Iterable[str],
        max_in_flight: int,
        lease_duration: timedelta | float | None,
        start: StartLike,
        start_sequence: int,
        max_attempts: int,
        retry_backoff: Backoff,
        reconnect_backoff: Backoff,
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.options: SubscribeOptions = subscribe_options(
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
        self.options.to_request()  # fail fast on bad kinds or start positions
        self._retry_backoff = retry_backoff
        self._reconnect_backoff = reconnect_backoff
        self._tracer_provider = tracer_provider
        self._stats = RunnerStats()
        self._stats_lock = threading.Lock()

    @property
    def stats(self) -> RunnerStats:
        """A snapshot of the runner's counters."""
        with self._stats_lock:
            return self._stats

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            current = self._stats
            self._stats = replace(
                current, **{name: getattr(current, name) + value for name, value in increments.items()}
            )

    def _retry_after(self, notification: Notification) -> float:
        return self._retry_backoff.delay(max(0, notification.attempt - 1))

    def _log_lost(self, code: grpc.StatusCode | None, details: str | None) -> None:
        _log.warning(
            "subscription lost, reconnecting: namespace=%s group=%s code=%s details=%s",
            self.options.namespace,
            self.options.consumer_group,
            code.name if code is not None else None,
            details,
        )

    def _log_failed(self, notification: Notification, exc: BaseException) -> None:
        _log.warning(
            "handler failed, nacking: kind=%s sequence=%d attempt=%d fire_id=%s error=%s",
            kind_name(notification.kind),
            notification.sequence,
            notification.attempt,
            notification.fire_id,
            _failure_reason(exc),
            exc_info=exc,
        )

    def _log_settle_failure(self, what: str, notification: Notification, exc: grpc.RpcError) -> None:
        _log.warning(
            "%s failed; the lease will expire and the notification be redelivered: sequence=%d code=%s",
            what,
            notification.sequence,
            exc.code().name,
        )


class Runner(_RunnerBase):
    """Runs a synchronous handler for every notification of a consumer group, on threads.

    ``run()`` blocks until :meth:`stop` (from another thread, a handler or a signal handler)
    and returns once the handlers in flight are done; it raises the ``grpc.RpcError`` of a
    non-retryable status. Alternatively :meth:`start` runs it on a background thread and
    :meth:`join` waits for it and re-raises its error; as a context manager it starts on entry
    and stops and joins on exit.

    The subscription options (``kinds``, ``workflow_ids``, ``max_attempts``, ``start``, ...) are
    those of :meth:`eventbus.Client.subscribe`; ``max_in_flight`` (default 16) is also the
    number of handler threads. ``tracer_provider`` defaults to the global one.
    """

    def __init__(
        self,
        client: Client,
        namespace: str,
        consumer_group: str,
        handler: Handler,
        *,
        kinds: Iterable[KindLike] = (),
        workflow_ids: Iterable[str] = (),
        max_in_flight: int = MAX_IN_FLIGHT,
        lease_duration: timedelta | float | None = None,
        start: StartLike = None,
        start_sequence: int = 0,
        max_attempts: int = 0,
        retry_backoff: Backoff = RETRY_BACKOFF,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        super().__init__(
            namespace,
            consumer_group,
            kinds=kinds,
            workflow_ids=workflow_ids,
            max_in_flight=max_in_flight,
            lease_duration=lease_duration,
            start=start,
            start_sequence=start_sequence,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            reconnect_backoff=reconnect_backoff,
            tracer_provider=tracer_provider,
        )
        self._client = client
        self._handler = handler
        self._workers = max_in_flight
        self._stopping = threading.Event()
        self._done = threading.Event()
        # Guards _in_flight, _subscription and _started; notified when _in_flight drops to 0.
        self._idle = threading.Condition()
        self._in_flight = 0
        self._subscription: Subscription | None = None
        self._started = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> None:
        """Runs until :meth:`stop`; raises on a non-retryable status (after in-flight handlers finish)."""
        with self._idle:
            if self._started:
                raise RuntimeError("a Runner runs once; create a new one")
            self._started = True
        executor = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix=f"eventbus-{self.options.consumer_group}"
        )
        backoff = BackoffState(self._reconnect_backoff)
        try:
            while not self._stopping.is_set():
                opened = time.monotonic()
                try:
                    self._consume(executor, backoff)
                    if self._stopping.is_set():
                        break
                    self._log_lost(None, "stream ended")
                except grpc.RpcError as exc:
                    if self._stopping.is_set():
                        break
                    if not is_retryable(exc.code()):
                        raise
                    self._log_lost(exc.code(), exc.details())
                if time.monotonic() - opened > self._reconnect_backoff.max:
                    backoff.reset()  # the stream was healthy for a while: start over
                self._count(reconnects=1)
                if self._stopping.wait(backoff.next_delay()):
                    break
        finally:
            self._stopping.set()
            executor.shutdown(wait=True)
            self._done.set()

    def stop(self) -> None:
        """Asks the runner to stop; returns at once (use :meth:`join` or wait for :meth:`run`).

        Handlers in flight finish and settle; notifications not yet handed to a handler are
        left unsettled; then the stream closes (which gives those back to the group) and
        :meth:`run` returns.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        threading.Thread(target=self._close_when_idle, name="eventbus-runner-stop", daemon=True).start()

    def start(self) -> Runner:
        """Runs :meth:`run` on a background thread; returns the runner."""
        with self._idle:
            if self._thread is not None:
                raise RuntimeError("runner already started")
            self._thread = threading.Thread(
                target=self._run_in_thread, name=f"eventbus-runner-{self.options.consumer_group}", daemon=True
            )
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Waits for a runner started with :meth:`start`; re-raises the error it stopped with.

        Raises ``TimeoutError`` if it is still running after ``timeout`` seconds.
        """
        if self._thread is None:
            raise RuntimeError("runner was not started with start()")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"runner still running after {timeout} s")
        if self._error is not None:
            raise self._error

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called or the runner failed."""
        return self._stopping.is_set()

    @property
    def done(self) -> bool:
        """True once :meth:`run` has returned or raised."""
        return self._done.is_set()

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.join()

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # handed to join()
            self._error = exc
            _log.error(
                "runner stopped by error: namespace=%s group=%s error=%s",
                self.options.namespace,
                self.options.consumer_group,
                _failure_reason(exc),
            )

    def _close_when_idle(self) -> None:
        with self._idle:
            while self._in_flight:
                self._idle.wait()
            subscription = self._subscription
        if subscription is not None:
            subscription.cancel()

    # --- the stream -------------------------------------------------------------------------

    def _consume(self, executor: ThreadPoolExecutor, backoff: BackoffState) -> None:
        subscription = self._client.open_subscription(self.options)
        with self._idle:
            if self._stopping.is_set():
                subscription.cancel()
                return
            self._subscription = subscription
        try:
            for notification in subscription:
                backoff.reset()
                self._count(delivered=1)
                if self._stopping.is_set():
                    self._release(notification)
                    continue
                with self._idle:
                    self._in_flight += 1
                executor.submit(self._process, notification)
        finally:
            with self._idle:
                self._subscription = None
            subscription.cancel()

    def _process(self, notification: Notification) -> None:
        try:
            if self._stopping.is_set():
                self._release(notification)
                return
            with process_span(
                notification, namespace=self.options.namespace, tracer_provider=self._tracer_provider
            ) as span:
                try:
                    self._handler(notification)
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, _failure_reason(exc)))
                    self._log_failed(notification, exc)
                    self._nack(notification, self._retry_after(notification), _failure_reason(exc))
                else:
                    self._ack(notification)
        except Exception:
            _log.exception("unexpected error processing notification %d", notification.sequence)
        finally:
            with self._idle:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def _ack(self, notification: Notification) -> None:
        try:
            self._client.ack(self.options.namespace, self.options.consumer_group, notification.sequence)
        except grpc.RpcError as exc:
            self._count(settle_failures=1)
            self._log_settle_failure("ack", notification, exc)
        else:
            self._count(acked=1)

    def _nack(self, notification: Notification, retry_after: float, reason: str) -> None:
        try:
            self._client.nack(
                self.options.namespace,
                self.options.consumer_group,
                notification.sequence,
                retry_after=retry_after,
                reason=reason,
            )
        except grpc.RpcError as exc:
            self._count(settle_failures=1)
            self._log_settle_failure("nack", notification, exc)
        else:
            self._count(nacked=1)

    def _release(self, notification: Notification) -> None:
        # Not nacked: the server would redeliver it at once, to this very stream while it drains,
        # burning an attempt each time. Closing the stream gives it back once.
        _log.debug("runner stopping, leaving notification %d to the stream close", notification.sequence)
        self._count(released=1)


class AsyncRunner(_RunnerBase):
    """Runs an async handler for every notification of a consumer group, as asyncio tasks.

    ``await runner.run()`` runs until :meth:`stop` or until the task running it is cancelled;
    either way the handlers in flight finish and settle before it returns (or re-raises the
    cancellation). It raises the ``grpc.aio.AioRpcError`` of a non-retryable status. Options as
    for :class:`Runner`; ``max_in_flight`` bounds the concurrent handler tasks.

    :meth:`stop` must be called on the event loop's thread; from another thread use
    ``loop.call_soon_threadsafe(runner.stop)``.
    """

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        consumer_group: str,
        handler: AsyncHandler,
        *,
        kinds: Iterable[KindLike] = (),
        workflow_ids: Iterable[str] = (),
        max_in_flight: int = MAX_IN_FLIGHT,
        lease_duration: timedelta | float | None = None,
        start: StartLike = None,
        start_sequence: int = 0,
        max_attempts: int = 0,
        retry_backoff: Backoff = RETRY_BACKOFF,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        super().__init__(
            namespace,
            consumer_group,
            kinds=kinds,
            workflow_ids=workflow_ids,
            max_in_flight=max_in_flight,
            lease_duration=lease_duration,
            start=start,
            start_sequence=start_sequence,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            reconnect_backoff=reconnect_backoff,
            tracer_provider=tracer_provider,
        )
        self._client = client
        self._handler = handler
        self._stop_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    def stop(self) -> None:
        """Asks the runner to stop; :meth:`run` returns once the handlers in flight are done."""
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called or the runner is ending."""
        return self._stop_event.is_set()

    async def run(self) -> None:
        """Runs until :meth:`stop` or cancellation; raises on a non-retryable status."""
        if self._started:
            raise RuntimeError("an AsyncRunner runs once; create a new one")
        self._started = True
        loop = asyncio.get_running_loop()
        backoff = BackoffState(self._reconnect_backoff)
        try:
            while not self._stop_event.is_set():
                opened = loop.time()
                try:
                    await self._consume(backoff)
                    if self._stop_event.is_set():
                        break
                    self._log_lost(None, "stream ended")
                except grpc.aio.AioRpcError as exc:
                    if self._stop_event.is_set():
                        break
                    if not is_retryable(exc.code()):
                        raise
                    self._log_lost(exc.code(), exc.details())
                if loop.time() - opened > self._reconnect_backoff.max:
                    backoff.reset()
                self._count(reconnects=1)
                try:
                    await asyncio.wait_for(self._stop_event.wait(), backoff.next_delay())
                    break
                except asyncio.TimeoutError:
                    pass
        finally:
            self._stop_event.set()
            await self._drain()

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _consume(self, backoff: BackoffState) -> None:
        subscription = self._client.open_subscription(self.options)
        stop_wait = asyncio.ensure_future(self._stop_event.wait())
        read: asyncio.Future[Notification | None] | None = None
        lost = False
        try:
            while True:
                read = asyncio.ensure_future(subscription.read())
                done, _ = await asyncio.wait({read, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    return  # stop requested; the finally block winds down
                try:
                    notification = read.result()
                except grpc.aio.AioRpcError:
                    lost = True
                    raise
                read = None
                if notification is None:
                    lost = True  # the server ended the stream
                    return
                backoff.reset()
                self._count(delivered=1)
                task = asyncio.ensure_future(self._process(notification))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            if not lost:
                # Stopping or cancelled: handlers in flight settle before the stream closes, so
                # the server does not hand their notifications to another stream while they run.
                # After a lost stream there is nothing to protect: reconnect at once.
                await self._drain()
            stop_wait.cancel()
            subscription.cancel()
            if read is not None:
                leftover = await self._leftover(read)
                if leftover is not None:
                    # Arrived while winding down; the stream close (above) gives it back.
                    self._count(delivered=1, released=1)

    @staticmethod
    async def _leftover(read: asyncio.Future[Notification | None]) -> Notification | None:
        """Returns a notification that arrived while the runner was winding down, if any."""
        try:
            return await read
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            return None

    async def _process(self, notification: Notification) -> None:
        try:
            with process_span(
                notification, namespace=self.options.namespace, tracer_provider=self._tracer_provider
            ) as span:
                try:
                    await self._handler(notification)
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, _failure_reason(exc)))
                    self._log_failed(notification, exc)
                    await self._nack(notification, self._retry_after(notification), _failure_reason(exc))
                else:
                    await self._ack(notification)
        except Exception:
            _log.exception("unexpected error processing notification %d", notification.sequence)

    async def _ack(self, notification: Notification) -> None:
        try:
            await self._client.ack(self.options.namespace, self.options.consumer_group, notification.sequence)
        except grpc.aio.AioRpcError as exc:
            self._count(settle_failures=1)
            self._log_settle_failure("ack", notification, exc)
        else:
            self._count(acked=1)

    async def _nack(self, notification: Notification, retry_after: float, reason: str) -> None:
        try:
            await self._client.nack(
                self.options.namespace,
                self.options.consumer_group,
                notification.sequence,
                retry_after=retry_after,
                reason=reason,
            )
        except grpc.aio.AioRpcError as exc:
            self._count(settle_failures=1)
            self._log_settle_failure("nack", notification, exc)
        else:
            self._count(nacked=1)
