"""Python client for eventbus, the gRPC event bus for workflow engines.

The wire types and gRPC stubs are generated from ``proto/eventbus/v1`` into
``eventbus.v1`` (``cloudevent_pb2``, ``event_bus_service_pb2_grpc``, ...); do not edit
them by hand, regenerate with ``codegen`` from ``tests/lib/codegen.sh``. The helpers next to
this module are built on them and depend only on grpcio, protobuf and opentelemetry-api:

* :class:`Client` (:mod:`eventbus.client`) and :class:`AsyncClient` (:mod:`eventbus.aio`):
  the calls, with keepalive, retries on ``UNAVAILABLE`` and trace-context metadata;
* :func:`new_event` and friends (:mod:`eventbus.events`): CloudEvents, including conversion
  to and from the CloudEvents SDK (extra ``eventbus-client[cloudevents]``);
* :class:`ListenerSpecBuilder` (:mod:`eventbus.listeners`): listener specs;
* :class:`Publisher` and :class:`AsyncPublisher` (:mod:`eventbus.publisher`): many publishes
  in flight on one PublishStream call;
* :class:`Runner` and :class:`AsyncRunner` (:mod:`eventbus.runner`): a consumer group's
  notifications handed to a handler, acked, nacked with backoff, reconnecting;
* :mod:`eventbus.tracing`: OpenTelemetry propagation for calls and notifications.
"""

from eventbus._common import NON_RETRYABLE_CODES, SubscribeOptions, is_retryable
from eventbus.aio import AsyncClient, AsyncSubscription
from eventbus.backoff import Backoff
from eventbus.client import Client, Subscription
from eventbus.events import (
    SPEC_VERSION,
    Uri,
    UriRef,
    canonical_string,
    event_attributes,
    event_data,
    from_cloudevents,
    get_attribute,
    new_event,
    new_event_id,
    to_cloudevents,
)
from eventbus.listeners import ListenerSpecBuilder
from eventbus.publisher import AsyncPublisher, Publisher, StatusError
from eventbus.runner import AsyncRunner, Runner, RunnerStats
from eventbus.v1.cloudevent_pb2 import CloudEvent, StoredEvent
from eventbus.v1.listener_pb2 import Listener, ListenerSpec
from eventbus.v1.notification_pb2 import (
    NOTIFICATION_KIND_START,
    NOTIFICATION_KIND_TIMEOUT,
    NOTIFICATION_KIND_WAKE,
    Notification,
)

__all__ = [
    "NON_RETRYABLE_CODES",
    "NOTIFICATION_KIND_START",
    "NOTIFICATION_KIND_TIMEOUT",
    "NOTIFICATION_KIND_WAKE",
    "SPEC_VERSION",
    "AsyncClient",
    "AsyncPublisher",
    "AsyncRunner",
    "AsyncSubscription",
    "Backoff",
    "Client",
    "CloudEvent",
    "Listener",
    "ListenerSpec",
    "ListenerSpecBuilder",
    "Notification",
    "Publisher",
    "Runner",
    "RunnerStats",
    "StatusError",
    "StoredEvent",
    "SubscribeOptions",
    "Subscription",
    "Uri",
    "UriRef",
    "canonical_string",
    "event_attributes",
    "event_data",
    "from_cloudevents",
    "get_attribute",
    "is_retryable",
    "new_event",
    "new_event_id",
    "to_cloudevents",
]
