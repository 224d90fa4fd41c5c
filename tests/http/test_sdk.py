"""The CloudEvents Python SDK (``cloudevents`` 2: ``cloudevents.core.bindings.http.to_binary`` and
``to_structured``, the successors of 1.x's ``cloudevents.http`` functions) against the eventbus
HTTP ingress; each test reads its events back over gRPC with the eventbus client.

The server is the caller's (tests/lib/http_ingress.sh starts it): EVENTBUS_HTTP_ADDR and
EVENTBUS_ADDR (host:port) name its HTTP and gRPC listeners. Without them the tests fail; they are
never skipped.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from eventbus import Client


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is not set: tests/lib/http_ingress.sh starts a server and sets it")
    return value


@pytest.fixture
def namespace() -> str:
    return f"py-sdk-{uuid.uuid4().hex[:8]}"


def post(namespace: str, message: HTTPMessage) -> tuple[int, dict[str, Any]]:
    url = f"http://{env('EVENTBUS_HTTP_ADDR')}/v1/namespaces/{namespace}/events"
    request = urllib.request.Request(url, data=message.body, headers=message.headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def order(id: str, data: Any, **extra: Any) -> CloudEvent:
    attributes = {
        "id": id,
        "source": "/python/sdk",
        "type": "order.created",
        "specversion": "1.0",
        "subject": "eu/1",
        "tenant": "acme",
        "time": datetime(2026, 12, 6, 10, tzinfo=timezone.utc),
    }
    return CloudEvent(attributes={**attributes, **extra}, data=data)


def test_binary_and_structured_mode_publish_and_read_back(namespace: str) -> None:
    binary = to_binary(order("py-1", {"total": 42}, datacontenttype="application/json"), JSONFormat())
    assert "ce-specversion" in binary.headers
    assert post(namespace, binary) == (200, {"events": [{"sequence": 1, "duplicate": False}]})
    structured = to_structured(order("py-2", "hello", datacontenttype="text/plain"), JSONFormat())
    assert structured.headers["content-type"].startswith("application/cloudevents+json")
    assert post(namespace, structured) == (200, {"events": [{"sequence": 2, "duplicate": False}]})
    assert post(namespace, binary) == (200, {"events": [{"sequence": 1, "duplicate": True}]})

    with Client(env("EVENTBUS_ADDR"), timeout=10) as client:
        stored = list(client.list_events(namespace))
    assert [(s.sequence, s.event.id) for s in stored] == [(1, "py-1"), (2, "py-2")]
    first, second = stored[0].event, stored[1].event
    assert json.loads(first.text_data) == {"total": 42}
    assert first.attributes["datacontenttype"].ce_string == "application/json"
    assert second.text_data == "hello"
    for event in (first, second):
        assert event.attributes["time"].ce_timestamp.ToJsonString() == "2026-12-06T10:00:00Z"
        assert (event.source, event.type, event.spec_version) == ("/python/sdk", "order.created", "1.0")
        assert event.attributes["subject"].ce_string == "eu/1"
        assert event.attributes["tenant"].ce_string == "acme"


def test_invalid_events_name_the_field_as_grpc_does(namespace: str) -> None:
    status, answer = post(namespace, to_structured(order("py-bad", None, source="not a uri"), JSONFormat()))
    assert status == 400
    assert answer["error"]["code"] == "INVALID_ARGUMENT"
    assert answer["error"]["field_violations"] == [
        {"field": "events[0].source", "description": "must be a URI reference (RFC 3986)"}
    ]
    with Client(env("EVENTBUS_ADDR"), timeout=10) as client:
        assert list(client.list_events(namespace)) == []
