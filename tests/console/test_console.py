"""The web console in a real browser: headless Chromium driven by Selenium, against a real
`eventbus serve` (SQLite in a temp dir, tokens on, the console on the HTTP listener).

One story, a screenshot per step (into $EVENTBUS_CONSOLE_ARTIFACTS, default
/tmp/eventbus-console-artifacts), failing on any error in the page's console:

0. log in with the admin token;
1. publish an event;
2. find it in the console (filter by type, open it, see its data, escaped);
3. register an ALL listener with correlation over gRPC;
4. see its partial state after one event;
5. publish the partner, see it arrive on the followed events page, and see the listener fire;
6. make the notification dead (a subscriber that nacks until the group's max attempts);
7. redrive it from the console and see it delivered (a subscriber receives it).

Every wait is an explicit WebDriverWait on a condition, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from eventbus import Client, ListenerSpecBuilder, Notification

BINARY = os.environ["EVENTBUS_BIN"]
ARTIFACTS = Path(os.environ.get("EVENTBUS_CONSOLE_ARTIFACTS", "/tmp/eventbus-console-artifacts"))
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 20.0
NAMESPACE = "shop"
GROUP = "payments"


@dataclass
class Server:
    """An `eventbus serve` process with tokens on and the console on its HTTP listener."""

    process: subprocess.Popen[bytes]
    address: str
    console: str
    token: str
    log: Path

    @classmethod
    def start(cls, workdir: Path) -> Server:
        token = "ebt_" + secrets.token_urlsafe(32)
        (workdir / "admin-token").write_text(token)
        addr_file, http_file, log = workdir / "addr", workdir / "http-addr", workdir / "server.log"
        command = [BINARY, "serve", "--listen", "127.0.0.1:0", "--listen-addr-file", str(addr_file)]
        command += ["--data-file", str(workdir / "eventbus.db")]
        command += ["--http-addr", "127.0.0.1:0", "--http-addr-file", str(http_file)]
        command += ["--admin-token-file", str(workdir / "admin-token")]
        command += ["--jaeger-ui-url", "http://127.0.0.1:16686"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "OTEL_"))}
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + WAIT
        # Both listeners are bound before their address files are written.
        while not (address := read_address(addr_file)) or not (http := read_address(http_file)):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"eventbus serve did not start:\n{log.read_text()}")
            time.sleep(0.02)
        return cls(process, address, f"http://{http}", token, log)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=WAIT) == 0, self.log.read_text()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"eventbus serve ignored SIGTERM:\n{self.log.read_text()}")

    def client(self) -> Client:
        return Client(self.address, token=self.token)


def read_address(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text if re.match(r"^\S+:\d+$", text) else None


def publish(server: Server, event_type: str, data: str, **extensions: str) -> int:
    """Publishes one event into the story's namespace with curl, over the CloudEvents HTTP
    ingress in binary mode, and returns its sequence."""
    command = ["curl", "--silent", "--show-error", "--fail-with-body", "-X", "POST"]
    command += [f"{server.console}/v1/namespaces/{NAMESPACE}/events"]
    command += ["-H", f"Authorization: Bearer {server.token}", "-H", "Content-Type: application/json"]
    command += ["-H", "ce-specversion: 1.0", "-H", f"ce-type: {event_type}", "-H", "ce-source: /shop"]
    command += ["-H", f"ce-id: {secrets.token_hex(8)}"]
    for name, value in extensions.items():
        command += ["-H", f"ce-{name}: {value}"]
    command += ["--data-binary", data]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=WAIT).stdout
    answer = json.loads(out)
    assert answer["events"][0]["duplicate"] is False, out
    return int(answer["events"][0]["sequence"])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server.start(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,900"):
        options.add_argument(arg)
    # Nothing but the server under test: no component updates, no field trials, no sync.
    options.add_argument("--disable-background-networking")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


class Story:
    """The browser, the server and the step counter of the screenshots."""

    def __init__(self, driver: webdriver.Chrome, server: Server) -> None:
        self.driver = driver
        self.server = server
        self.step = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.server.console + path)

    def wait(self, condition: Callable[[WebDriver], object], what: str) -> object:
        return WebDriverWait(self.driver, WAIT).until(condition, f"waiting for {what}")

    def element(self, css: str) -> WebElement:
        found = self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, css), css)
        assert isinstance(found, list)
        element: WebElement = found[0]
        return element

    def text(self, css: str) -> str:
        return self.element(css).text

    def done(self, name: str) -> None:
        """Saves a screenshot of the step and fails on any console error so far."""
        self.step += 1
        self.driver.save_screenshot(str(ARTIFACTS / f"{self.step:02d}-{name}.png"))
        log: list[dict[str, str]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        errors = [e for e in log if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, f"console errors after step {name}: {errors}"


def nack_until_dead(server: Server, reason: str) -> Notification:
    """A subscriber of the story's group (2 attempts) that nacks until its notification is dead."""
    with server.client() as client:
        subscription = client.subscribe(NAMESPACE, GROUP, start="earliest", max_attempts=2)
        timer = threading.Timer(WAIT, subscription.cancel)  # never hang the suite
        timer.start()
        try:
            for notification in subscription:
                if subscription.nack(notification, reason=reason):
                    return notification
        finally:
            timer.cancel()
            subscription.cancel()
    pytest.fail("the subscriber's stream ended before a notification was dead")


