"""Traces and metrics end to end, against a real Jaeger and a real eventbus server.

tests/lib/trace.sh starts Jaeger (in memory) and runs this file with EVENTBUS_BIN,
JAEGER_QUERY_URL and OTEL_EXPORTER_OTLP_ENDPOINT set; the tests start `$EVENTBUS_BIN serve`
themselves, exporting OTLP to that Jaeger. A producer and a runner, each with its own
OpenTelemetry SDK and service name, export to the same Jaeger; the tests read the traces back through Jaeger's
HTTP API and check the tree the spans form:

    produce (producer) -> publish -> trigger -> deliver (eventbus) -> process KIND -> work (runner)

and, for an ALL listener completed by two producers, the trigger's link to the other trace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from eventbus import Client, ListenerSpecBuilder, Notification, Runner, new_event

BINARY = os.environ["EVENTBUS_BIN"]
JAEGER = os.environ["JAEGER_QUERY_URL"]
OTLP = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
#: Jaeger indexes spans asynchronously and the server exports in batches: how long to look.
TRACE_TIMEOUT = 30.0
WAIT_TIMEOUT = 20.0


@dataclass
class Server:
    """An `eventbus serve` process exporting traces to the test's Jaeger, metrics on."""

    process: subprocess.Popen[bytes]
    address: str
    #: The HTTP listener: metrics and the CloudEvents ingress.
    http_url: str
    log: Path

    @property
    def metrics_url(self) -> str:
        return f"{self.http_url}/metrics"

    @classmethod
    def start(cls, workdir: Path) -> Server:
        with socket.socket() as s:  # a free port for the HTTP listener
            s.bind(("127.0.0.1", 0))
            metrics = f"127.0.0.1:{s.getsockname()[1]}"
        addr_file, log = workdir / "addr", workdir / "server.log"
        addr_file.unlink(missing_ok=True)
        env = dict(os.environ, OTEL_SERVICE_NAME="eventbus", OTEL_BSP_SCHEDULE_DELAY="100")
        env.pop("EVENTBUS_DATABASE_URL", None)
        command = [BINARY, "serve", "--listen", "127.0.0.1:0", "--listen-addr-file", str(addr_file)]
        # --metrics-addr: the older name of --http-addr, which serves the ingress too.
        command += ["--data-file", str(workdir / "eventbus.db"), "--metrics-addr", metrics]
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + WAIT_TIMEOUT
        # The address file holding host:port is the readiness signal; nothing to wait on.
        while (address := read_address(addr_file)) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"eventbus serve did not start:\n{log.read_text()}")
            time.sleep(0.02)
        return cls(process, address, f"http://{metrics}", log)

    def stop(self) -> None:
        """SIGTERM; the server flushes its spans and must exit 0. Killed if it ignores SIGTERM."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=WAIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"eventbus serve ignored SIGTERM for {WAIT_TIMEOUT} s:\n{self.log.read_text()}")
        assert status == 0, self.log.read_text()


#: A complete address in the address file (as in client/python/tests/conftest.py).
ADDRESS = re.compile(r"^\S+:\d+$")


def read_address(path: Path) -> str | None:
    """The host:port in `path`, or None while it is missing or only partly written."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text if ADDRESS.match(text) else None


@dataclass
class Span:
    span_id: str
    name: str
    service: str
    parent: str | None
    #: (trace id, span id) of each link (Jaeger shows links as FOLLOWS_FROM references).
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Trace:
    trace_id: str
    spans: list[Span]

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> Span:
        spans = self.named(name)
        assert len(spans) == 1, f"trace {self.trace_id}: {len(spans)} spans named {name!r}, want 1: {self.spans}"
        return spans[0]


def fetch_trace(trace_id: str) -> Trace | None:
    try:
        with urllib.request.urlopen(f"{JAEGER}/api/traces/{trace_id}", timeout=5) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    (data,) = body["data"]
    services = {pid: p["serviceName"] for pid, p in data["processes"].items()}
    spans = []
    for s in data["spans"]:
        refs = s.get("references") or []
        parents = [r["spanID"] for r in refs if r["refType"] == "CHILD_OF" and r["traceID"] == trace_id]
        links = [(r["traceID"], r["spanID"]) for r in refs if r["refType"] == "FOLLOWS_FROM"]
        assert len(parents) <= 1, f"span {s['operationName']} has several parents: {refs}"
        spans.append(Span(s["spanID"], s["operationName"], services[s["processID"]], parents[0] if parents else None, links))
    return Trace(trace_id, spans)


