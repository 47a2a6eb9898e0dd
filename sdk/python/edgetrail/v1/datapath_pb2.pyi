from edgetrail.v1 import common_pb2 as _common_pb2
from edgetrail.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatapathRule(_message.Message):
    __slots__ = ("id", "ip", "port", "action", "labels", "rate_bytes_per_second")
    ID_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RATE_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    id: int
    ip: str
    port: int
    action: _common_pb2.DatapathAction
    labels: _containers.RepeatedScalarFieldContainer[str]
    rate_bytes_per_second: int
    def __init__(self, id: _Optional[int] = ..., ip: _Optional[str] = ..., port: _Optional[int] = ..., action: _Optional[_Union[_common_pb2.DatapathAction, str]] = ..., labels: _Optional[_Iterable[str]] = ..., rate_bytes_per_second: _Optional[int] = ...) -> None: ...

class ApplyRulesRequest(_message.Message):
    __slots__ = ("rules", "pods")
    RULES_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[DatapathRule]
    pods: _containers.RepeatedCompositeFieldContainer[PodEndpoint]
    def __init__(self, rules: _Optional[_Iterable[_Union[DatapathRule, _Mapping]]] = ..., pods: _Optional[_Iterable[_Union[PodEndpoint, _Mapping]]] = ...) -> None: ...

class PodEndpoint(_message.Message):
    __slots__ = ("name", "labels", "node_interface", "ip", "mac")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODE_INTERFACE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    node_interface: str
    ip: bytes
    mac: bytes
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., node_interface: _Optional[str] = ..., ip: _Optional[bytes] = ..., mac: _Optional[bytes] = ...) -> None: ...

class ApplyRulesResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("version", "rules")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    version: int
    rules: _containers.RepeatedCompositeFieldContainer[DatapathRule]
    def __init__(self, version: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[DatapathRule, _Mapping]]] = ...) -> None: ...

class BindFlowRequest(_message.Message):
    __slots__ = ("tuple", "cookie")
    TUPLE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    tuple: _common_pb2.FiveTuple
    cookie: int
    def __init__(self, tuple: _Optional[_Union[_common_pb2.FiveTuple, _Mapping]] = ..., cookie: _Optional[int] = ...) -> None: ...

class BindFlowResponse(_message.Message):
    __slots__ = ("flow_seen",)
    FLOW_SEEN_FIELD_NUMBER: _ClassVar[int]
    flow_seen: bool
    def __init__(self, flow_seen: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RuleStats(_message.Message):
    __slots__ = ("rule_id", "packets", "bytes", "drops")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    rule_id: int
    packets: int
    bytes: int
    drops: int
    def __init__(self, rule_id: _Optional[int] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., drops: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("rules", "ring_buffer_lost", "open_flows", "flows_untracked", "flow_table_size", "manager_run", "last_sequence")
    RULES_FIELD_NUMBER: _ClassVar[int]
    RING_BUFFER_LOST_FIELD_NUMBER: _ClassVar[int]
    OPEN_FLOWS_FIELD_NUMBER: _ClassVar[int]
    FLOWS_UNTRACKED_FIELD_NUMBER: _ClassVar[int]
    FLOW_TABLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MANAGER_RUN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RuleStats]
    ring_buffer_lost: int
    open_flows: int
    flows_untracked: int
    flow_table_size: int
    manager_run: int
    last_sequence: int
    def __init__(self, rules: _Optional[_Iterable[_Union[RuleStats, _Mapping]]] = ..., ring_buffer_lost: _Optional[int] = ..., open_flows: _Optional[int] = ..., flows_untracked: _Optional[int] = ..., flow_table_size: _Optional[int] = ..., manager_run: _Optional[int] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("resume_run", "resume_after")
    RESUME_RUN_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    resume_run: int
    resume_after: int
    def __init__(self, resume_run: _Optional[int] = ..., resume_after: _Optional[int] = ...) -> None: ...

class FlowEventMessage(_message.Message):
    __slots__ = ("cookie", "node", "event", "sequence", "manager_run")
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MANAGER_RUN_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    node: str
    event: _telemetry_pb2.FlowEvent
    sequence: int
    manager_run: int
    def __init__(self, cookie: _Optional[int] = ..., node: _Optional[str] = ..., event: _Optional[_Union[_telemetry_pb2.FlowEvent, _Mapping]] = ..., sequence: _Optional[int] = ..., manager_run: _Optional[int] = ...) -> None: ...
