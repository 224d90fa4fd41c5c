"""CloudEvent building, attribute mapping, canonical strings, ids, and the CloudEvents SDK."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import from_binary_event, to_binary_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2

from eventbus import (
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
from eventbus.events import AttributeInput, from_attribute_value, to_attribute_value
from eventbus.v1 import cloudevent_pb2

T0 = datetime(2026, 11, 22, 10, 30, 15, 123456, tzinfo=timezone.utc)
AttrValue = cloudevent_pb2.CloudEvent.CloudEventAttributeValue


def attr_case(event: cloudevent_pb2.CloudEvent, name: str) -> str | None:
    case: str | None = event.attributes[name].WhichOneof("attr")
    return case


# --- new_event ------------------------------------------------------------------------------


def test_new_event_sets_required_attributes_and_a_uuid7_id() -> None:
    event = new_event("/shop", "order.created")
    assert (event.source, event.type, event.spec_version) == ("/shop", "order.created", "1.0")
    parsed = uuid.UUID(event.id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == event.id
    assert dict(event.attributes) == {}
    assert event.WhichOneof("data") is None


def test_new_event_keeps_an_explicit_id() -> None:
    assert new_event("/s", "t", id="order-1").id == "order-1"


@pytest.mark.parametrize(
    ("data", "content_type", "case", "payload"),
    [
        ({"orderid": "1", "total": 12.5}, "application/json", "text_data", '{"orderid":"1","total":12.5}'),
        ([1, "two"], "application/json", "text_data", '[1,"two"]'),
        ({"name": "Zoë"}, "application/json", "text_data", '{"name":"Zoë"}'),
        ("hello", "text/plain", "text_data", "hello"),
        (b"\x00\xff", "application/octet-stream", "binary_data", b"\x00\xff"),
        (bytearray(b"ab"), "application/octet-stream", "binary_data", b"ab"),
    ],
)
def test_new_event_data_sets_payload_and_content_type(data: Any, content_type: str, case: str, payload: Any) -> None:
    event = new_event("/s", "t", data=data)
    assert event.WhichOneof("data") == case
    assert getattr(event, case) == payload
    assert attr_case(event, "datacontenttype") == "ce_string"
    assert event.attributes["datacontenttype"].ce_string == content_type


def test_new_event_explicit_content_type_wins() -> None:
    event = new_event("/s", "t", data={"a": 1}, datacontenttype="application/cloudevents+json")
    assert event.attributes["datacontenttype"].ce_string == "application/cloudevents+json"
    assert event_data(event) == {"a": 1}


def test_new_event_protobuf_data_is_packed_into_any() -> None:
    payload = duration_pb2.Duration(seconds=5)
    event = new_event("/s", "t", data=payload)
    assert event.WhichOneof("data") == "proto_data"
    assert event.proto_data.type_url == "type.googleapis.com/google.protobuf.Duration"
    assert event.attributes["datacontenttype"].ce_string == "application/protobuf"
    unpacked = duration_pb2.Duration()
    assert event.proto_data.Unpack(unpacked)
    assert unpacked == payload
    packed = any_pb2.Any()
    packed.Pack(payload)
    assert new_event("/s", "t", data=packed).proto_data == packed  # an Any is sent as it is


def test_new_event_optional_attributes_use_their_cloudevents_types() -> None:
    event = new_event("/s", "t", subject="o-1", time=T0, dataschema="https://schemas.example/order")
    assert attr_case(event, "subject") == "ce_string"
    assert attr_case(event, "time") == "ce_timestamp"
    assert attr_case(event, "dataschema") == "ce_uri"
    assert event.attributes["time"].ce_timestamp == timestamp_pb2.Timestamp(seconds=1795343415, nanos=123456000)
    assert get_attribute(event, "time") == T0
    assert get_attribute(event, "subject") == "o-1"
    assert get_attribute(event, "dataschema") == "https://schemas.example/order"
    assert isinstance(get_attribute(event, "dataschema"), Uri)


def test_new_event_time_in_another_zone_is_converted_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    event = new_event("/s", "t", time=datetime(2026, 1, 1, 1, 0, tzinfo=cet))
    assert event.attributes["time"].ce_timestamp.ToJsonString() == "2026-01-01T00:00:00Z"


def test_new_event_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        new_event("/s", "t", time=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "case", "back"),
    [
        (True, "ce_boolean", True),
        (False, "ce_boolean", False),
        (7, "ce_integer", 7),
        (-(2**31), "ce_integer", -(2**31)),
        (2**31 - 1, "ce_integer", 2**31 - 1),
        ("eu-west", "ce_string", "eu-west"),
        (b"\x01\x02", "ce_bytes", b"\x01\x02"),
        (Uri("https://example.com/x"), "ce_uri", Uri("https://example.com/x")),
        (UriRef("../x"), "ce_uri_ref", UriRef("../x")),
        (T0, "ce_timestamp", T0),
        (timestamp_pb2.Timestamp(seconds=1), "ce_timestamp", datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)),
    ],
)
def test_extension_values_map_to_cloudevents_types(value: Any, case: str, back: Any) -> None:
    event = new_event("/s", "t", extensions={"ext": value})
    assert attr_case(event, "ext") == case
    got = get_attribute(event, "ext")
    assert got == back
    assert type(got) is type(back)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_extension_integer_out_of_32_bits_is_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="32 bits"):
        new_event("/s", "t", extensions={"n": value})


def test_extension_of_unsupported_type_is_rejected() -> None:
    with pytest.raises(TypeError, match="float"):
        to_attribute_value(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "Region", "with-dash", "a" * 65, "subject", "time", "id", "data", "type"])
def test_invalid_or_reserved_extension_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        new_event("/s", "t", extensions={name: "x"})


def test_unsupported_data_type_is_rejected() -> None:
    with pytest.raises(TypeError, match="unsupported data type"):
        new_event("/s", "t", data=3.5)  # type: ignore[arg-type]


def test_attribute_value_with_no_case_is_rejected() -> None:
    with pytest.raises(ValueError):
        from_attribute_value(AttrValue())


def test_event_attributes_lists_required_optional_and_extensions() -> None:
    event = new_event("/s", "t", id="1", subject="x", extensions={"region": "eu", "n": 1})
    assert event_attributes(event) == {
        "id": "1",
        "source": "/s",
        "specversion": "1.0",
        "type": "t",
        "n": 1,
        "region": "eu",
        "subject": "x",
    }
    assert get_attribute(event, "missing") is None
    assert get_attribute(event, "specversion") == "1.0"


def test_event_data_decodes_by_content_type() -> None:
    assert event_data(new_event("/s", "t", data={"a": [1]})) == {"a": [1]}
    assert event_data(new_event("/s", "t", data='{"a": 1}')) == '{"a": 1}'  # text/plain stays text
    assert event_data(new_event("/s", "t", data='{"a": 1}', datacontenttype="text/json")) == {"a": 1}
    assert event_data(new_event("/s", "t", data=b"\x00")) == b"\x00"
    assert event_data(new_event("/s", "t")) is None


# --- canonical strings ----------------------------------------------------------------------


# The shared fixture of every implementation (see its "comment"): from the repository root.
CANONICAL_FIXTURE = Path(__file__).resolve().parents[3] / "proto" / "testdata" / "canonical_attributes.json"
_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)$")


def canonical_cases() -> list[Any]:
    cases = json.loads(CANONICAL_FIXTURE.read_text(encoding="utf-8"))["cases"]
    return [pytest.param(case, id=case["name"]) for case in cases]


def fixture_value(case: dict[str, Any]) -> AttrValue:
    """Returns the protobuf attribute value of a fixture case, checking a timestamp's input text."""
    kind, value = case["type"], case["value"]
    if kind == "bytes":
        return AttrValue(ce_bytes=bytes(value))
    if kind == "timestamp":
        ts = timestamp_pb2.Timestamp()
        ts.FromJsonString(value)
        assert (ts.seconds, ts.nanos) == (case["seconds"], case["nanos"]), "fixture: value and seconds/nanos differ"
        return AttrValue(ce_timestamp=ts)
    return AttrValue(**{f"ce_{kind}": value})