def wait_for_trace(trace_id: str, names: list[str]) -> Trace:
    """Polls Jaeger (it has no notification API) until the trace holds a span of each name."""
    deadline = time.monotonic() + TRACE_TIMEOUT
    found: Trace | None = None
    while time.monotonic() < deadline:
        found = fetch_trace(trace_id)
        if found is not None and all(found.named(n) for n in names):
            return found
        time.sleep(0.2)
    pytest.fail(f"trace {trace_id} lacks some of {names} after {TRACE_TIMEOUT}s: {found}")


def sdk(service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=OTLP, insecure=True)))
    return provider


@pytest.fixture(scope="module")
def producer() -> Iterator[TracerProvider]:
    provider = sdk("trace-test-producer")
    yield provider
    provider.shutdown()


@pytest.fixture(scope="module")
def runner_sdk() -> Iterator[TracerProvider]:
    provider = sdk("trace-test-runner")
    yield provider
    provider.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server.start(tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.address, timeout=10) as c:
        yield c


@pytest.fixture
def namespace() -> str:
    return f"trace-{uuid.uuid4().hex[:12]}"


def hex_id(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def run_until(
    client: Client,
    namespace: str,
    provider: TracerProvider,
    work_name: str,
    count: int,
    kinds: list[str],
) -> list[Notification]:
    """Runs a Runner until it has handled and acked `count` notifications, each in a span."""
    received: list[Notification] = []
    done = threading.Event()
    tracer = provider.get_tracer("trace-test")

    def handler(note: Notification) -> None:
        with tracer.start_as_current_span(work_name):
            received.append(note)
        if len(received) >= count:
            done.set()

    # Leaving the block stops the runner, which settles (acks) the handlers in flight first.
    with Runner(client, namespace, "runners", handler, kinds=kinds, tracer_provider=provider) as runner:
        assert done.wait(WAIT_TIMEOUT), f"got {len(received)} of {count} notifications"
    assert runner.stats.acked == count
    assert len(received) == count
    return received


def test_one_trace_from_producer_through_trigger_to_runner(
    client: Client, namespace: str, producer: TracerProvider, runner_sdk: TracerProvider
) -> None:
    client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one("order.created"))
    with producer.get_tracer("trace-test").start_as_current_span("produce order") as produce:
        client.publish(namespace, [new_event("/shop", "order.created", extensions={"orderid": "1"})])
    (note,) = run_until(client, namespace, runner_sdk, "fulfil order", 1, ["start"])

    trace_id = hex_id(produce.get_span_context().trace_id, 32)
    t = wait_for_trace(trace_id, ["produce order", "publish", "trigger", "deliver", "process START", "fulfil order"])
    produce_span, publish, trigger, deliver, process, work = (
        t.one(n) for n in ["produce order", "publish", "trigger", "deliver", "process START", "fulfil order"]
    )
    assert produce_span.span_id == hex_id(produce.get_span_context().span_id, 16)
    assert publish.parent == produce_span.span_id
    assert trigger.parent == publish.span_id
    assert deliver.parent == trigger.span_id
    assert process.parent == deliver.span_id
    assert work.parent == process.span_id
    assert [publish.service, trigger.service, deliver.service] == ["eventbus"] * 3
    assert (produce_span.service, process.service) == ("trace-test-producer", "trace-test-runner")
    # The trigger span is the one the store fixed when it recorded the notification: its id is
    # the first 8 bytes of the fire id (eventbus_engine::store::trigger_span_id).
    assert trigger.span_id == uuid.UUID(note.fire_id).bytes[:8].hex()
    assert note.traceparent == f"00-{trace_id}-{deliver.span_id}-01"
    assert trigger.links == []


