"""Order fulfilment on eventbus: START a workflow per order, WAIT for payment and shipment.

    python orders.py all      --addr 127.0.0.1:50051 --namespace demo --orders 2000
    python orders.py runner   --addr 127.0.0.1:50051 --namespace demo --orders 2000
    python orders.py producer --addr 127.0.0.1:50051 --namespace demo --orders 2000

The flow:

* a START listener on ``order.created`` starts workflow ``fulfilment`` for every order;
* the runner (consumer group ``fulfilment-runners``), on START, registers a WAIT listener for
  instance ``order-<orderid>``: condition ALL over ``payment.received`` and ``shipment.sent``,
  ``correlate_by ["orderid"]`` and a filter on the order's id for both types;
* on WAKE (both events arrived) the runner marks the order done;
* the producer publishes the ``order.created`` events, in batches.

Who publishes the payments and shipments, and when. A WAIT listener only sees events received
after it was registered, so a payment published before its order's WAIT exists would be missed
and the order would never wake. This example makes that impossible by construction instead of
by timing: the runner plays the payment and shipping services, and publishes an order's
``payment.received`` and ``shipment.sent`` only after RegisterListener for that order has
returned. No polling, no sleeps.

Delivery is at least once, so every step is idempotent: the WAIT is registered with the START
notification's ``fire_id`` as its ``request_id``, and the follow-up events have ids derived from
the order id, so a redelivered START neither registers a second WAIT nor publishes the events
twice (Publish drops duplicates).

``all`` runs everything in one process and then verifies: every order started exactly once and
woke exactly once (distinct ``fire_id``s per order; redeliveries are counted, not treated as
errors), and the server reports one FIRED WAIT listener per order. It prints the counts and
exits non-zero if anything is off. ``runner`` runs until it has seen every order wake (or
``--timeout``), then verifies the same; ``producer`` only publishes. Both register the START
listener (idempotently), so they can be started in any order. Use a fresh namespace for each
verified run: the consumer group remembers what it already settled, so a second run over the same
namespace sees no orders and fails its check.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import grpc

from eventbus import (
    Client,
    ListenerSpecBuilder,
    Notification,
    Runner,
    get_attribute,
    new_event,
)
from eventbus.v1 import listener_pb2, notification_pb2

WORKFLOW = "fulfilment"
GROUP = "fulfilment-runners"
ORDER_CREATED = "order.created"
PAYMENT_RECEIVED = "payment.received"
SHIPMENT_SENT = "shipment.sent"
START_LISTENER_REQUEST_ID = "orders-example-start-listener"
PUBLISH_BATCH = 500


def order_id(n: int) -> str:
    return f"{n:06d}"


def instance_id(orderid: str) -> str:
    return f"order-{orderid}"


def ensure_start_listener(client: Client, namespace: str) -> None:
    """Registers the START listener once; later calls return the same listener."""
    client.register_listener(
        namespace,
        ListenerSpecBuilder.start(WORKFLOW).one(ORDER_CREATED),
        request_id=START_LISTENER_REQUEST_ID,
    )


def produce(client: Client, namespace: str, orders: int) -> int:
    """Publishes ``order.created`` for orders 1..orders; returns how many were new."""
    new = 0
    batch = []
    for n in range(1, orders + 1):
        orderid = order_id(n)
        batch.append(
            new_event(
                "/shop/orders",
                ORDER_CREATED,
                id=f"order-created-{orderid}",
                subject=instance_id(orderid),
                data={"orderid": orderid, "amount_cents": 100 * n},
                extensions={"orderid": orderid},
            )
        )
        if len(batch) == PUBLISH_BATCH or n == orders:
            new += sum(not result.duplicate for result in client.publish(namespace, batch))
            batch = []
    return new


@dataclass
class Fulfilment:
    """The runner's side: the handler and what it has seen, per order."""

    client: Client
    namespace: str
    orders: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    woke: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    start_deliveries: int = 0
    wake_deliveries: int = 0
    unexpected: list[str] = field(default_factory=list)
    all_woke: threading.Event = field(default_factory=threading.Event)

    def handle(self, note: Notification) -> None:
        if note.kind == notification_pb2.NOTIFICATION_KIND_START:
            self.on_start(note)
        elif note.kind == notification_pb2.NOTIFICATION_KIND_WAKE:
            self.on_wake(note)
        else:
            with self.lock:
                self.unexpected.append(f"notification kind {note.kind} for {note.instance_id}")

    def on_start(self, note: Notification) -> None:
        (event,) = note.events
        orderid = get_attribute(event, "orderid")
        if note.workflow_id != WORKFLOW or not isinstance(orderid, str):
            with self.lock:
                self.unexpected.append(f"START {note.fire_id}: workflow {note.workflow_id!r}, orderid {orderid!r}")
            return
        spec = (
            ListenerSpecBuilder.wait(instance_id(orderid))
            .all(PAYMENT_RECEIVED, SHIPMENT_SENT)
            .correlate_by("orderid")
            .filter(PAYMENT_RECEIVED, orderid=orderid)
            .filter(SHIPMENT_SENT, orderid=orderid)
        )
        # The fire_id makes a redelivered START find the WAIT it registered before.
        self.client.register_listener(self.namespace, spec, request_id=note.fire_id)
        # Only now can the follow-ups be published: the WAIT exists and will see them.
        self.client.publish(
            self.namespace,
            [
                new_event("/payments", PAYMENT_RECEIVED, id=f"payment-{orderid}", extensions={"orderid": orderid}),
                new_event("/shipping", SHIPMENT_SENT, id=f"shipment-{orderid}", extensions={"orderid": orderid}),
            ],
        )
        with self.lock:
            self.start_deliveries += 1
            self.started[orderid].add(note.fire_id)

    def on_wake(self, note: Notification) -> None:
        orderid = note.correlation.get("orderid", "")
        with self.lock:
            self.wake_deliveries += 1
            if note.instance_id != instance_id(orderid) or len(note.events) != 2:
                self.unexpected.append(f"WAKE {note.fire_id}: instance {note.instance_id!r}, correlation {orderid!r}")
                return
            self.woke[orderid].add(note.fire_id)  # the order is done
            if len(self.woke) >= self.orders:
                self.all_woke.set()

    def progress(self) -> str:
        with self.lock:
            return f"started {len(self.started)}/{self.orders}, woke {len(self.woke)}/{self.orders}"

    def verify(self, fired_waits: int) -> list[str]:
        """Returns what is wrong; empty when every order started once and woke once."""
        problems = list(self.unexpected)
        expected = {order_id(n) for n in range(1, self.orders + 1)}
        with self.lock:
            for name, seen in (("started", self.started), ("woke", self.woke)):
                missing = sorted(expected - seen.keys())
                extra = sorted(seen.keys() - expected)
                twice = sorted(o for o, fires in seen.items() if len(fires) != 1)
                if missing:
                    problems.append(f"{len(missing)} orders never {name}, e.g. {missing[:5]}")
                if extra:
                    problems.append(f"{len(extra)} unknown orders {name}, e.g. {extra[:5]}")
                if twice:
                    problems.append(f"{len(twice)} orders {name} more than once, e.g. {twice[:5]}")
        if fired_waits != self.orders:
            problems.append(f"server reports {fired_waits} FIRED WAIT listeners, expected {self.orders}")
        return problems


