"""What the sync and asyncio clients share: channel options, request building, status rules."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Union, cast

import grpc

from eventbus.listeners import to_duration
from eventbus.v1 import event_bus_service_pb2 as pb
from eventbus.v1 import listener_pb2, notification_pb2

SERVICE = "eventbus.v1.EventBusService"

# Unary methods the channel retries on UNAVAILABLE: those that are safe to repeat. Publish is
# idempotent per event, RegisterListener is sent with a request_id (the clients always set one),
# reads are reads, Ack of an acked notification changes nothing, and the group's update and seek
# set the same state again. UNAVAILABLE does not always mean that nothing happened (a database
# that answered late, a commit whose answer was lost), so these are left out: the deletes and
# RedriveDeadLetters (a repeat would answer NOT_FOUND or count nothing) and Nack (a repeat could
# count an attempt twice, or fail a lease the notification got meanwhile). The Go client retries
# the same methods (eventbus.NotRetried lists the others).
RETRIED_METHODS = (
    "Publish",
    "RegisterListener",
    "GetListener",
    "ListListeners",
    "Ack",
    "ListDeadLetters",
    "GetEvent",
    "ListEvents",
    "ListNamespaces",
    "ListConsumerGroups",
    "GetConsumerGroup",
    "UpdateConsumerGroup",
    "SeekConsumerGroup",
    "ExplainListener",
    "ReplayEvents",
)

SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": method} for method in RETRIED_METHODS],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}

#: Channel options every client starts from; options passed to a client override them by key.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # HTTP/2 pings every 30 s on a connection with calls in flight, so a dead peer behind a
    # silent network is noticed within 40 s instead of at the next TCP timeout. Subscribe streams
    # also get a Keepalive message from the server every 15 s of silence.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after a server restart (gRPC's default grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Notifications and event pages can carry large events.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
)

#: Statuses after which reconnecting cannot help: the runners raise them.
NON_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

ChannelOptions = Sequence[tuple[str, Any]]
Metadata = Sequence[tuple[str, str]]
KindLike = Union[int, str]
StartLike = Union[int, str, None]

_START_POSITIONS = {
    "earliest": pb.START_POSITION_EARLIEST,
    "latest": pb.START_POSITION_LATEST,
    "sequence": pb.START_POSITION_SEQUENCE,
}

MAX_ACK_BATCH = 1000


def is_retryable(code: grpc.StatusCode | None) -> bool:
    """True unless ``code`` is one of the statuses reconnecting cannot fix."""
    return code not in NON_RETRYABLE_CODES


def channel_options(options: ChannelOptions | None) -> list[tuple[str, Any]]:
    """Returns the default options with ``options`` applied over them (same key: theirs wins)."""
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(dict(options or ()))
    return list(merged.items())


def split_target(target: str) -> tuple[str, bool]:
    """Returns (gRPC target, TLS?) for ``host:port``, ``http://host:port`` or ``https://host:port``."""
    for scheme, tls in (("http://", False), ("https://", True)):
        if target.startswith(scheme):
            return target[len(scheme) :].rstrip("/"), tls
    return target, False


def transport_credentials(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    root_certificates: bytes | None,
    certificate_chain: bytes | None,
    private_key: bytes | None,
) -> tuple[str, grpc.ChannelCredentials | None]:
    """Returns the gRPC address of ``target`` and its TLS credentials (``None`` for plaintext).

    ``credentials`` are used as given; otherwise any of the PEM arguments (the CA certificates
    to trust, and for mutual TLS the client's certificate chain and key), or an ``https://``
    target, mean TLS, with the system roots when ``root_certificates`` is not given. An
    ``https://`` target is never served in plaintext, and an ``http://`` target with TLS
    arguments is a ``ValueError``.
    """
    address, tls = split_target(target)
    pem = (root_certificates, certificate_chain, private_key)
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("certificate_chain and private_key go together (mutual TLS)")
    if credentials is not None and any(p is not None for p in pem):
        raise ValueError("give either credentials or root_certificates/certificate_chain/private_key")
    wants_tls = credentials is not None or any(p is not None for p in pem)
    if wants_tls and target.startswith("http://"):
        raise ValueError(f"{target} is plaintext, but TLS settings were given: use https://")
    if credentials is not None:
        return address, credentials
    if wants_tls or tls:
        return address, grpc.ssl_channel_credentials(
            root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain
        )
    return address, None


def token_metadata(metadata: Metadata | None, token: str | None) -> tuple[tuple[str, str], ...]:
    """Returns the metadata every call carries: ``metadata``, and ``authorization: Bearer
    <token>`` when a token is given."""
    items = tuple(metadata or ())
    if token is None:
        return items
    if not token or any(c in token for c in " \r\n"):
        raise ValueError("token must be a non-empty string without spaces or line breaks")
    return (*items, ("authorization", f"Bearer {token}"))


def notification_kind(kind: KindLike) -> notification_pb2.NotificationKind:
    """Returns a ``NotificationKind`` for a value or a name (``"start"``, ``"WAKE"``, full names)."""
    if isinstance(kind, str):
        name = kind.upper()
        if not name.startswith("NOTIFICATION_KIND_"):
            name = "NOTIFICATION_KIND_" + name
        try:
            return cast(notification_pb2.NotificationKind, notification_pb2.NotificationKind.Value(name))
        except ValueError:
            raise ValueError(f"unknown notification kind {kind!r}: use START, WAKE or TIMEOUT") from None
    notification_pb2.NotificationKind.Name(kind)  # ValueError for an unknown value
    return cast(notification_pb2.NotificationKind, kind)


