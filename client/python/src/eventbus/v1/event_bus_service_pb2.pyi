import datetime

from eventbus.v1 import admin_pb2 as _admin_pb2
from eventbus.v1 import cloudevent_pb2 as _cloudevent_pb2
from eventbus.v1 import listener_pb2 as _listener_pb2
from eventbus.v1 import notification_pb2 as _notification_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START_POSITION_UNSPECIFIED: _ClassVar[StartPosition]
    START_POSITION_EARLIEST: _ClassVar[StartPosition]
    START_POSITION_LATEST: _ClassVar[StartPosition]
    START_POSITION_SEQUENCE: _ClassVar[StartPosition]

class ReplayMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLAY_MODE_UNSPECIFIED: _ClassVar[ReplayMode]
    REPLAY_MODE_DRY_RUN: _ClassVar[ReplayMode]
    REPLAY_MODE_FIRE: _ClassVar[ReplayMode]
START_POSITION_UNSPECIFIED: StartPosition
START_POSITION_EARLIEST: StartPosition
START_POSITION_LATEST: StartPosition
START_POSITION_SEQUENCE: StartPosition
REPLAY_MODE_UNSPECIFIED: ReplayMode
REPLAY_MODE_DRY_RUN: ReplayMode
REPLAY_MODE_FIRE: ReplayMode

class PublishRequest(_message.Message):
    __slots__ = ("namespace", "events")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    events: _containers.RepeatedCompositeFieldContainer[_cloudevent_pb2.CloudEvent]
    def __init__(self, namespace: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_cloudevent_pb2.CloudEvent, _Mapping]]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PublishResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PublishResult, _Mapping]]] = ...) -> None: ...

class PublishStreamRequest(_message.Message):
    __slots__ = ("id", "publish")
    ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    id: int
    publish: PublishRequest
    def __init__(self, id: _Optional[int] = ..., publish: _Optional[_Union[PublishRequest, _Mapping]] = ...) -> None: ...

