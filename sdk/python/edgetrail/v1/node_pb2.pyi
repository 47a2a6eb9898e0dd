from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PodState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POD_STATE_UNSPECIFIED: _ClassVar[PodState]
    POD_STATE_STARTING: _ClassVar[PodState]
    POD_STATE_RUNNING: _ClassVar[PodState]
    POD_STATE_FAILED: _ClassVar[PodState]
    POD_STATE_STOPPED: _ClassVar[PodState]
POD_STATE_UNSPECIFIED: PodState
POD_STATE_STARTING: PodState
POD_STATE_RUNNING: PodState
POD_STATE_FAILED: PodState
POD_STATE_STOPPED: PodState

class DeployRequest(_message.Message):
    __slots__ = ("spec_yaml", "handler_files")
    class HandlerFilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FILES_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    handler_files: _containers.ScalarMap[str, bytes]
    def __init__(self, spec_yaml: _Optional[str] = ..., handler_files: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class DeployResponse(_message.Message):
    __slots__ = ("cnf", "pods", "datapath_version")
    CNF_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    DATAPATH_VERSION_FIELD_NUMBER: _ClassVar[int]
    cnf: str
    pods: _containers.RepeatedCompositeFieldContainer[Pod]
    datapath_version: int
    def __init__(self, cnf: _Optional[str] = ..., pods: _Optional[_Iterable[_Union[Pod, _Mapping]]] = ..., datapath_version: _Optional[int] = ...) -> None: ...

class UndeployRequest(_message.Message):
    __slots__ = ("cnf",)
    CNF_FIELD_NUMBER: _ClassVar[int]
    cnf: str
    def __init__(self, cnf: _Optional[str] = ...) -> None: ...

class UndeployResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPodsRequest(_message.Message):
    __slots__ = ("cnf",)
    CNF_FIELD_NUMBER: _ClassVar[int]
    cnf: str
    def __init__(self, cnf: _Optional[str] = ...) -> None: ...

class ListPodsResponse(_message.Message):
    __slots__ = ("pods",)
    PODS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[Pod]
    def __init__(self, pods: _Optional[_Iterable[_Union[Pod, _Mapping]]] = ...) -> None: ...

class Pod(_message.Message):
    __slots__ = ("name", "cnf", "service", "kind", "labels", "netns", "ip", "state", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CNF_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    cnf: str
    service: str
    kind: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    netns: str
    ip: bytes
    state: PodState
    message: str
    def __init__(self, name: _Optional[str] = ..., cnf: _Optional[str] = ..., service: _Optional[str] = ..., kind: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., netns: _Optional[str] = ..., ip: _Optional[bytes] = ..., state: _Optional[_Union[PodState, str]] = ..., message: _Optional[str] = ...) -> None: ...
