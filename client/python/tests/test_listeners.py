"""The listener-spec builder."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from eventbus import ListenerSpecBuilder
from eventbus.v1 import listener_pb2


def test_start_one() -> None:
    spec = ListenerSpecBuilder.start("fulfilment").one("order.created").build()
    assert spec == listener_pb2.ListenerSpec(
        kind=listener_pb2.LISTENER_KIND_START,
        workflow_id="fulfilment",
        condition=listener_pb2.LISTENER_CONDITION_ONE,
        types=["order.created"],
    )


def test_start_any_with_filters() -> None:
    spec = (
        ListenerSpecBuilder.start("billing")
        .any("invoice.created", "invoice.updated")
        .filter("invoice.created", {"region": "eu-*"}, currency="EUR")
        .filter("invoice.created", region="us-*")
        .build()
    )
    assert spec.condition == listener_pb2.LISTENER_CONDITION_ANY
    assert list(spec.types) == ["invoice.created", "invoice.updated"]
    assert [(f.type, dict(f.attributes)) for f in spec.filters] == [
        ("invoice.created", {"region": "eu-*", "currency": "EUR"}),
        ("invoice.created", {"region": "us-*"}),
    ]


def test_wait_all_with_everything() -> None:
    deadline = datetime(2026, 12, 1, tzinfo=timezone.utc)
    spec = (
        ListenerSpecBuilder.wait("order-42")
        .all("payment.received", "shipment.sent")
        .correlate_by("orderid", "region")
        .filter("payment.received", orderid="42")
        .filter("shipment.sent", orderid="42")
        .lifespan(timedelta(hours=2))
        .policy("latest")
        .deadline(deadline)
        .build()
    )
    assert spec.kind == listener_pb2.LISTENER_KIND_WAIT
    assert spec.instance_id == "order-42"
    assert spec.workflow_id == ""
    assert spec.condition == listener_pb2.LISTENER_CONDITION_ALL
    assert list(spec.correlate_by) == ["orderid", "region"]
    assert spec.lifespan == duration_pb2.Duration(seconds=7200)
    assert spec.policy == listener_pb2.CONSUMPTION_POLICY_LATEST
    assert spec.deadline == timestamp_pb2.Timestamp(seconds=int(deadline.timestamp()))
    assert len(spec.filters) == 2


def test_later_calls_replace_types_and_correlation() -> None:
    builder = ListenerSpecBuilder.start("w").all("a", "b").correlate_by("x")
    spec = builder.one("c").correlate_by("y").build()
    assert list(spec.types) == ["c"]
    assert spec.condition == listener_pb2.LISTENER_CONDITION_ONE
    assert list(spec.correlate_by) == ["y"]


def test_lifespan_in_seconds_and_zero_clears() -> None:
    builder = ListenerSpecBuilder.start("w").all("a", "b").lifespan(1.5)
    assert builder.build().lifespan == duration_pb2.Duration(seconds=1, nanos=500_000_000)
    assert not builder.lifespan(0).build().HasField("lifespan")


def test_policy_accepts_enum_values_and_rejects_unknown_names() -> None:
    spec = ListenerSpecBuilder.start("w").policy(listener_pb2.CONSUMPTION_POLICY_FIRST).build()
    assert spec.policy == listener_pb2.CONSUMPTION_POLICY_FIRST
    with pytest.raises(ValueError, match="first"):
        ListenerSpecBuilder.start("w").policy("newest")


def test_filter_needs_a_clause_and_deadline_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="clause"):
        ListenerSpecBuilder.start("w").filter("a")
    with pytest.raises(ValueError, match="timezone-aware"):
        ListenerSpecBuilder.wait("i").deadline(datetime(2030, 1, 1))


def test_build_returns_independent_copies() -> None:
    builder = ListenerSpecBuilder.start("w").one("a")
    first = builder.build()
    builder.one("b")
    assert list(first.types) == ["a"]


def test_where_adds_a_set_with_a_condition_and_optional_clauses() -> None:
    condition = 'data.amount >= 100 && subject.startsWith("eu/")'
    spec = (
        ListenerSpecBuilder.start("billing")
        .any("payment.received", "refund.issued")
        .where("payment.received", condition)
        .where("refund.issued", "data.amount > 0", {"region": "eu-*"}, tier="gold")
        .filter("refund.issued", region="us")
        .build()
    )
    assert [(f.type, dict(f.attributes), f.condition) for f in spec.filters] == [
        ("payment.received", {}, condition),
        ("refund.issued", {"region": "eu-*", "tier": "gold"}, "data.amount > 0"),
        ("refund.issued", {"region": "us"}, ""),
    ]


def test_where_rejects_an_empty_condition() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        ListenerSpecBuilder.start("w").one("a").where("a", "  ")