class PublishStreamResponse(_message.Message):
    __slots__ = ("id", "published", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    published: PublishResponse
    error: PublishError
    def __init__(self, id: _Optional[int] = ..., published: _Optional[_Union[PublishResponse, _Mapping]] = ..., error: _Optional[_Union[PublishError, _Mapping]] = ...) -> None: ...

class PublishError(_message.Message):
    __slots__ = ("code", "message", "field_violations")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class PublishResult(_message.Message):
    __slots__ = ("sequence", "duplicate")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    duplicate: bool
    def __init__(self, sequence: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class RegisterListenerRequest(_message.Message):
    __slots__ = ("namespace", "listener", "request_id", "look_back")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOOK_BACK_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    listener: _listener_pb2.ListenerSpec
    request_id: str
    look_back: EventPosition
    def __init__(self, namespace: _Optional[str] = ..., listener: _Optional[_Union[_listener_pb2.ListenerSpec, _Mapping]] = ..., request_id: _Optional[str] = ..., look_back: _Optional[_Union[EventPosition, _Mapping]] = ...) -> None: ...

class RegisterListenerResponse(_message.Message):
    __slots__ = ("listener", "created")
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    listener: _listener_pb2.Listener
    created: bool
    def __init__(self, listener: _Optional[_Union[_listener_pb2.Listener, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetListenerRequest(_message.Message):
    __slots__ = ("namespace", "id", "include_partial_state")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PARTIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    include_partial_state: bool
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., include_partial_state: _Optional[bool] = ...) -> None: ...

class GetListenerResponse(_message.Message):
    __slots__ = ("listener", "partial_states", "partial_states_truncated")
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_STATES_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_STATES_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    listener: _listener_pb2.Listener
    partial_states: _containers.RepeatedCompositeFieldContainer[_listener_pb2.PartialState]
    partial_states_truncated: bool
    def __init__(self, listener: _Optional[_Union[_listener_pb2.Listener, _Mapping]] = ..., partial_states: _Optional[_Iterable[_Union[_listener_pb2.PartialState, _Mapping]]] = ..., partial_states_truncated: _Optional[bool] = ...) -> None: ...

class ListListenersRequest(_message.Message):
    __slots__ = ("namespace", "kind", "workflow_id", "instance_id", "include_finished", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FINISHED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    kind: _listener_pb2.ListenerKind
    workflow_id: str
    instance_id: str
    include_finished: bool
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., kind: _Optional[_Union[_listener_pb2.ListenerKind, str]] = ..., workflow_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., include_finished: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListListenersResponse(_message.Message):
    __slots__ = ("listeners", "next_page_token")
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    listeners: _containers.RepeatedCompositeFieldContainer[_listener_pb2.Listener]
    next_page_token: str
    def __init__(self, listeners: _Optional[_Iterable[_Union[_listener_pb2.Listener, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteListenerRequest(_message.Message):
    __slots__ = ("namespace", "id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteListenerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteListenersRequest(_message.Message):
    __slots__ = ("namespace", "workflow_id", "instance_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    workflow_id: str
    instance_id: str
    def __init__(self, namespace: _Optional[str] = ..., workflow_id: _Optional[str] = ..., instance_id: _Optional[str] = ...) -> None: ...

class DeleteListenersResponse(_message.Message):
    __slots__ = ("deleted_count",)
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "kinds", "workflow_ids", "max_in_flight", "lease_duration", "start", "start_sequence", "max_attempts")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    START_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    kinds: _containers.RepeatedScalarFieldContainer[_notification_pb2.NotificationKind]
    workflow_ids: _containers.RepeatedScalarFieldContainer[str]
    max_in_flight: int
    lease_duration: _duration_pb2.Duration
    start: StartPosition
    start_sequence: int
    max_attempts: int
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_notification_pb2.NotificationKind, str]]] = ..., workflow_ids: _Optional[_Iterable[str]] = ..., max_in_flight: _Optional[int] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start: _Optional[_Union[StartPosition, str]] = ..., start_sequence: _Optional[int] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("notification", "keepalive")
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    notification: _notification_pb2.Notification
    keepalive: Keepalive
    def __init__(self, notification: _Optional[_Union[_notification_pb2.Notification, _Mapping]] = ..., keepalive: _Optional[_Union[Keepalive, _Mapping]] = ...) -> None: ...

class Keepalive(_message.Message):
    __slots__ = ("server_time",)
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    server_time: _timestamp_pb2.Timestamp
    def __init__(self, server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "sequences")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ("acked_count",)
    ACKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    acked_count: int
    def __init__(self, acked_count: _Optional[int] = ...) -> None: ...

class NackRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "sequence", "retry_after", "reason")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    sequence: int
    retry_after: _duration_pb2.Duration
    reason: str
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., sequence: _Optional[int] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class NackResponse(_message.Message):
    __slots__ = ("dead_lettered",)
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    dead_lettered: bool
    def __init__(self, dead_lettered: _Optional[bool] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[_notification_pb2.DeadLetter]
    next_page_token: str
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[_notification_pb2.DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedriveDeadLettersRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "sequences")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class RedriveDeadLettersResponse(_message.Message):
    __slots__ = ("redriven_count",)
    REDRIVEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    redriven_count: int
    def __init__(self, redriven_count: _Optional[int] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("namespace", "sequence", "source_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    sequence: int
    source_id: _cloudevent_pb2.EventKey
    def __init__(self, namespace: _Optional[str] = ..., sequence: _Optional[int] = ..., source_id: _Optional[_Union[_cloudevent_pb2.EventKey, _Mapping]] = ...) -> None: ...

class GetEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _cloudevent_pb2.StoredEvent
    def __init__(self, event: _Optional[_Union[_cloudevent_pb2.StoredEvent, _Mapping]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("namespace", "type", "source", "subject", "start_time", "end_time", "after_sequence", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    type: str
    source: str
    subject: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    after_sequence: int
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., type: _Optional[str] = ..., source: _Optional[str] = ..., subject: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., after_sequence: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_cloudevent_pb2.StoredEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_cloudevent_pb2.StoredEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EventPosition(_message.Message):
    __slots__ = ("sequence", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EventRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: EventPosition
    end: EventPosition
    def __init__(self, start: _Optional[_Union[EventPosition, _Mapping]] = ..., end: _Optional[_Union[EventPosition, _Mapping]] = ...) -> None: ...

class ExplainListenerRequest(_message.Message):
    __slots__ = ("namespace", "listener_id", "sequence", "source_id", "range", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    listener_id: str
    sequence: int
    source_id: _cloudevent_pb2.EventKey
    range: EventRange
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., listener_id: _Optional[str] = ..., sequence: _Optional[int] = ..., source_id: _Optional[_Union[_cloudevent_pb2.EventKey, _Mapping]] = ..., range: _Optional[_Union[EventRange, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ExplainListenerResponse(_message.Message):
    __slots__ = ("explanations", "next_page_token")
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[EventExplanation]
    next_page_token: str
    def __init__(self, explanations: _Optional[_Iterable[_Union[EventExplanation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EventExplanation(_message.Message):
    __slots__ = ("sequence", "type", "source", "id", "receive_time", "contributed", "message", "namespace_mismatch", "type_not_listed", "before_creation", "consumed", "filtered", "correlation_missing", "after_deadline", "already_collected", "collected", "fired")
    class NamespaceMismatch(_message.Message):
        __slots__ = ("listener_namespace", "event_namespace")
        LISTENER_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        EVENT_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        listener_namespace: str
        event_namespace: str
        def __init__(self, listener_namespace: _Optional[str] = ..., event_namespace: _Optional[str] = ...) -> None: ...
    class TypeNotListed(_message.Message):
        __slots__ = ("type",)
        TYPE_FIELD_NUMBER: _ClassVar[int]
        type: str
        def __init__(self, type: _Optional[str] = ...) -> None: ...
    class BeforeCreation(_message.Message):
        __slots__ = ("create_time",)
        CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
        create_time: _timestamp_pb2.Timestamp
        def __init__(self, create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class Consumed(_message.Message):
        __slots__ = ("status", "fire_id", "finish_time")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        FIRE_ID_FIELD_NUMBER: _ClassVar[int]
        FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
        status: _listener_pb2.ListenerStatus
        fire_id: str
        finish_time: _timestamp_pb2.Timestamp
        def __init__(self, status: _Optional[_Union[_listener_pb2.ListenerStatus, str]] = ..., fire_id: _Optional[str] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class Filtered(_message.Message):
        __slots__ = ("failures",)
        FAILURES_FIELD_NUMBER: _ClassVar[int]
        failures: _containers.RepeatedCompositeFieldContainer[EventExplanation.FilterSetFailure]
        def __init__(self, failures: _Optional[_Iterable[_Union[EventExplanation.FilterSetFailure, _Mapping]]] = ...) -> None: ...
    class FilterSetFailure(_message.Message):
        __slots__ = ("filter_index", "clause", "condition_false", "condition_error")
        FILTER_INDEX_FIELD_NUMBER: _ClassVar[int]
        CLAUSE_FIELD_NUMBER: _ClassVar[int]
        CONDITION_FALSE_FIELD_NUMBER: _ClassVar[int]
        CONDITION_ERROR_FIELD_NUMBER: _ClassVar[int]
        filter_index: int
        clause: EventExplanation.ClauseMismatch
        condition_false: str
        condition_error: EventExplanation.ConditionError
        def __init__(self, filter_index: _Optional[int] = ..., clause: _Optional[_Union[EventExplanation.ClauseMismatch, _Mapping]] = ..., condition_false: _Optional[str] = ..., condition_error: _Optional[_Union[EventExplanation.ConditionError, _Mapping]] = ...) -> None: ...
    class ClauseMismatch(_message.Message):
        __slots__ = ("attribute", "pattern", "value")
        ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
        PATTERN_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        attribute: str
        pattern: str
        value: str
        def __init__(self, attribute: _Optional[str] = ..., pattern: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ConditionError(_message.Message):
        __slots__ = ("condition", "error")
        CONDITION_FIELD_NUMBER: _ClassVar[int]
        ERROR_FIELD_NUMBER: _ClassVar[int]
        condition: str
        error: str
        def __init__(self, condition: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
    class CorrelationMissing(_message.Message):
        __slots__ = ("attribute",)
        ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
        attribute: str
        def __init__(self, attribute: _Optional[str] = ...) -> None: ...
    class AfterDeadline(_message.Message):
        __slots__ = ("deadline",)
        DEADLINE_FIELD_NUMBER: _ClassVar[int]
        deadline: _timestamp_pb2.Timestamp
        def __init__(self, deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class AlreadyCollected(_message.Message):
        __slots__ = ("correlation", "kept_sequence")
        class CorrelationEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        CORRELATION_FIELD_NUMBER: _ClassVar[int]
        KEPT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
        correlation: _containers.ScalarMap[str, str]
        kept_sequence: int
        def __init__(self, correlation: _Optional[_Mapping[str, str]] = ..., kept_sequence: _Optional[int] = ...) -> None: ...
    class Collected(_message.Message):
        __slots__ = ("correlation", "waiting_for")
        class CorrelationEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        CORRELATION_FIELD_NUMBER: _ClassVar[int]
        WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
        correlation: _containers.ScalarMap[str, str]
        waiting_for: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, correlation: _Optional[_Mapping[str, str]] = ..., waiting_for: _Optional[_Iterable[str]] = ...) -> None: ...
    class Fired(_message.Message):
        __slots__ = ("fire_id", "correlation", "event_sequences")
        class CorrelationEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        FIRE_ID_FIELD_NUMBER: _ClassVar[int]
        CORRELATION_FIELD_NUMBER: _ClassVar[int]
        EVENT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
        fire_id: str
        correlation: _containers.ScalarMap[str, str]
        event_sequences: _containers.RepeatedScalarFieldContainer[int]
        def __init__(self, fire_id: _Optional[str] = ..., correlation: _Optional[_Mapping[str, str]] = ..., event_sequences: _Optional[_Iterable[int]] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    TYPE_NOT_LISTED_FIELD_NUMBER: _ClassVar[int]
    BEFORE_CREATION_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    FILTERED_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_MISSING_FIELD_NUMBER: _ClassVar[int]
    AFTER_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_COLLECTED_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: str
    source: str
    id: str
    receive_time: _timestamp_pb2.Timestamp
    contributed: bool
    message: str
    namespace_mismatch: EventExplanation.NamespaceMismatch
    type_not_listed: EventExplanation.TypeNotListed
    before_creation: EventExplanation.BeforeCreation
    consumed: EventExplanation.Consumed
    filtered: EventExplanation.Filtered
    correlation_missing: EventExplanation.CorrelationMissing
    after_deadline: EventExplanation.AfterDeadline
    already_collected: EventExplanation.AlreadyCollected
    collected: EventExplanation.Collected
    fired: EventExplanation.Fired
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[str] = ..., source: _Optional[str] = ..., id: _Optional[str] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., contributed: _Optional[bool] = ..., message: _Optional[str] = ..., namespace_mismatch: _Optional[_Union[EventExplanation.NamespaceMismatch, _Mapping]] = ..., type_not_listed: _Optional[_Union[EventExplanation.TypeNotListed, _Mapping]] = ..., before_creation: _Optional[_Union[EventExplanation.BeforeCreation, _Mapping]] = ..., consumed: _Optional[_Union[EventExplanation.Consumed, _Mapping]] = ..., filtered: _Optional[_Union[EventExplanation.Filtered, _Mapping]] = ..., correlation_missing: _Optional[_Union[EventExplanation.CorrelationMissing, _Mapping]] = ..., after_deadline: _Optional[_Union[EventExplanation.AfterDeadline, _Mapping]] = ..., already_collected: _Optional[_Union[EventExplanation.AlreadyCollected, _Mapping]] = ..., collected: _Optional[_Union[EventExplanation.Collected, _Mapping]] = ..., fired: _Optional[_Union[EventExplanation.Fired, _Mapping]] = ...) -> None: ...

class ReplayEventsRequest(_message.Message):
    __slots__ = ("namespace", "listener_id", "start", "end", "mode", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    listener_id: str
    start: EventPosition
    end: EventPosition
    mode: ReplayMode
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., listener_id: _Optional[str] = ..., start: _Optional[_Union[EventPosition, _Mapping]] = ..., end: _Optional[_Union[EventPosition, _Mapping]] = ..., mode: _Optional[_Union[ReplayMode, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ReplayEventsResponse(_message.Message):
    __slots__ = ("fires", "events_evaluated", "last_sequence", "next_page_token")
    FIRES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fires: _containers.RepeatedCompositeFieldContainer[ReplayedFire]
    events_evaluated: int
    last_sequence: int
    next_page_token: str
    def __init__(self, fires: _Optional[_Iterable[_Union[ReplayedFire, _Mapping]]] = ..., events_evaluated: _Optional[int] = ..., last_sequence: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayedFire(_message.Message):
    __slots__ = ("fire_id", "kind", "target", "correlation", "event_sequences", "created", "notification_sequence")
    class CorrelationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FIRE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    fire_id: str
    kind: _notification_pb2.NotificationKind
    target: str
    correlation: _containers.ScalarMap[str, str]
    event_sequences: _containers.RepeatedScalarFieldContainer[int]
    created: bool
    notification_sequence: int
    def __init__(self, fire_id: _Optional[str] = ..., kind: _Optional[_Union[_notification_pb2.NotificationKind, str]] = ..., target: _Optional[str] = ..., correlation: _Optional[_Mapping[str, str]] = ..., event_sequences: _Optional[_Iterable[int]] = ..., created: _Optional[bool] = ..., notification_sequence: _Optional[int] = ...) -> None: ...
