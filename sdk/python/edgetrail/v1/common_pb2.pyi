from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DatapathAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATAPATH_ACTION_UNSPECIFIED: _ClassVar[DatapathAction]
    DATAPATH_ACTION_REDIRECT: _ClassVar[DatapathAction]
    DATAPATH_ACTION_COPY: _ClassVar[DatapathAction]
    DATAPATH_ACTION_DENY: _ClassVar[DatapathAction]
    DATAPATH_ACTION_RATELIMIT: _ClassVar[DatapathAction]
    DATAPATH_ACTION_PASS: _ClassVar[DatapathAction]
DATAPATH_ACTION_UNSPECIFIED: DatapathAction
DATAPATH_ACTION_REDIRECT: DatapathAction
DATAPATH_ACTION_COPY: DatapathAction
DATAPATH_ACTION_DENY: DatapathAction
DATAPATH_ACTION_RATELIMIT: DatapathAction
DATAPATH_ACTION_PASS: DatapathAction

class FiveTuple(_message.Message):
    __slots__ = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    protocol: int
    def __init__(self, src_ip: _Optional[bytes] = ..., dst_ip: _Optional[bytes] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., protocol: _Optional[int] = ...) -> None: ...
