import datetime

from eventbus.v1 import notification_pb2 as _notification_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeekTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEEK_TARGET_UNSPECIFIED: _ClassVar[SeekTarget]
    SEEK_TARGET_EARLIEST: _ClassVar[SeekTarget]
    SEEK_TARGET_LATEST: _ClassVar[SeekTarget]
    SEEK_TARGET_SEQUENCE: _ClassVar[SeekTarget]
    SEEK_TARGET_TIME: _ClassVar[SeekTarget]
SEEK_TARGET_UNSPECIFIED: SeekTarget
SEEK_TARGET_EARLIEST: SeekTarget
SEEK_TARGET_LATEST: SeekTarget
SEEK_TARGET_SEQUENCE: SeekTarget
SEEK_TARGET_TIME: SeekTarget

class Namespace(_message.Message):
    __slots__ = ("name", "event_count", "active_listener_count", "consumer_group_count", "last_event_sequence", "last_notification_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LISTENER_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_NOTIFICATION_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    event_count: int
    active_listener_count: int
    consumer_group_count: int
    last_event_sequence: int
    last_notification_sequence: int
    def __init__(self, name: _Optional[str] = ..., event_count: _Optional[int] = ..., active_listener_count: _Optional[int] = ..., consumer_group_count: _Optional[int] = ..., last_event_sequence: _Optional[int] = ..., last_notification_sequence: _Optional[int] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces", "next_page_token")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    next_page_token: str
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteNamespaceRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class DeleteNamespaceResponse(_message.Message):
    __slots__ = ("deleted_event_count", "deleted_listener_count", "deleted_partial_state_count", "deleted_notification_count", "deleted_consumer_group_count", "deleted_delivery_count")
    DELETED_EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_LISTENER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_PARTIAL_STATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_NOTIFICATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_CONSUMER_GROUP_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETED_DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_event_count: int
    deleted_listener_count: int
    deleted_partial_state_count: int
    deleted_notification_count: int
    deleted_consumer_group_count: int
    deleted_delivery_count: int
    def __init__(self, deleted_event_count: _Optional[int] = ..., deleted_listener_count: _Optional[int] = ..., deleted_partial_state_count: _Optional[int] = ..., deleted_notification_count: _Optional[int] = ..., deleted_consumer_group_count: _Optional[int] = ..., deleted_delivery_count: _Optional[int] = ...) -> None: ...

class ConsumerGroup(_message.Message):
    __slots__ = ("namespace", "name", "kinds", "workflow_ids", "max_attempts", "read_sequence", "pending_count", "leased_count", "dead_count", "oldest_pending_age", "connected_stream_count", "create_time")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    READ_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    LEASED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_STREAM_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    kinds: _containers.RepeatedScalarFieldContainer[_notification_pb2.NotificationKind]
    workflow_ids: _containers.RepeatedScalarFieldContainer[str]
    max_attempts: int
    read_sequence: int
    pending_count: int
    leased_count: int
    dead_count: int
    oldest_pending_age: _duration_pb2.Duration
    connected_stream_count: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_notification_pb2.NotificationKind, str]]] = ..., workflow_ids: _Optional[_Iterable[str]] = ..., max_attempts: _Optional[int] = ..., read_sequence: _Optional[int] = ..., pending_count: _Optional[int] = ..., leased_count: _Optional[int] = ..., dead_count: _Optional[int] = ..., oldest_pending_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., connected_stream_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListConsumerGroupsRequest(_message.Message):
    __slots__ = ("namespace", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConsumerGroupsResponse(_message.Message):
    __slots__ = ("consumer_groups", "next_page_token")
    CONSUMER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    consumer_groups: _containers.RepeatedCompositeFieldContainer[ConsumerGroup]
    next_page_token: str
    def __init__(self, consumer_groups: _Optional[_Iterable[_Union[ConsumerGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetConsumerGroupRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ...) -> None: ...

class GetConsumerGroupResponse(_message.Message):
    __slots__ = ("consumer_group",)
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    consumer_group: ConsumerGroup
    def __init__(self, consumer_group: _Optional[_Union[ConsumerGroup, _Mapping]] = ...) -> None: ...

class UpdateConsumerGroupRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "kinds", "workflow_ids", "max_attempts", "update_mask")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    kinds: _containers.RepeatedScalarFieldContainer[_notification_pb2.NotificationKind]
    workflow_ids: _containers.RepeatedScalarFieldContainer[str]
    max_attempts: int
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_notification_pb2.NotificationKind, str]]] = ..., workflow_ids: _Optional[_Iterable[str]] = ..., max_attempts: _Optional[int] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateConsumerGroupResponse(_message.Message):
    __slots__ = ("consumer_group",)
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    consumer_group: ConsumerGroup
    def __init__(self, consumer_group: _Optional[_Union[ConsumerGroup, _Mapping]] = ...) -> None: ...

class SeekConsumerGroupRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group", "target", "sequence", "time")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    target: SeekTarget
    sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ..., target: _Optional[_Union[SeekTarget, str]] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SeekConsumerGroupResponse(_message.Message):
    __slots__ = ("consumer_group", "dropped_delivery_count", "read_sequence")
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    DROPPED_DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    READ_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    consumer_group: ConsumerGroup
    dropped_delivery_count: int
    read_sequence: int
    def __init__(self, consumer_group: _Optional[_Union[ConsumerGroup, _Mapping]] = ..., dropped_delivery_count: _Optional[int] = ..., read_sequence: _Optional[int] = ...) -> None: ...

class DeleteConsumerGroupRequest(_message.Message):
    __slots__ = ("namespace", "consumer_group")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    consumer_group: str
    def __init__(self, namespace: _Optional[str] = ..., consumer_group: _Optional[str] = ...) -> None: ...

class DeleteConsumerGroupResponse(_message.Message):
    __slots__ = ("deleted_delivery_count",)
    DELETED_DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_delivery_count: int
    def __init__(self, deleted_delivery_count: _Optional[int] = ...) -> None: ...
