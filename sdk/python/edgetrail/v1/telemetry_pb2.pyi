from edgetrail.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpanStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPAN_STATUS_UNSET: _ClassVar[SpanStatus]
    SPAN_STATUS_OK: _ClassVar[SpanStatus]
    SPAN_STATUS_ERROR: _ClassVar[SpanStatus]

class SpanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPAN_KIND_UNSPECIFIED: _ClassVar[SpanKind]
    SPAN_KIND_INTERNAL: _ClassVar[SpanKind]
    SPAN_KIND_SERVER: _ClassVar[SpanKind]
    SPAN_KIND_CLIENT: _ClassVar[SpanKind]
    SPAN_KIND_PRODUCER: _ClassVar[SpanKind]
    SPAN_KIND_CONSUMER: _ClassVar[SpanKind]

class FlowPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_PHASE_UNSPECIFIED: _ClassVar[FlowPhase]
    FLOW_PHASE_START: _ClassVar[FlowPhase]
    FLOW_PHASE_END: _ClassVar[FlowPhase]

class FlowEndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_END_REASON_UNSPECIFIED: _ClassVar[FlowEndReason]
    FLOW_END_REASON_FIN: _ClassVar[FlowEndReason]
    FLOW_END_REASON_RST: _ClassVar[FlowEndReason]
    FLOW_END_REASON_IDLE: _ClassVar[FlowEndReason]
SPAN_STATUS_UNSET: SpanStatus
SPAN_STATUS_OK: SpanStatus
SPAN_STATUS_ERROR: SpanStatus
SPAN_KIND_UNSPECIFIED: SpanKind
SPAN_KIND_INTERNAL: SpanKind
SPAN_KIND_SERVER: SpanKind
SPAN_KIND_CLIENT: SpanKind
SPAN_KIND_PRODUCER: SpanKind
SPAN_KIND_CONSUMER: SpanKind
FLOW_PHASE_UNSPECIFIED: FlowPhase
FLOW_PHASE_START: FlowPhase
FLOW_PHASE_END: FlowPhase
FLOW_END_REASON_UNSPECIFIED: FlowEndReason
FLOW_END_REASON_FIN: FlowEndReason
FLOW_END_REASON_RST: FlowEndReason
FLOW_END_REASON_IDLE: FlowEndReason

class Record(_message.Message):
    __slots__ = ("cookie", "cnf", "node", "service", "accepted_at_ns", "span", "flow", "snapshot")
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    CNF_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    cnf: str
    node: str
    service: str
    accepted_at_ns: int
    span: Span
    flow: FlowEvent
    snapshot: Snapshot
    def __init__(self, cookie: _Optional[int] = ..., cnf: _Optional[str] = ..., node: _Optional[str] = ..., service: _Optional[str] = ..., accepted_at_ns: _Optional[int] = ..., span: _Optional[_Union[Span, _Mapping]] = ..., flow: _Optional[_Union[FlowEvent, _Mapping]] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("trace_id", "span_id", "parent_span_id", "operation", "start_ns", "end_ns", "status", "status_message", "kind", "tags", "logs", "baggage")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class BaggageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    BAGGAGE_FIELD_NUMBER: _ClassVar[int]
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    operation: str
    start_ns: int
    end_ns: int
    status: SpanStatus
    status_message: str
    kind: SpanKind
    tags: _containers.ScalarMap[str, str]
    logs: _containers.RepeatedCompositeFieldContainer[SpanLog]
    baggage: _containers.ScalarMap[str, str]
    def __init__(self, trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., parent_span_id: _Optional[bytes] = ..., operation: _Optional[str] = ..., start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., status: _Optional[_Union[SpanStatus, str]] = ..., status_message: _Optional[str] = ..., kind: _Optional[_Union[SpanKind, str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., logs: _Optional[_Iterable[_Union[SpanLog, _Mapping]]] = ..., baggage: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SpanLog(_message.Message):
    __slots__ = ("at_ns", "name", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AT_NS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    at_ns: int
    name: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, at_ns: _Optional[int] = ..., name: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FlowEvent(_message.Message):
    __slots__ = ("phase", "tuple", "action", "rule_id", "packets_in", "packets_out", "bytes_in", "bytes_out", "drops", "start_ns", "end_ns", "end_reason", "lost_events")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    TUPLE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    PACKETS_IN_FIELD_NUMBER: _ClassVar[int]
    PACKETS_OUT_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    LOST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    phase: FlowPhase
    tuple: _common_pb2.FiveTuple
    action: _common_pb2.DatapathAction
    rule_id: int
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int
    drops: int
    start_ns: int
    end_ns: int
    end_reason: FlowEndReason
    lost_events: int
    def __init__(self, phase: _Optional[_Union[FlowPhase, str]] = ..., tuple: _Optional[_Union[_common_pb2.FiveTuple, _Mapping]] = ..., action: _Optional[_Union[_common_pb2.DatapathAction, str]] = ..., rule_id: _Optional[int] = ..., packets_in: _Optional[int] = ..., packets_out: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., drops: _Optional[int] = ..., start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., end_reason: _Optional[_Union[FlowEndReason, str]] = ..., lost_events: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("key", "string_value", "hash_fields", "deleted", "event", "at_ns", "source", "full_size", "unsupported_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    AT_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FULL_SIZE_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    string_value: bytes
    hash_fields: HashFields
    deleted: bool
    event: str
    at_ns: int
    source: str
    full_size: int
    unsupported_type: str
    def __init__(self, key: _Optional[str] = ..., string_value: _Optional[bytes] = ..., hash_fields: _Optional[_Union[HashFields, _Mapping]] = ..., deleted: _Optional[bool] = ..., event: _Optional[str] = ..., at_ns: _Optional[int] = ..., source: _Optional[str] = ..., full_size: _Optional[int] = ..., unsupported_type: _Optional[str] = ...) -> None: ...

class HashFields(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.ScalarMap[str, bytes]
    def __init__(self, fields: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class CookieBatch(_message.Message):
    __slots__ = ("cookie", "seq", "final", "records", "cnf", "node", "created_at_ns")
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CNF_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    seq: int
    final: bool
    records: _containers.RepeatedCompositeFieldContainer[Record]
    cnf: str
    node: str
    created_at_ns: int
    def __init__(self, cookie: _Optional[int] = ..., seq: _Optional[int] = ..., final: _Optional[bool] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., cnf: _Optional[str] = ..., node: _Optional[str] = ..., created_at_ns: _Optional[int] = ...) -> None: ...