def listener_kind(kind: int) -> listener_pb2.ListenerKind:
    """Returns ``kind`` as a ``ListenerKind``; ``ValueError`` for an unknown value."""
    listener_pb2.ListenerKind.Name(kind)
    return cast(listener_pb2.ListenerKind, kind)


def start_position(start: StartLike) -> pb.StartPosition:
    if start is None:
        return pb.START_POSITION_UNSPECIFIED
    if isinstance(start, str):
        try:
            return _START_POSITIONS[start.lower()]
        except KeyError:
            raise ValueError(f"start must be 'earliest', 'latest' or 'sequence', got {start!r}") from None
    pb.StartPosition.Name(start)  # ValueError for an unknown value
    return cast(pb.StartPosition, start)


@dataclass(frozen=True)
class SubscribeOptions:
    """A Subscribe request: which group, its fixed settings and this stream's settings.

    ``kinds``, ``workflow_ids`` and ``max_attempts`` are fixed when the group is created and must
    match on later subscriptions (else ``FAILED_PRECONDITION``); ``start`` (``"earliest"``, the
    default, ``"latest"`` or ``"sequence"`` with ``start_sequence``) only counts when this call
    creates the group. ``max_in_flight`` (default 64 on the server) and ``lease_duration``
    (default 30 s) are per stream. Zero and empty values mean the server's defaults.
    """

    namespace: str
    consumer_group: str
    kinds: tuple[KindLike, ...] = ()
    workflow_ids: tuple[str, ...] = ()
    max_in_flight: int = 0
    lease_duration: timedelta | float | None = None
    start: StartLike = None
    start_sequence: int = 0
    max_attempts: int = 0

    def to_request(self) -> pb.SubscribeRequest:
        request = pb.SubscribeRequest(
            namespace=self.namespace,
            consumer_group=self.consumer_group,
            kinds=[notification_kind(kind) for kind in self.kinds],
            workflow_ids=list(self.workflow_ids),
            max_in_flight=self.max_in_flight,
            start=start_position(self.start),
            start_sequence=self.start_sequence,
            max_attempts=self.max_attempts,
        )
        if self.lease_duration:
            request.lease_duration.CopyFrom(to_duration(self.lease_duration, "lease_duration"))
        return request


def subscribe_options(
    namespace: str,
    consumer_group: str,
    *,
    kinds: Iterable[KindLike] = (),
    workflow_ids: Iterable[str] = (),
    max_in_flight: int = 0,
    lease_duration: timedelta | float | None = None,
    start: StartLike = None,
    start_sequence: int = 0,
    max_attempts: int = 0,
) -> SubscribeOptions:
    return SubscribeOptions(
        namespace=namespace,
        consumer_group=consumer_group,
        kinds=tuple(kinds),
        workflow_ids=tuple(workflow_ids),
        max_in_flight=max_in_flight,
        lease_duration=lease_duration,
        start=start,
        start_sequence=start_sequence,
        max_attempts=max_attempts,
    )


def delete_listeners_request(
    namespace: str, workflow_id: str | None, instance_id: str | None
) -> pb.DeleteListenersRequest:
    if (workflow_id is None) == (instance_id is None):
        raise ValueError("delete_listeners needs exactly one of workflow_id= or instance_id=")
    if workflow_id is not None:
        return pb.DeleteListenersRequest(namespace=namespace, workflow_id=workflow_id)
    return pb.DeleteListenersRequest(namespace=namespace, instance_id=instance_id)


def get_event_request(
    namespace: str, sequence: int | None, source: str | None, id: str | None
) -> pb.GetEventRequest:
    if sequence is not None:
        if source is not None or id is not None:
            raise ValueError("get_event takes either a sequence or source= and id=, not both")
        return pb.GetEventRequest(namespace=namespace, sequence=sequence)
    if source is None or id is None:
        raise ValueError("get_event needs a sequence, or both source= and id=")
    return pb.GetEventRequest(namespace=namespace, source_id={"source": source, "id": id})


def ack_batches(sequences: int | Iterable[int]) -> list[list[int]]:
    """Splits sequences into Ack requests of at most 1000, the server's limit."""
    items = [sequences] if isinstance(sequences, int) else list(sequences)
    return [items[i : i + MAX_ACK_BATCH] for i in range(0, len(items), MAX_ACK_BATCH)]


def nack_request(
    namespace: str,
    consumer_group: str,
    sequence: int,
    retry_after: timedelta | float | None,
    reason: str,
) -> pb.NackRequest:
    request = pb.NackRequest(
        namespace=namespace,
        consumer_group=consumer_group,
        sequence=sequence,
        reason=truncate_utf8(reason, 1024),
    )
    if retry_after:
        request.retry_after.CopyFrom(to_duration(retry_after, "retry_after"))
    return request


def truncate_utf8(text: str, limit: int) -> str:
    """Returns ``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")