def fixture_input(case: dict[str, Any], pb: AttrValue) -> AttributeInput | None:
    """Returns the plain Python value of a fixture case, or None when Python has none (nanos)."""
    kind = case["type"]
    if kind == "timestamp":
        if case["nanos"] % 1000:
            return None
        match = _OFFSET.search(case["value"])
        offset = timedelta(0)
        if match:
            sign = -1 if match[1] == "-" else 1
            offset = sign * timedelta(hours=int(match[2]), minutes=int(match[3]))
        return pb.ce_timestamp.ToDatetime(tzinfo=timezone(offset))
    value = from_attribute_value(pb)
    assert not isinstance(value, datetime)
    return value


@pytest.mark.parametrize("case", canonical_cases())
def test_canonical_string_of_shared_fixture(case: dict[str, Any]) -> None:
    pb = fixture_value(case)
    assert canonical_string(pb) == case["canonical"]
    plain = fixture_input(case, pb)
    if plain is not None:
        assert canonical_string(plain) == case["canonical"], f"from {plain!r}"


def test_shared_fixture_covers_every_type_and_fraction_length() -> None:
    cases = json.loads(CANONICAL_FIXTURE.read_text(encoding="utf-8"))["cases"]
    kinds = {case["type"] for case in cases}
    oneof = AttrValue.DESCRIPTOR.oneofs_by_name["attr"]
    assert kinds == {field.name.removeprefix("ce_") for field in oneof.fields}
    digits = {len(_fraction(case["canonical"])) for case in cases if case["type"] == "timestamp"}
    assert digits == set(range(10))


