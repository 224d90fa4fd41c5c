"""Building and reading CloudEvents (``eventbus.v1.CloudEvent``).

:func:`new_event` builds an event with correct attribute types; :func:`get_attribute`,
:func:`event_attributes` and :func:`event_data` read one back as plain Python values;
:func:`canonical_string` is the string form that listener filters, ``correlate_by`` and
``Notification.correlation`` compare. :func:`to_cloudevents` and :func:`from_cloudevents`
convert to and from the CloudEvents Python SDK (``pip install 'eventbus-client[cloudevents]'``),
which is imported only when they are called.

Attribute values map to Python types as follows:

============== =========================================================
``ce_boolean`` ``bool``
``ce_integer`` ``int`` (signed 32 bits; other ints raise ``ValueError``)
``ce_string``  ``str``
``ce_bytes``   ``bytes``
``ce_uri``     :class:`Uri` (a ``str`` subclass)
``ce_uri_ref`` :class:`UriRef` (a ``str`` subclass)
``ce_timestamp`` timezone-aware ``datetime`` (naive ones raise ``ValueError``)
============== =========================================================

Hazards: a Python ``datetime`` has microseconds, a protobuf ``Timestamp`` nanoseconds, so
reading a timestamp with sub-microsecond digits truncates them. Event ids come from clients:
build an event once and reuse it (not :func:`new_event` again) when retrying a Publish, so the
server recognises the retry as a duplicate.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time as _time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, Union

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

from eventbus.v1 import cloudevent_pb2

if TYPE_CHECKING:
    from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent

__all__ = [
    "SPEC_VERSION",
    "AttributeValue",
    "CloudEvent",
    "Uri",
    "UriRef",
    "canonical_string",
    "event_attributes",
    "event_data",
    "from_attribute_value",
    "from_cloudevents",
    "get_attribute",
    "is_json_content_type",
    "new_event",
    "new_event_id",
    "to_attribute_value",
    "to_cloudevents",
]

CloudEvent = cloudevent_pb2.CloudEvent
_AttrValue = cloudevent_pb2.CloudEvent.CloudEventAttributeValue

#: The CloudEvents specification version every event carries.
SPEC_VERSION = "1.0"

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain"
BINARY_CONTENT_TYPE = "application/octet-stream"
PROTOBUF_CONTENT_TYPE = "application/protobuf"

_REQUIRED = frozenset({"id", "source", "specversion", "type"})
_OPTIONAL = frozenset({"subject", "time", "datacontenttype", "dataschema"})
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,64}")
# The CloudEvents SDK's test for JSON media types (application/json, text/json, */*+json).
_JSON_CONTENT_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-\.]+\+)?json(;.*)?$")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class Uri(str):
    """A CloudEvents URI (``ce_uri``): an absolute URI. Plain ``str`` values are ``ce_string``."""

    __slots__ = ()


class UriRef(str):
    """A CloudEvents URI-reference (``ce_uri_ref``): a URI or a relative reference."""

    __slots__ = ()


#: Python values that map to a CloudEvents attribute type (see the module docs).
AttributeValue = Union[bool, int, str, bytes, datetime]
#: What :func:`to_attribute_value` accepts.
AttributeInput = Union[
    bool, int, str, bytes, bytearray, datetime, timestamp_pb2.Timestamp, _AttrValue
]
#: What ``data=`` of :func:`new_event` accepts.
EventData = Union[Mapping[str, Any], list[Any], str, bytes, bytearray, Message, None]


# --- ids ------------------------------------------------------------------------------------

_id_lock = threading.Lock()
_id_last_ms = 0
_id_counter = 0


def new_event_id() -> str:
    """Returns a new UUIDv7 (RFC 9562) in canonical lower-case form.

    The first 48 bits are the Unix time in milliseconds, the next 12 a counter that keeps ids
    of one process strictly increasing within a millisecond (method 1 of RFC 9562 section
    6.2), the rest random. Ids therefore sort by creation time.
    """
    global _id_last_ms, _id_counter
    with _id_lock:
        now_ms = _time.time_ns() // 1_000_000
        if now_ms > _id_last_ms:
            _id_last_ms = now_ms
            # Start low in the counter space so a burst has room before the counter overflows.
            _id_counter = secrets.randbits(10)
        else:
            # Same millisecond, or the clock went back: stay monotonic.
            _id_counter += 1
            if _id_counter > 0xFFF:
                _id_last_ms += 1
                _id_counter = secrets.randbits(10)
        unix_ms, counter = _id_last_ms, _id_counter
    value = (
        (unix_ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | counter << 64
        | 0b10 << 62
        | secrets.randbits(62)
    )
    return str(uuid.UUID(int=value))


# --- attribute values -----------------------------------------------------------------------


def _require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value


def to_timestamp(value: datetime | timestamp_pb2.Timestamp, what: str = "time") -> timestamp_pb2.Timestamp:
    """Returns a protobuf ``Timestamp`` for an aware ``datetime`` (or a copy of a ``Timestamp``)."""
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, timestamp_pb2.Timestamp):
        ts.CopyFrom(value)
    else:
        ts.FromDatetime(_require_aware(value, what))
    return ts


def from_timestamp(value: timestamp_pb2.Timestamp) -> datetime:
    """Returns an aware UTC ``datetime`` (microsecond precision) for a protobuf ``Timestamp``."""
    return value.ToDatetime(tzinfo=timezone.utc)


def to_attribute_value(value: AttributeInput) -> cloudevent_pb2.CloudEvent.CloudEventAttributeValue:
    """Returns the protobuf attribute value of a Python value (see the module docs).

    Raises ``ValueError`` for an int outside 32 bits or a naive datetime and ``TypeError`` for
    any other type.
    """
    if isinstance(value, _AttrValue):
        copy = _AttrValue()
        copy.CopyFrom(value)
        return copy
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return _AttrValue(ce_boolean=value)
    if isinstance(value, int):
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise ValueError(f"CloudEvents Integer is 32 bits, {value} is out of range")
        return _AttrValue(ce_integer=value)
    if isinstance(value, Uri):
        return _AttrValue(ce_uri=str(value))
    if isinstance(value, UriRef):
        return _AttrValue(ce_uri_ref=str(value))
    if isinstance(value, str):
        return _AttrValue(ce_string=value)
    if isinstance(value, (bytes, bytearray)):
        return _AttrValue(ce_bytes=bytes(value))
    if isinstance(value, (datetime, timestamp_pb2.Timestamp)):
        return _AttrValue(ce_timestamp=to_timestamp(value, "a timestamp attribute"))
    raise TypeError(f"no CloudEvents attribute type for {type(value).__name__}: {value!r}")


def from_attribute_value(value: cloudevent_pb2.CloudEvent.CloudEventAttributeValue) -> AttributeValue:
    """Returns the Python value of a protobuf attribute value; ``ValueError`` if none is set."""
    case = value.WhichOneof("attr")
    if case == "ce_boolean":
        return value.ce_boolean
    if case == "ce_integer":
        return value.ce_integer
    if case == "ce_string":
        return value.ce_string
    if case == "ce_bytes":
        return value.ce_bytes
    if case == "ce_uri":
        return Uri(value.ce_uri)
    if case == "ce_uri_ref":
        return UriRef(value.ce_uri_ref)
    if case == "ce_timestamp":
        return from_timestamp(value.ce_timestamp)
    raise ValueError("attribute value has no type set")


def canonical_string(value: cloudevent_pb2.CloudEvent.CloudEventAttributeValue | AttributeInput) -> str:
    """Returns the canonical string of an attribute value, as filters and ``correlate_by`` see it.

    ``true``/``false``; decimal integers; strings and URIs unchanged; bytes as padded standard
    base64; timestamps as RFC 3339 in UTC with a ``Z``, with fractional seconds only when they
    are not zero and without trailing zeros (``2026-11-22T10:00:00Z``,
    ``2026-11-22T10:00:00.25Z``). ``proto/testdata/canonical_attributes.json`` pins these forms
    for every client. Raises ``ValueError`` for a value with no type set or a timestamp outside
    the years 1 to 9999.
    """
    pb = value if isinstance(value, _AttrValue) else to_attribute_value(value)
    case = pb.WhichOneof("attr")
    if case == "ce_boolean":
        return "true" if pb.ce_boolean else "false"
    if case == "ce_integer":
        return str(pb.ce_integer)
    if case == "ce_string":
        return pb.ce_string
    if case == "ce_bytes":
        return base64.b64encode(pb.ce_bytes).decode("ascii")
    if case == "ce_uri":
        return pb.ce_uri
    if case == "ce_uri_ref":
        return pb.ce_uri_ref
    if case == "ce_timestamp":
        return _canonical_time(pb.ce_timestamp)
    raise ValueError("attribute value has no type set")


def _canonical_time(ts: timestamp_pb2.Timestamp) -> str:
    # The JSON mapping writes 0, 3, 6 or 9 fractional digits; the canonical form trims zeros.
    text: str = ts.ToJsonString()
    whole, dot, fraction = text[:-1].partition(".")
    return f"{whole}{dot}{fraction.rstrip('0')}Z"


# --- building -------------------------------------------------------------------------------


def is_json_content_type(content_type: str | None) -> bool:
    """True for JSON media types: ``application/json``, ``text/json``, ``*/*+json``, with parameters."""
    return content_type is not None and _JSON_CONTENT_TYPE.match(content_type) is not None


def _check_extension_name(name: str) -> None:
    if name in _REQUIRED or name in _OPTIONAL or name == "data":
        raise ValueError(
            f"{name!r} is not an extension attribute: use the field or keyword argument of that name"
        )
    if not _EXTENSION_NAME.fullmatch(name):
        raise ValueError(f"extension attribute names are 1 to 64 characters of [a-z0-9], got {name!r}")


def _set_data(event: cloudevent_pb2.CloudEvent, data: EventData, content_type: str | None) -> None:
    if data is None:
        if content_type is not None:
            event.attributes["datacontenttype"].ce_string = content_type
        return
    if isinstance(data, (bytes, bytearray)):
        event.binary_data = bytes(data)
        default = BINARY_CONTENT_TYPE
    elif isinstance(data, str):
        event.text_data = data
        default = TEXT_CONTENT_TYPE
    elif isinstance(data, Message):
        packed = any_pb2.Any()
        if isinstance(data, any_pb2.Any):
            packed.CopyFrom(data)
        else:
            packed.Pack(data)
        event.proto_data.CopyFrom(packed)
        default = PROTOBUF_CONTENT_TYPE
    else:
        # Compact and UTF-8: the bytes a JSON consumer would expect, and stable for round trips.
        event.text_data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        default = JSON_CONTENT_TYPE
    event.attributes["datacontenttype"].ce_string = content_type or default


def new_event(
    source: str,
    type: str,
    *,
    id: str | None = None,
    subject: str | None = None,
    time: datetime | None = None,
    data: EventData = None,
    datacontenttype: str | None = None,
    dataschema: str | None = None,
    extensions: Mapping[str, AttributeInput] | None = None,
) -> cloudevent_pb2.CloudEvent:
    """Returns a CloudEvents 1.0 event.

    ``id`` defaults to a new UUIDv7 (:func:`new_event_id`), time-ordered. ``time`` must be
    timezone-aware; it is not set unless given. ``data``:

    * a mapping or list: JSON text, ``datacontenttype`` ``application/json``;
    * ``str``: text, ``text/plain``;
    * ``bytes``: binary, ``application/octet-stream``;
    * a protobuf message: packed into ``proto_data`` (an ``Any`` as it is), ``application/protobuf``.

    ``datacontenttype`` overrides the default media type. ``dataschema`` is sent as a
    ``ce_uri``. ``extensions`` maps names (1 to 64 of ``[a-z0-9]``) to values typed as in the
    module docs; use :class:`Uri` / :class:`UriRef` for URI types.

    Raises ``ValueError`` for a naive ``time``, an invalid extension name or value, and
    ``TypeError`` for data or extension values of an unsupported type. Everything else is left
    to the server, which answers ``INVALID_ARGUMENT`` naming the field.
    """
    event = cloudevent_pb2.CloudEvent(
        id=id if id is not None else new_event_id(),
        source=source,
        spec_version=SPEC_VERSION,
        type=type,
    )
    if subject is not None:
        event.attributes["subject"].ce_string = subject
    if time is not None:
        event.attributes["time"].ce_timestamp.CopyFrom(to_timestamp(time))
    if dataschema is not None:
        event.attributes["dataschema"].ce_uri = dataschema
    if data is not None and not isinstance(data, (Mapping, list, str, bytes, bytearray, Message)):
        raise TypeError(f"unsupported data type {type_name(data)}: pass a dict, list, str, bytes or protobuf message")
    _set_data(event, data, datacontenttype)
    for name, value in (extensions or {}).items():
        _check_extension_name(name)
        event.attributes[name].CopyFrom(to_attribute_value(value))
    return event


def type_name(value: object) -> str:
    """Returns the name of ``value``'s type, for messages."""
    return type(value).__name__


# --- reading --------------------------------------------------------------------------------


def get_attribute(event: cloudevent_pb2.CloudEvent, name: str) -> AttributeValue | None:
    """Returns attribute ``name`` of ``event`` as a Python value, or ``None`` if it has none.

    Works for the required attributes (``id``, ``source``, ``specversion``, ``type``) too.
    """
    if name == "id":
        return event.id
    if name == "source":
        return event.source
    if name == "specversion":
        return event.spec_version
    if name == "type":
        return event.type
    if name not in event.attributes:
        return None
    return from_attribute_value(event.attributes[name])


def event_attributes(event: cloudevent_pb2.CloudEvent) -> dict[str, AttributeValue]:
    """Returns every context attribute of ``event`` (required, optional and extensions)."""
    attrs: dict[str, AttributeValue] = {
        "id": event.id,
        "source": event.source,
        "specversion": event.spec_version,
        "type": event.type,
    }
    for name in sorted(event.attributes):
        attrs[name] = from_attribute_value(event.attributes[name])
    return attrs


def event_data(event: cloudevent_pb2.CloudEvent) -> Any:
    """Returns the payload: decoded JSON for a JSON ``datacontenttype``, else ``str``, ``bytes``,
    the ``google.protobuf.Any`` of a protobuf payload, or ``None`` without data.

    Raises ``json.JSONDecodeError`` when a payload declared as JSON is not.
    """
    case = event.WhichOneof("data")
    if case == "text_data":
        content_type = get_attribute(event, "datacontenttype")
        if isinstance(content_type, str) and is_json_content_type(content_type):
            return json.loads(event.text_data)
        return event.text_data
    if case == "binary_data":
        return event.binary_data
    if case == "proto_data":
        return event.proto_data
    return None


# --- CloudEvents SDK ------------------------------------------------------------------------


class SdkEventLike(Protocol):
    """What :func:`from_cloudevents` reads: the SDK v2 ``BaseCloudEvent`` protocol, and the
    ``cloudevents.v1`` compatibility events, both have these two methods."""

    def get_attributes(self) -> Mapping[str, Any]: ...

    def get_data(self) -> Any: ...


_MISSING_SDK = (
    "the CloudEvents SDK is not installed: pip install 'eventbus-client[cloudevents]' "
    "(the cloudevents package, version 2 or later)"
)


def to_cloudevents(event: cloudevent_pb2.CloudEvent, *, parse_json: bool = True) -> SdkCloudEvent:
    """Returns ``event`` as a CloudEvents SDK event (``cloudevents.core.v1.event.CloudEvent``).

    Attribute values become the Python types of the module docs (``ce_uri`` a :class:`Uri`,
    which :func:`from_cloudevents` maps back, so the round trip keeps every type). A text
    payload with a JSON ``datacontenttype`` that holds a JSON object becomes a ``dict`` when
    ``parse_json`` (the SDK's JSON format then writes it as JSON); other text stays ``str``,
    binary data ``bytes``.

    Hazard: the SDK sets ``time`` to now when an event has none, so an event without ``time``
    comes back from a round trip with one.

    Raises ``ImportError`` without the SDK, ``ValueError`` for a protobuf payload (the SDK has
    no such data type) and the SDK's ``CloudEventValidationError`` for events it rejects.
    """
    try:
        from cloudevents.core.v1.event import CloudEvent as _SdkCloudEvent
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_MISSING_SDK) from exc

    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": event.spec_version or SPEC_VERSION,
    }
    for name, value in event.attributes.items():
        attributes[name] = from_attribute_value(value)
    data: dict[str, Any] | str | bytes | None
    case = event.WhichOneof("data")
    if case == "text_data":
        data = event.text_data
        if parse_json and is_json_content_type(_str_or_none(attributes.get("datacontenttype"))):
            try:
                decoded = json.loads(event.text_data)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                data = decoded
    elif case == "binary_data":
        data = event.binary_data
    elif case == "proto_data":
        raise ValueError(
            "the CloudEvents SDK has no protobuf data type: unpack proto_data yourself "
            f"(type {event.proto_data.type_url!r})"
        )
    else:
        data = None
    return _SdkCloudEvent(attributes=attributes, data=data)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _parse_time(value: object) -> datetime | timestamp_pb2.Timestamp:
    if isinstance(value, (datetime, timestamp_pb2.Timestamp)):
        return value
    if isinstance(value, str):
        ts = timestamp_pb2.Timestamp()
        try:
            ts.FromJsonString(value)  # RFC 3339, keeping nanoseconds
            return ts
        except ValueError:
            pass
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        return datetime.fromisoformat(text)  # other ISO 8601 forms; ValueError if none
    raise TypeError(f"time must be a datetime or an RFC 3339 string, got {type_name(value)}")


def from_cloudevents(event: SdkEventLike) -> cloudevent_pb2.CloudEvent:
    """Returns a CloudEvents SDK event as an ``eventbus.v1.CloudEvent``.

    Takes SDK v2 events (``cloudevents.core``) and ``cloudevents.v1`` compatibility events.
    ``time`` may be a ``datetime`` or an RFC 3339 string; ``subject`` and ``datacontenttype``
    become ``ce_string``, ``dataschema`` ``ce_uri``; extensions map by Python type (module
    docs), so a plain ``str`` is a ``ce_string`` unless it is a :class:`Uri` or :class:`UriRef`.
    ``dict`` (or list) data becomes JSON text, with ``datacontenttype`` ``application/json``
    unless the event declares one; ``str`` text; ``bytes`` binary.

    Raises ``ValueError`` for a specversion other than 1.0 or a missing required attribute.
    """
    attributes = dict(event.get_attributes())
    specversion = attributes.pop("specversion", SPEC_VERSION)
    if specversion != SPEC_VERSION:
        raise ValueError(f"eventbus carries CloudEvents {SPEC_VERSION} only, got specversion {specversion!r}")
    missing = [name for name in ("id", "source", "type") if not attributes.get(name)]
    if missing:
        raise ValueError(f"event lacks required attributes: {', '.join(missing)}")
    pb = cloudevent_pb2.CloudEvent(
        id=str(attributes.pop("id")),
        source=str(attributes.pop("source")),
        spec_version=SPEC_VERSION,
        type=str(attributes.pop("type")),
    )
    for name, value in attributes.items():
        if value is None:
            continue
        if name == "time":
            pb.attributes[name].ce_timestamp.CopyFrom(to_timestamp(_parse_time(value)))
        elif name in ("subject", "datacontenttype"):
            pb.attributes[name].ce_string = str(value)
        elif name == "dataschema":
            pb.attributes[name].ce_uri = str(value)
        else:
            pb.attributes[name].CopyFrom(to_attribute_value(value))
    data = event.get_data()
    if data is None:
        return pb
    if isinstance(data, (bytes, bytearray)):
        pb.binary_data = bytes(data)
    elif isinstance(data, str):
        pb.text_data = data
    else:
        pb.text_data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if "datacontenttype" not in pb.attributes:
            pb.attributes["datacontenttype"].ce_string = JSON_CONTENT_TYPE
    return pb
