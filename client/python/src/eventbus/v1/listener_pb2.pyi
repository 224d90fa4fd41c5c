import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListenerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LISTENER_KIND_UNSPECIFIED: _ClassVar[ListenerKind]
    LISTENER_KIND_START: _ClassVar[ListenerKind]
    LISTENER_KIND_WAIT: _ClassVar[ListenerKind]

class ListenerCondition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LISTENER_CONDITION_UNSPECIFIED: _ClassVar[ListenerCondition]
    LISTENER_CONDITION_ONE: _ClassVar[ListenerCondition]
    LISTENER_CONDITION_ANY: _ClassVar[ListenerCondition]
    LISTENER_CONDITION_ALL: _ClassVar[ListenerCondition]

class ConsumptionPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSUMPTION_POLICY_UNSPECIFIED: _ClassVar[ConsumptionPolicy]
    CONSUMPTION_POLICY_FIRST: _ClassVar[ConsumptionPolicy]
    CONSUMPTION_POLICY_LATEST: _ClassVar[ConsumptionPolicy]

class ListenerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LISTENER_STATUS_UNSPECIFIED: _ClassVar[ListenerStatus]
    LISTENER_STATUS_ACTIVE: _ClassVar[ListenerStatus]
    LISTENER_STATUS_FIRED: _ClassVar[ListenerStatus]
    LISTENER_STATUS_TIMED_OUT: _ClassVar[ListenerStatus]
LISTENER_KIND_UNSPECIFIED: ListenerKind
LISTENER_KIND_START: ListenerKind
LISTENER_KIND_WAIT: ListenerKind
LISTENER_CONDITION_UNSPECIFIED: ListenerCondition
LISTENER_CONDITION_ONE: ListenerCondition
LISTENER_CONDITION_ANY: ListenerCondition
LISTENER_CONDITION_ALL: ListenerCondition
CONSUMPTION_POLICY_UNSPECIFIED: ConsumptionPolicy
CONSUMPTION_POLICY_FIRST: ConsumptionPolicy
CONSUMPTION_POLICY_LATEST: ConsumptionPolicy
LISTENER_STATUS_UNSPECIFIED: ListenerStatus
LISTENER_STATUS_ACTIVE: ListenerStatus
LISTENER_STATUS_FIRED: ListenerStatus
LISTENER_STATUS_TIMED_OUT: ListenerStatus

class EventFilter(_message.Message):
    __slots__ = ("type", "attributes", "condition")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    type: str
    attributes: _containers.ScalarMap[str, str]
    condition: str
    def __init__(self, type: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., condition: _Optional[str] = ...) -> None: ...

class ListenerSpec(_message.Message):
    __slots__ = ("kind", "workflow_id", "instance_id", "condition", "types", "filters", "lifespan", "correlate_by", "policy", "deadline")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LIFESPAN_FIELD_NUMBER: _ClassVar[int]
    CORRELATE_BY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    kind: ListenerKind
    workflow_id: str
    instance_id: str
    condition: ListenerCondition
    types: _containers.RepeatedScalarFieldContainer[str]
    filters: _containers.RepeatedCompositeFieldContainer[EventFilter]
    lifespan: _duration_pb2.Duration
    correlate_by: _containers.RepeatedScalarFieldContainer[str]
    policy: ConsumptionPolicy
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[_Union[ListenerKind, str]] = ..., workflow_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., condition: _Optional[_Union[ListenerCondition, str]] = ..., types: _Optional[_Iterable[str]] = ..., filters: _Optional[_Iterable[_Union[EventFilter, _Mapping]]] = ..., lifespan: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., correlate_by: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[ConsumptionPolicy, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("id", "namespace", "spec", "status", "fire_id", "create_time", "finish_time", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FIRE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    namespace: str
    spec: ListenerSpec
    status: ListenerStatus
    fire_id: str
    create_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., spec: _Optional[_Union[ListenerSpec, _Mapping]] = ..., status: _Optional[_Union[ListenerStatus, str]] = ..., fire_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PartialState(_message.Message):
    __slots__ = ("correlation", "events", "missing_types")
    class CorrelationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_TYPES_FIELD_NUMBER: _ClassVar[int]
    correlation: _containers.ScalarMap[str, str]
    events: _containers.RepeatedCompositeFieldContainer[CollectedEvent]
    missing_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, correlation: _Optional[_Mapping[str, str]] = ..., events: _Optional[_Iterable[_Union[CollectedEvent, _Mapping]]] = ..., missing_types: _Optional[_Iterable[str]] = ...) -> None: ...

class CollectedEvent(_message.Message):
    __slots__ = ("type", "source", "id", "sequence", "receive_time", "expire_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    source: str
    id: str
    sequence: int
    receive_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., source: _Optional[str] = ..., id: _Optional[str] = ..., sequence: _Optional[int] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