def receive_one(server: Server) -> Notification:
    """A subscriber of the story's group that acks and returns the first notification it gets."""
    with server.client() as client:
        subscription = client.subscribe(NAMESPACE, GROUP, start="earliest", max_attempts=2)
        timer = threading.Timer(WAIT, subscription.cancel)
        timer.start()
        try:
            for notification in subscription:
                subscription.ack(notification)
                return notification
        finally:
            timer.cancel()
            subscription.cancel()
    pytest.fail("no notification was delivered")


def test_console_story(browser: webdriver.Chrome, server: Server) -> None:
    story = Story(browser, server)

    # 0. A page asks for the token first; the admin token opens the namespace list.
    story.open("/ui/")
    story.element("input#token").send_keys(server.token)
    story.element("section.login button[type=submit]").click()
    story.wait(lambda d: d.current_url.endswith("/ui/"), "the namespace list after logging in")
    assert story.text("header .who") == "logged in as admin"
    story.done("logged-in")

    # 1. Publish an order (with hostile text in its data) and an unrelated event.
    hostile = "<script>document.title='owned'</script>"
    order = publish(server, "order.created", f'{{"orderid": "42", "note": "{hostile}"}}', orderid="42")
    publish(server, "inventory.checked", '{"sku": "A-1"}')
    story.open("/ui/")
    story.element(f"#namespaces a[href='/ui/ns/{NAMESPACE}/events']").click()
    story.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 2, "two events")
    story.done("published")

    # 2. Filter by type, open the order, read its data (the script is text, not run).
    story.element("#filters input[name=type]").send_keys("order.created")
    story.element("#filters button[type=submit]").click()
    story.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 1, "the filtered list")
    assert story.text("#events tbody td.type") == "order.created"
    story.element(f"#events tbody a[href$='/events/{order}']").click()
    data = story.text("#event-data")
    assert '"orderid": "42"' in data and hostile in data, data
    assert browser.title.startswith(f"Event #{order}"), browser.title
    assert "orderid" in story.text("#extensions")
    story.done("event")

    # 3. An ALL listener correlated by orderid (a WAIT: it fires once), registered over gRPC.
    spec = ListenerSpecBuilder.wait("checkout-7").all("order.created", "payment.received").correlate_by("orderid")
    spec = spec.lifespan(3600)
    with server.client() as client:
        listener = client.register_listener(NAMESPACE, spec).listener
    story.open(f"/ui/ns/{NAMESPACE}/listeners")
    row = story.element(f"#listeners tr[data-listener='{listener.id}']")
    assert "ALL by orderid" in row.text and "active" in row.text, row.text
    story.done("listener")

    # 4. One event of the pair: the listener holds it for orderid=7, waiting for the payment.
    first = publish(server, "order.created", '{"orderid": "7"}', orderid="7")
    story.open(f"/ui/ns/{NAMESPACE}/listeners/{listener.id}")
    partial = story.text("#partial-states tbody tr")
    assert "orderid=7" in partial and f"order.created #{first}" in partial, partial
    assert "payment.received" in partial and "59m" in partial, partial  # expires in 59m 5xs
    story.done("partial-state")

    # 5. The partner arrives live on the followed events page, and the listener fires.
    story.open(f"/ui/ns/{NAMESPACE}/events?follow=1")
    story.element("#follow-status")
    partner = publish(server, "payment.received", '{"orderid": "7", "amount": 30}', orderid="7")
    story.wait(lambda d: d.find_elements(By.CSS_SELECTOR, f"#events tr[data-sequence='{partner}']"), "the live row")
    story.done("followed")
    story.open(f"/ui/ns/{NAMESPACE}/listeners/{listener.id}")
    assert story.text("#listener-status") == "fired"
    assert story.text("#fire-id")
    assert story.text("#no-partial-state") == "Nothing collected."
    story.done("fired")

    # 6. A subscriber that fails twice: the notification is a dead letter with its last error.
    dead = nack_until_dead(server, "payment service down")
    story.open(f"/ui/ns/{NAMESPACE}/groups")
    assert story.text(f"#groups tr[data-group='{GROUP}'] td.dead") == "1"
    story.element(f"#groups a[href='/ui/ns/{NAMESPACE}/groups/{GROUP}']").click()
    letter = story.element(f"#dead-letters tr[data-sequence='{dead.sequence}']")
    assert "payment service down" in letter.text and "WAKE" in letter.text, letter.text
    story.done("dead-letter")

    # 7. Redrive it from the console; a subscriber then gets it again, from attempt 1.
    letter.find_element(By.CSS_SELECTOR, "button.redrive").click()
    story.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#notice"), "the redrive notice")
    assert story.text("#notice") == "1 dead letter redriven."
    assert story.text("#no-dead-letters") == "No dead letters."
    story.done("redriven")
    delivered = receive_one(server)
    assert (delivered.sequence, delivered.attempt) == (dead.sequence, 1)
    story.open(f"/ui/ns/{NAMESPACE}/groups/{GROUP}")
    assert (story.text("#dead-count"), story.text("#pending"), story.text("#leased")) == ("0", "0", "0")
    story.done("delivered")
