"""Fixtures: an in-memory OpenTelemetry SDK, the fake server, and a live eventbus server.

The live server (``eventbus_server``) is started from ``$EVENTBUS_BIN``:

    $EVENTBUS_BIN serve --listen 127.0.0.1:0 --listen-addr-file <tmp>/addr \\
        --data-file <tmp>/eventbus.db

It binds a free loopback port and writes the bound address to the addr file, which is the
readiness signal: the fixture polls it every 20 ms, for at most 30 s, and fails at once if the
process exits first. Teardown sends SIGTERM and expects a clean exit (status 0) within 20 s.
Without ``EVENTBUS_BIN`` every test using the fixture fails (never skips) with a message.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventbus import Client
from fakebus import FakeServer, start_fake_server

READY_TIMEOUT = 30.0
READY_POLL = 0.02
STOP_TIMEOUT = 20.0
_ADDRESS = re.compile(r"^\S+:\d+$")


class Tracing:
    """A tracer provider (not installed globally) whose spans land in ``exporter``."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))


@pytest.fixture(scope="session")
def _tracing_session() -> Iterator[Tracing]:
    tracing = Tracing()
    yield tracing
    tracing.provider.shutdown()


@pytest.fixture
def tracing(_tracing_session: Tracing) -> Tracing:
    _tracing_session.exporter.clear()
    return _tracing_session


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = start_fake_server()
    yield server
    server.server.stop(grace=None)


class LiveServer:
    """A running ``eventbus serve`` process and the address it bound."""

    def __init__(self, process: subprocess.Popen[bytes], address: str, log: Path, command: list[str]) -> None:
        self.process = process
        self.address = address
        self.log = log
        self.command = command

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        """Sends SIGTERM and returns the exit status; kills it and fails after STOP_TIMEOUT."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"eventbus server ignored SIGTERM for {STOP_TIMEOUT} s\n{self.log_tail()}")
        return self.process.returncode


def _read_address(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    # A partial write would not look like host:port yet; keep polling until it does.
    return text if _ADDRESS.match(text) else None


def eventbus_binary() -> str:
    """Returns $EVENTBUS_BIN, failing the test (never skipping) when it is unset or not executable."""
    binary = os.environ.get("EVENTBUS_BIN")
    if not binary:
        pytest.fail(
            "EVENTBUS_BIN is not set: the integration tests need the eventbus server binary, "
            "e.g. EVENTBUS_BIN=target/debug/eventbus (tests/lib/python_client.sh sets it). "
            "Deselect them with -m 'not integration' to run the unit tests alone.",
            pytrace=False,
        )
    if not os.access(binary, os.X_OK):
        pytest.fail(f"EVENTBUS_BIN={binary} is not an executable file", pytrace=False)
    return binary


def start_server(
    workdir: Path, listen: str = "127.0.0.1:0", name: str = "server", args: Sequence[str] = ()
) -> LiveServer:
    """Starts ``$EVENTBUS_BIN serve`` with its SQLite file in ``workdir`` (and ``args``); returns
    once it listens.

    Readiness is the address file having a ``host:port`` in it (polled every 20 ms, at most
    30 s); a process that exits first fails the test with its log.
    """
    binary = eventbus_binary()
    addr_file = workdir / f"{name}.addr"
    addr_file.unlink(missing_ok=True)
    log = workdir / f"{name}.log"
    command = [
        binary,
        "serve",
        "--listen",
        listen,
        "--listen-addr-file",
        str(addr_file),
        "--data-file",
        str(workdir / "eventbus.db"),
        *args,
    ]
    with log.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
    server = LiveServer(process, "", log, command)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        address = _read_address(addr_file)
        if address is not None:
            server.address = address
            return server
        if process.poll() is not None:
            pytest.fail(
                f"eventbus server exited with status {process.returncode} before writing {addr_file}\n"
                f"command: {' '.join(command)}\nlog:\n{server.log_tail()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(
                f"eventbus server did not write its address to {addr_file} within {READY_TIMEOUT} s\n"
                f"command: {' '.join(command)}\nlog:\n{server.log_tail()}",
                pytrace=False,
            )
        time.sleep(READY_POLL)


@pytest.fixture(scope="session")
def eventbus_server() -> Iterator[LiveServer]:
    """One live server for the session; teardown expects SIGTERM to end it with status 0."""
    eventbus_binary()
    with tempfile.TemporaryDirectory(prefix="eventbus-pytest-") as tmp:
        server = start_server(Path(tmp))
        try:
            yield server
        finally:
            status = server.stop()
        if status != 0:
            pytest.fail(f"eventbus server exited with status {status} after SIGTERM\n{server.log_tail()}")


@pytest.fixture
def client(eventbus_server: LiveServer) -> Iterator[Client]:
    """A client of the session's live server."""
    with Client(eventbus_server.address, timeout=10) as client:
        yield client


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A scratch directory for tests that run servers of their own."""
    with tempfile.TemporaryDirectory(prefix="eventbus-pytest-") as tmp:
        yield Path(tmp)


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"pytest-{uuid.uuid4().hex[:12]}"