def test_an_http_ingress_request_continues_the_callers_trace(
    server: Server, client: Client, namespace: str, producer: TracerProvider, runner_sdk: TracerProvider
) -> None:
    client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one("order.created"))
    with producer.get_tracer("trace-test").start_as_current_span("post order") as post:
        context = post.get_span_context()
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "http-1",
            "ce-source": "/shop",
            "ce-type": "order.created",
            "content-type": "application/json",
            "traceparent": f"00-{hex_id(context.trace_id, 32)}-{hex_id(context.span_id, 16)}-01",
        }
        url = f"{server.http_url}/v1/namespaces/{namespace}/events"
        request = urllib.request.Request(url, data=b'{"total": 1}', headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    run_until(client, namespace, runner_sdk, "fulfil order", 1, ["start"])

    t = wait_for_trace(hex_id(context.trace_id, 32), ["post order", "publish", "trigger", "deliver", "fulfil order"])
    assert t.one("publish").parent == t.one("post order").span_id
    assert t.one("publish").service == "eventbus"
    assert t.one("trigger").parent == t.one("publish").span_id
    assert t.one("deliver").parent == t.one("trigger").span_id


def test_all_trigger_is_child_of_the_completing_publish_and_links_the_other(
    client: Client, namespace: str, producer: TracerProvider, runner_sdk: TracerProvider
) -> None:
    spec = ListenerSpecBuilder.wait("order-42").all("payment.received", "shipment.sent").correlate_by("orderid")
    client.register_listener(namespace, spec)
    tracer = producer.get_tracer("trace-test")
    with tracer.start_as_current_span("pay") as pay:
        client.publish(namespace, [new_event("/payments", "payment.received", extensions={"orderid": "42"})])
    with tracer.start_as_current_span("ship") as ship:
        client.publish(namespace, [new_event("/shipping", "shipment.sent", extensions={"orderid": "42"})])
    run_until(client, namespace, runner_sdk, "resume instance", 1, ["wake"])

    pay_trace, ship_trace = (hex_id(s.get_span_context().trace_id, 32) for s in (pay, ship))
    assert pay_trace != ship_trace
    paid = wait_for_trace(pay_trace, ["pay", "publish"])
    assert paid.one("publish").parent == paid.one("pay").span_id
    assert not paid.named("trigger"), "the trigger belongs to the trace of the event that completed it"
    shipped = wait_for_trace(ship_trace, ["ship", "publish", "trigger", "deliver", "process WAKE", "resume instance"])
    trigger = shipped.one("trigger")
    assert shipped.one("publish").parent == shipped.one("ship").span_id
    assert trigger.parent == shipped.one("publish").span_id
    assert trigger.links == [(pay_trace, paid.one("publish").span_id)]
    assert shipped.one("deliver").parent == trigger.span_id
    assert shipped.one("process WAKE").parent == shipped.one("deliver").span_id
    assert shipped.one("resume instance").parent == shipped.one("process WAKE").span_id


SAMPLE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$")


def scrape(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            samples[(m[1], m[2] or "")] = float(m[3])
    return samples


def test_metrics_count_what_happened(
    server: Server, client: Client, namespace: str, runner_sdk: TracerProvider
) -> None:
    before = scrape(server.metrics_url)

    def delta(name: str, labels: str = "") -> float:
        return scrape(server.metrics_url).get((name, labels), 0.0) - before.get((name, labels), 0.0)

    client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one("order.created"))
    events = [new_event("/shop", "order.created", id=f"o{i}") for i in range(3)]
    client.publish(namespace, events)
    client.publish(namespace, events[:1])  # a duplicate
    bad = new_event("/shop", "order.created")
    bad.source = ""
    with pytest.raises(grpc.RpcError) as refused:
        client.publish(namespace, [bad])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    run_until(client, namespace, runner_sdk, "work", 3, ["start"])

    assert delta("eventbus_events_published_total") == 3
    assert delta("eventbus_events_duplicate_total") == 1
    assert delta("eventbus_events_rejected_total") == 1
    assert delta("eventbus_triggers_fired_total", 'kind="start"') == 3
    assert delta("eventbus_publish_duration_seconds_count") == 3
    assert delta("eventbus_publish_to_ack_seconds_count") == 3
    assert delta("eventbus_redeliveries_total") == 0
    after = scrape(server.metrics_url)
    for state, want in [("pending", 0), ("leased", 0), ("dead", 0)]:
        labels = f'namespace="{namespace}",group="runners",state="{state}"'
        assert after[("eventbus_notifications", labels)] == want, state
    assert after[("eventbus_db_connections", 'state="max"')] >= 1
    assert after[("eventbus_database_bytes", 'file="database"')] > 0
    assert ("eventbus_database_bytes", 'file="wal"') in after
    assert ("eventbus_open_streams", "") in after


def test_a_notification_delivered_after_a_restart_joins_its_trace(
    tmp_path: Path, namespace: str, producer: TracerProvider, runner_sdk: TracerProvider
) -> None:
    first = Server.start(tmp_path)
    with Client(first.address, timeout=10) as client:
        client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one("order.created"))
        with producer.get_tracer("trace-test").start_as_current_span("produce order") as produce:
            client.publish(namespace, [new_event("/shop", "order.created")])
    first.stop()  # nobody subscribed: the notification waits in the outbox
    second = Server.start(tmp_path)
    try:
        with Client(second.address, timeout=10) as client:
            run_until(client, namespace, runner_sdk, "fulfil order", 1, ["start"])
    finally:
        second.stop()
    trace_id = hex_id(produce.get_span_context().trace_id, 32)
    t = wait_for_trace(trace_id, ["produce order", "publish", "trigger", "deliver", "process START", "fulfil order"])
    assert t.one("deliver").parent == t.one("trigger").span_id
    assert t.one("process START").parent == t.one("deliver").span_id
