"""Building listener specs (``eventbus.v1.ListenerSpec``).

Start with :meth:`ListenerSpecBuilder.start` or :meth:`ListenerSpecBuilder.wait`, name the
condition with :meth:`~ListenerSpecBuilder.one`, :meth:`~ListenerSpecBuilder.any` or
:meth:`~ListenerSpecBuilder.all`, then add what else the listener needs::

    spec = (
        ListenerSpecBuilder.wait("order-42")
        .all("payment.received", "shipment.sent")
        .correlate_by("orderid")
        .filter("payment.received", orderid="42")
        .filter("shipment.sent", orderid="42")
        .deadline(datetime.now(timezone.utc) + timedelta(hours=1))
        .build()
    )

A filter set may also carry a CEL condition on the whole event (its attributes and extensions
by name, and ``data``: decoded JSON, else bytes), with or without clauses::

    spec = (
        ListenerSpecBuilder.start("review")
        .one("order.created")
        .where("order.created", 'data.items.size() > 10 && subject.startsWith("eu/")')
        .build()
    )

The builder does not validate the combination; the server rejects an invalid spec with
``INVALID_ARGUMENT`` naming the field (for example ``lifespan``, ``correlate_by`` or ``policy``
on a listener that is not ALL, or ``deadline`` on a START listener).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from google.protobuf import duration_pb2

from eventbus.events import to_timestamp
from eventbus.v1 import listener_pb2

__all__ = ["ListenerSpecBuilder", "to_duration"]

_POLICIES = {
    "first": listener_pb2.CONSUMPTION_POLICY_FIRST,
    "latest": listener_pb2.CONSUMPTION_POLICY_LATEST,
}


def to_duration(value: timedelta | float | int, what: str = "duration") -> duration_pb2.Duration:
    """Returns a protobuf ``Duration`` for a ``timedelta`` or a number of seconds."""
    if isinstance(value, timedelta):
        seconds = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = timedelta(seconds=value)
    else:
        raise TypeError(f"{what} must be a timedelta or seconds, got {type(value).__name__}")
    duration = duration_pb2.Duration()
    duration.FromTimedelta(seconds)
    return duration


class ListenerSpecBuilder:
    """Builds a :class:`eventbus.v1.listener_pb2.ListenerSpec`; every method returns the builder."""

    __slots__ = ("_spec",)

    def __init__(self, spec: listener_pb2.ListenerSpec | None = None) -> None:
        self._spec = listener_pb2.ListenerSpec()
        if spec is not None:
            self._spec.CopyFrom(spec)

    @classmethod
    def start(cls, workflow_id: str) -> ListenerSpecBuilder:
        """A START listener: starts a new instance of ``workflow_id`` each time its condition is met."""
        return cls(listener_pb2.ListenerSpec(kind=listener_pb2.LISTENER_KIND_START, workflow_id=workflow_id))

    @classmethod
    def wait(cls, instance_id: str) -> ListenerSpecBuilder:
        """A WAIT listener: wakes instance ``instance_id`` the first time its condition is met."""
        return cls(listener_pb2.ListenerSpec(kind=listener_pb2.LISTENER_KIND_WAIT, instance_id=instance_id))

    def one(self, event_type: str) -> ListenerSpecBuilder:
        """Condition ONE: each event of ``event_type`` meets it. Replaces earlier types."""
        return self._condition(listener_pb2.LISTENER_CONDITION_ONE, [event_type])

    def any(self, *types: str) -> ListenerSpecBuilder:
        """Condition ANY: each event of one of ``types`` meets it. Replaces earlier types."""
        return self._condition(listener_pb2.LISTENER_CONDITION_ANY, types)

    def all(self, *types: str) -> ListenerSpecBuilder:
        """Condition ALL: one event of each of ``types`` (per correlation tuple) meets it."""
        return self._condition(listener_pb2.LISTENER_CONDITION_ALL, types)

    def filter(
        self, event_type: str, attributes: Mapping[str, str] | None = None, /, **clauses: str
    ) -> ListenerSpecBuilder:
        """Adds a filter set for events of ``event_type``: attribute name -> glob pattern.

        All clauses of a set must match; several sets for one type are alternatives. Clauses
        come from ``attributes`` and from keyword arguments (``orderid="42"``).
        """
        merged = dict(attributes or {})
        merged.update(clauses)
        if not merged:
            raise ValueError(f"filter for {event_type!r} needs at least one attribute clause")
        self._spec.filters.append(listener_pb2.EventFilter(type=event_type, attributes=merged))
        return self

    def where(
        self, event_type: str, condition: str, attributes: Mapping[str, str] | None = None, /, **clauses: str
    ) -> ListenerSpecBuilder:
        """Adds a filter set for events of ``event_type`` with a CEL ``condition``, and clauses.

        The set matches when its clauses (optional here, as in :meth:`filter`) match and the
        condition is true, e.g. ``.where("payment.received", "data.amount >= 100", region="eu-*")``.
        The server checks the condition when the listener is registered; one that fails for an
        event (a missing field, a wrong type) is false for it.
        """
        if not condition.strip():
            raise ValueError(f"condition for {event_type!r} must not be empty")
        merged = dict(attributes or {})
        merged.update(clauses)
        self._spec.filters.append(
            listener_pb2.EventFilter(type=event_type, attributes=merged, condition=condition)
        )
        return self

    def lifespan(self, lifespan: timedelta | float) -> ListenerSpecBuilder:
        """ALL only: how long a collected event stays collected (``timedelta`` or seconds); 0 forever."""
        if (lifespan.total_seconds() if isinstance(lifespan, timedelta) else lifespan) == 0:
            self._spec.ClearField("lifespan")
        else:
            self._spec.lifespan.CopyFrom(to_duration(lifespan, "lifespan"))
        return self

    def correlate_by(self, *names: str) -> ListenerSpecBuilder:
        """ALL only: attribute names whose values tie events together; replaces earlier names."""
        del self._spec.correlate_by[:]
        self._spec.correlate_by.extend(names)
        return self

    def policy(self, policy: str | listener_pb2.ConsumptionPolicy) -> ListenerSpecBuilder:
        """ALL only: ``"first"`` (the default) or ``"latest"``, or a ``ConsumptionPolicy`` value."""
        if isinstance(policy, str):
            try:
                self._spec.policy = _POLICIES[policy.lower()]
            except KeyError:
                raise ValueError(f"policy must be 'first' or 'latest', got {policy!r}") from None
        else:
            self._spec.policy = policy
        return self

    def deadline(self, deadline: datetime) -> ListenerSpecBuilder:
        """WAIT only: when to stop waiting (a timezone-aware ``datetime``); the listener then times out."""
        self._spec.deadline.CopyFrom(to_timestamp(deadline, "deadline"))
        return self

    def build(self) -> listener_pb2.ListenerSpec:
        """Returns a copy of the spec built so far."""
        spec = listener_pb2.ListenerSpec()
        spec.CopyFrom(self._spec)
        return spec

    def _condition(self, condition: listener_pb2.ListenerCondition, types: Iterable[str]) -> ListenerSpecBuilder:
        self._spec.condition = condition
        del self._spec.types[:]
        self._spec.types.extend(types)
        return self