def count_fired_waits(client: Client, namespace: str) -> int:
    return sum(
        listener.status == listener_pb2.LISTENER_STATUS_FIRED
        for listener in client.list_listeners(
            namespace, kind=listener_pb2.LISTENER_KIND_WAIT, include_finished=True, page_size=1000
        )
    )


def wait_for_orders(
    client: Client,
    namespace: str,
    orders: int,
    timeout: float,
    fulfilment: Fulfilment,
    runner: Runner,
    began: float,
    produce_too: bool,
) -> None:
    """Publishes the orders (with ``produce_too``), then waits until every order woke, the
    runner failed, or ``timeout`` passed, logging progress every 2 s."""
    if produce_too:
        published = produce(client, namespace, orders)
        log(f"published {published} new orders in {time.monotonic() - began:.1f}s")
    deadline = began + timeout
    while not fulfilment.all_woke.wait(2.0):
        log(fulfilment.progress())
        if runner.done:
            return  # the runner failed; leaving the with block raises its error
        if time.monotonic() > deadline:
            log(f"timed out after {timeout:.0f}s")
            return


def run_fulfilment(
    client: Client, namespace: str, orders: int, timeout: float, concurrency: int, produce_too: bool
) -> int:
    fulfilment = Fulfilment(client, namespace, orders)
    began = time.monotonic()
    runner = Runner(
        client, namespace, GROUP, fulfilment.handle, kinds=["start", "wake"], max_in_flight=concurrency
    )
    try:
        with runner:
            wait_for_orders(client, namespace, orders, timeout, fulfilment, runner, began, produce_too)
    except grpc.RpcError as exc:
        print(f"FAIL: runner stopped: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - began
    stats = runner.stats
    fired = count_fired_waits(client, namespace)
    with fulfilment.lock:
        print(
            f"orders={orders} started={len(fulfilment.started)} woke={len(fulfilment.woke)} "
            f"fired_waits={fired} start_deliveries={fulfilment.start_deliveries} "
            f"wake_deliveries={fulfilment.wake_deliveries} acked={stats.acked} nacked={stats.nacked} "
            f"reconnects={stats.reconnects} elapsed={elapsed:.1f}s "
            f"orders_per_second={orders / elapsed:.0f}"
        )
    problems = fulfilment.verify(fired)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("ok: every order started once and woke once")
    return 0


def log(message: str) -> None:
    print(f"[orders] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", choices=["producer", "runner", "all"])
    parser.add_argument("--addr", default="127.0.0.1:50051", help="eventbus address (host:port)")
    parser.add_argument("--namespace", default="orders-example")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the runner waits for every order")
    parser.add_argument("--concurrency", type=int, default=64, help="notifications handled at once")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with Client(args.addr) as client:
        ensure_start_listener(client, args.namespace)
        if args.mode == "producer":
            began = time.monotonic()
            published = produce(client, args.namespace, args.orders)
            print(f"published {published} new orders ({args.orders} in total) in {time.monotonic() - began:.1f}s")
            return 0
        status = run_fulfilment(
            client, args.namespace, args.orders, args.timeout, args.concurrency, produce_too=args.mode == "all"
        )
        if args.mode == "all":
            client.delete_listeners(args.namespace, workflow_id=WORKFLOW)
        return status


if __name__ == "__main__":
    sys.exit(main())
