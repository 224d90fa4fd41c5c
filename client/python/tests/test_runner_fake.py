"""Runner and AsyncRunner against the scriptable fake server: dispatch, tracing, ack, nack with
backoff, reconnects, non-retryable statuses, and clean stops."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from conftest import Tracing
from eventbus import AsyncClient, AsyncRunner, Backoff, Client, Notification, Runner
from fakebus import END, FakeServer, async_wait_for, notification, wait_for

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
FAST = Backoff(initial=0.01, max=0.05)


def test_runner_handles_acks_and_continues_the_trace(fake: FakeServer, tracing: Tracing) -> None:
    seen: list[tuple[int, str, str]] = []

    def handler(note: Notification) -> None:
        context = trace.get_current_span().get_span_context()
        seen.append((note.sequence, f"{context.trace_id:032x}", threading.current_thread().name))

    fake.bus.deliver(notification(1, traceparent=TRACEPARENT, tracestate="v=1"))
    fake.bus.deliver(notification(2))
    with Client(fake.target) as client:
        runner = Runner(client, "shop", "runners", handler, kinds=["start"], tracer_provider=tracing.provider)
        with runner:
            wait_for(lambda: sorted(fake.bus.acked) == [1, 2], what="both acked")
        assert runner.done
        stats = runner.stats
    assert sorted(s for s, _, _ in seen) == [1, 2]
    first = next(item for item in seen if item[0] == 1)
    assert first[1] == TRACE_ID
    assert first[2].startswith("eventbus-runners")
    assert (stats.delivered, stats.acked, stats.nacked, stats.reconnects) == (2, 2, 0, 0)
    spans = {
        span.attributes["eventbus.notification.sequence"]: span
        for span in tracing.exporter.get_finished_spans()
        if span.attributes
    }
    span = spans[1]
    assert span.name == "process START"
    assert span.kind == SpanKind.CONSUMER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert spans[2].parent is None  # no trace context: a root span
    request = fake.bus.requests["Subscribe"][0]
    assert list(getattr(request, "kinds")) == [1]
    assert getattr(request, "max_in_flight") == 16


def test_runner_nacks_with_backoff_and_handles_the_redelivery(fake: FakeServer, tracing: Tracing) -> None:
    attempts: list[int] = []

    def handler(note: Notification) -> None:
        attempts.append(note.attempt)
        if note.attempt == 1:
            raise RuntimeError("boom")

    fake.bus.deliver(notification(5))
    with Client(fake.target) as client:
        with Runner(
            client,
            "shop",
            "runners",
            handler,
            retry_backoff=Backoff(initial=0.2, max=10),
            tracer_provider=tracing.provider,
        ) as runner:
            wait_for(lambda: fake.bus.acked == [5], what="ack of the redelivery")
    assert attempts == [1, 2]
    (nack,) = fake.bus.nacks
    assert nack.sequence == 5
    assert nack.reason == "RuntimeError: boom"
    assert 100 <= nack.retry_after.ToMilliseconds() <= 200  # attempt 1: half to all of 0.2 s
    assert (runner.stats.nacked, runner.stats.acked) == (1, 1)
    failed = [s for s in tracing.exporter.get_finished_spans() if s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1
    assert failed[0].attributes is not None and failed[0].attributes["eventbus.notification.attempt"] == 1
    assert [event.name for event in failed[0].events] == ["exception"]


def test_runner_reconnects_after_unavailable_and_stream_end(fake: FakeServer) -> None:
    handled = threading.Event()
    fake.bus.failures["Subscribe"] = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL]
    fake.bus.outbox.put(END)
    fake.bus.outbox.put(grpc.StatusCode.UNAVAILABLE)
    fake.bus.deliver(notification(3))
    with Client(fake.target) as client:
        with Runner(client, "shop", "runners", lambda note: handled.set(), reconnect_backoff=FAST) as runner:
            assert handled.wait(10)
            wait_for(lambda: fake.bus.acked == [3], what="ack")
    assert runner.stats.reconnects == 4
    assert fake.bus.calls("Subscribe") == 5


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    ],
)
def test_runner_raises_non_retryable_statuses(fake: FakeServer, code: grpc.StatusCode) -> None:
    fake.bus.failures["Subscribe"] = [code]
    with Client(fake.target) as client:
        runner = Runner(client, "shop", "runners", lambda note: None, reconnect_backoff=FAST)
        with pytest.raises(grpc.RpcError) as failed:
            runner.run()
    assert failed.value.code() == code
    assert fake.bus.calls("Subscribe") == 1
    assert runner.done


def test_runner_stop_waits_for_in_flight_handlers_then_closes_the_stream(fake: FakeServer) -> None:
    started = threading.Event()
    release = threading.Event()

    def handler(note: Notification) -> None:
        started.set()
        assert release.wait(10)

    fake.bus.deliver(notification(1))
    with Client(fake.target) as client:
        runner = Runner(client, "shop", "runners", handler).start()
        assert started.wait(10)
        runner.stop()
        # A notification arriving while the runner winds down is left to the stream close: a
        # nack would bring it straight back to this stream, burning attempts.
        fake.bus.deliver(notification(2))
        wait_for(lambda: runner.stats.released == 1, what="notification 2 left unhandled")
        time.sleep(0.1)
        assert not runner.done
        assert fake.bus.streams_closed == 0  # the stream stays open while a handler runs
        release.set()
        runner.join(10)
    assert fake.bus.acked == [1]
    assert fake.bus.nacks == []
    assert (runner.stats.delivered, runner.stats.acked, runner.stats.released) == (2, 1, 1)
    wait_for(lambda: fake.bus.streams_closed == 1, what="stream closed")


def test_runner_join_reraises_and_runs_once(fake: FakeServer) -> None:
    fake.bus.failures["Subscribe"] = [grpc.StatusCode.PERMISSION_DENIED]
    with Client(fake.target) as client:
        runner = Runner(client, "shop", "runners", lambda note: None).start()
        with pytest.raises(grpc.RpcError):
            runner.join(10)
        with pytest.raises(RuntimeError, match="once"):
            runner.run()
    with pytest.raises(ValueError):
        Runner(client, "shop", "g", lambda note: None, max_in_flight=0)


@pytest.mark.asyncio
async def test_async_runner_acks_nacks_and_traces(fake: FakeServer, tracing: Tracing) -> None:
    attempts: list[tuple[int, int]] = []
    trace_ids: list[str] = []
    done = asyncio.Event()

    async def handler(note: Notification) -> None:
        attempts.append((note.sequence, note.attempt))
        trace_ids.append(f"{trace.get_current_span().get_span_context().trace_id:032x}")
        if note.attempt == 1 and note.sequence == 2:
            raise ValueError("bad input")
        if len(attempts) == 3:
            done.set()

    fake.bus.deliver(notification(1, traceparent=TRACEPARENT))
    fake.bus.deliver(notification(2))
    async with AsyncClient(fake.target) as client:
        runner = AsyncRunner(
            client, "shop", "runners", handler, retry_backoff=Backoff(0.01, 0.01), tracer_provider=tracing.provider
        )
        task = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(done.wait(), 10)
        runner.stop()  # the handlers in flight finish and settle before run returns
        await asyncio.wait_for(task, 10)
    assert sorted(attempts) == [(1, 1), (2, 1), (2, 2)]
    assert trace_ids[0] == TRACE_ID
    assert sorted(fake.bus.acked) == [1, 2]
    assert [(n.sequence, n.reason) for n in fake.bus.nacks] == [(2, "ValueError: bad input")]
    assert (runner.stats.acked, runner.stats.nacked) == (2, 1)
    assert {s.name for s in tracing.exporter.get_finished_spans()} == {"process START"}
    wait_for(lambda: fake.bus.streams_closed == 1, what="stream closed")


@pytest.mark.asyncio
async def test_async_runner_reconnects_and_raises_non_retryable(fake: FakeServer) -> None:
    fake.bus.failures["Subscribe"] = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    fake.bus.outbox.put(END)
    fake.bus.outbox.put(grpc.StatusCode.FAILED_PRECONDITION)
    async with AsyncClient(fake.target) as client:

        async def handler(note: Notification) -> None:
            pass

        runner = AsyncRunner(client, "shop", "runners", handler, reconnect_backoff=FAST)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await asyncio.wait_for(runner.run(), 10)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert runner.stats.reconnects == 3
    assert fake.bus.calls("Subscribe") == 4


@pytest.mark.asyncio
async def test_async_runner_cancellation_lets_in_flight_handlers_settle(fake: FakeServer) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[int] = []

    async def handler(note: Notification) -> None:
        started.set()
        await release.wait()
        finished.append(note.sequence)

    fake.bus.deliver(notification(1))
    async with AsyncClient(fake.target) as client:
        runner = AsyncRunner(client, "shop", "runners", handler)
        task = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        await asyncio.sleep(0.1)
        assert not task.done()  # waiting for the handler
        assert fake.bus.streams_closed == 0
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert finished == [1]
    assert fake.bus.acked == [1]
    wait_for(lambda: fake.bus.streams_closed == 1, what="stream closed")


@pytest.mark.asyncio
async def test_async_runner_stop_before_any_notification(fake: FakeServer) -> None:
    async with AsyncClient(fake.target) as client:

        async def handler(note: Notification) -> None:
            raise AssertionError("no notification expected")

        runner = AsyncRunner(client, "shop", "runners", handler)
        task = asyncio.ensure_future(runner.run())
        await async_wait_for(lambda: fake.bus.streams_opened == 1, what="the stream to open")
        runner.stop()
        await asyncio.wait_for(task, 5)
        assert runner.stopping
    wait_for(lambda: fake.bus.streams_closed == 1, what="stream closed")
