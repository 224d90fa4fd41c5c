import datetime

from eventbus.v1 import cloudevent_pb2 as _cloudevent_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotificationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_KIND_UNSPECIFIED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_START: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_WAKE: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_TIMEOUT: _ClassVar[NotificationKind]
NOTIFICATION_KIND_UNSPECIFIED: NotificationKind
NOTIFICATION_KIND_START: NotificationKind
NOTIFICATION_KIND_WAKE: NotificationKind
NOTIFICATION_KIND_TIMEOUT: NotificationKind

class Notification(_message.Message):
    __slots__ = ("fire_id", "sequence", "kind", "listener_id", "workflow_id", "instance_id", "correlation", "events", "event_sequences", "attempt", "create_time", "traceparent", "tracestate", "consumer_group")
    class CorrelationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FIRE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    fire_id: str
    sequence: int
    kind: NotificationKind
    listener_id: str
    workflow_id: str
    instance_id: str
    correlation: _containers.ScalarMap[str, str]
    events: _containers.RepeatedCompositeFieldContainer[_cloudevent_pb2.CloudEvent]
    event_sequences: _containers.RepeatedScalarFieldContainer[int]
    attempt: int
    create_time: _timestamp_pb2.Timestamp
    traceparent: str
    tracestate: str
    consumer_group: str
    def __init__(self, fire_id: _Optional[str] = ..., sequence: _Optional[int] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., listener_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., correlation: _Optional[_Mapping[str, str]] = ..., events: _Optional[_Iterable[_Union[_cloudevent_pb2.CloudEvent, _Mapping]]] = ..., event_sequences: _Optional[_Iterable[int]] = ..., attempt: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ..., consumer_group: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("notification", "last_error", "dead_time")
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DEAD_TIME_FIELD_NUMBER: _ClassVar[int]
    notification: Notification
    last_error: str
    dead_time: _timestamp_pb2.Timestamp
    def __init__(self, notification: _Optional[_Union[Notification, _Mapping]] = ..., last_error: _Optional[str] = ..., dead_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