def _fraction(text: str) -> str:
    return text[20:-1] if "." in text else ""


def test_canonical_string_rejects_an_empty_value() -> None:
    with pytest.raises(ValueError, match="no type set"):
        canonical_string(AttrValue())


# --- ids ------------------------------------------------------------------------------------


def test_new_event_ids_are_uuid7_strictly_increasing_and_time_ordered() -> None:
    before_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    ids = [new_event_id() for _ in range(20_000)]  # > 4096 per ms exercises the counter overflow
    after_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for value in (ids[0], ids[-1]):
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
    first_ms = uuid.UUID(ids[0]).int >> 80
    assert before_ms - 1 <= first_ms <= after_ms + 1


# --- CloudEvents SDK ------------------------------------------------------------------------


def full_event(**overrides: Any) -> cloudevent_pb2.CloudEvent:
    arguments: dict[str, Any] = {
        "id": "evt-1",
        "subject": "order-1",
        "time": T0,
        "dataschema": "https://schemas.example/order",
        "data": {"orderid": "1", "items": [1, 2]},
        "extensions": {
            "orderid": "1",
            "priority": 3,
            "express": True,
            "blob": b"\x00\x01",
            "callback": Uri("https://example.com/cb"),
            "origin": UriRef("/warehouse/4"),
            "due": T0 + timedelta(days=1),
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
    }
    arguments.update(overrides)
    return new_event("/shop", "order.created", **arguments)


def test_to_cloudevents_maps_attributes_and_json_data() -> None:
    sdk = to_cloudevents(full_event())
    assert isinstance(sdk, SdkCloudEvent)
    assert sdk.get_id() == "evt-1"
    assert sdk.get_source() == "/shop"
    assert sdk.get_type() == "order.created"
    assert sdk.get_specversion() == "1.0"
    assert sdk.get_subject() == "order-1"
    assert sdk.get_time() == T0
    assert sdk.get_dataschema() == "https://schemas.example/order"
    assert sdk.get_datacontenttype() == "application/json"
    assert sdk.get_extension("priority") == 3
    assert sdk.get_extension("express") is True
    assert sdk.get_extension("blob") == b"\x00\x01"
    assert sdk.get_extension("due") == T0 + timedelta(days=1)
    assert sdk.get_data() == {"orderid": "1", "items": [1, 2]}


@pytest.mark.parametrize(
    "data",
    [{"orderid": "1", "items": [1, 2]}, "plain text", b"\x00\x01\xfe", None],
    ids=["json", "text", "binary", "none"],
)
def test_round_trip_through_the_sdk_keeps_the_event(data: Any) -> None:
    original = full_event(data=data)
    assert from_cloudevents(to_cloudevents(original)) == original


def test_round_trip_without_time_gains_the_sdk_default_time() -> None:
    original = new_event("/s", "t", id="1", data="x")
    back = from_cloudevents(to_cloudevents(original))
    assert "time" in back.attributes  # the SDK sets time to now
    del back.attributes["time"]
    assert back == original


def test_round_trip_from_the_sdk_keeps_attributes_and_data() -> None:
    sdk = SdkCloudEvent(
        attributes={
            "id": "sdk-1",
            "source": "urn:example:shop",
            "type": "payment.received",
            "time": T0,
            "subject": "o-9",
            "orderid": "9",
            "amount": 1200,
        },
        data={"paid": True},
    )
    pb = from_cloudevents(sdk)
    assert pb.attributes["datacontenttype"].ce_string == "application/json"
    assert pb.attributes["amount"].ce_integer == 1200
    assert json.loads(pb.text_data) == {"paid": True}
    back = to_cloudevents(pb)
    expected = dict(sdk.get_attributes(), datacontenttype="application/json")
    assert back.get_attributes() == expected
    assert back.get_data() == {"paid": True}


def test_sdk_http_binding_round_trip() -> None:
    original = full_event()
    message = to_binary_event(to_cloudevents(original), JSONFormat())
    parsed = from_binary_event(message)
    back = from_cloudevents(parsed)
    assert back.id == original.id
    assert back.attributes["time"] == original.attributes["time"]
    assert event_data(back) == event_data(original)
    assert get_attribute(back, "orderid") == "1"


def test_from_cloudevents_accepts_string_times_and_rejects_other_spec_versions() -> None:
    class V1Style:
        def __init__(self, attributes: dict[str, Any], data: Any) -> None:
            self.attributes = attributes
            self.data = data

        def get_attributes(self) -> dict[str, Any]:
            return self.attributes

        def get_data(self) -> Any:
            return self.data

    nanos = "2026-11-22T10:30:15.123456789Z"
    event = from_cloudevents(V1Style({"id": "1", "source": "/s", "type": "t", "specversion": "1.0", "time": nanos}, None))
    assert event.attributes["time"].ce_timestamp == timestamp_pb2.Timestamp(seconds=1795343415, nanos=123456789)
    event = from_cloudevents(V1Style({"id": "1", "source": "/s", "type": "t", "time": "2026-11-22T10:30:15Z"}, None))
    assert event.attributes["time"].ce_timestamp.ToJsonString() == "2026-11-22T10:30:15Z"
    with pytest.raises(ValueError, match="specversion"):
        from_cloudevents(V1Style({"id": "1", "source": "/s", "type": "t", "specversion": "0.3"}, None))
    with pytest.raises(ValueError, match="id"):
        from_cloudevents(V1Style({"source": "/s", "type": "t"}, None))


def test_to_cloudevents_rejects_protobuf_data() -> None:
    with pytest.raises(ValueError, match="protobuf"):
        to_cloudevents(new_event("/s", "t", data=duration_pb2.Duration(seconds=1)))
