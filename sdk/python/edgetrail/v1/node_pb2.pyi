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
    POD_STATE_RESTARTING: _ClassVar[PodState]
    POD_STATE_UNHEALTHY: _ClassVar[PodState]
    POD_STATE_STOPPED: _ClassVar[PodState]
POD_STATE_UNSPECIFIED: PodState
POD_STATE_STARTING: PodState
POD_STATE_RUNNING: PodState
POD_STATE_RESTARTING: PodState
POD_STATE_UNHEALTHY: PodState
POD_STATE_STOPPED: PodState

class DeployRequest(_message.Message):
    __slots__ = ("spec_yaml", "spec_path", "files")
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    SPEC_PATH_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    spec_path: str
    files: _containers.ScalarMap[str, bytes]
    def __init__(self, spec_yaml: _Optional[str] = ..., spec_path: _Optional[str] = ..., files: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class DeployProgress(_message.Message):
    __slots__ = ("step", "outcome")
    STEP_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    step: str
    outcome: DeployOutcome
    def __init__(self, step: _Optional[str] = ..., outcome: _Optional[_Union[DeployOutcome, _Mapping]] = ...) -> None: ...

class DeployOutcome(_message.Message):
    __slots__ = ("ok", "cnf", "version", "error", "rolled_back")
    OK_FIELD_NUMBER: _ClassVar[int]
    CNF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    cnf: str
    version: int
    error: str
    rolled_back: bool
    def __init__(self, ok: _Optional[bool] = ..., cnf: _Optional[str] = ..., version: _Optional[int] = ..., error: _Optional[str] = ..., rolled_back: _Optional[bool] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("cnf",)
    CNF_FIELD_NUMBER: _ClassVar[int]
    cnf: str
    def __init__(self, cnf: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("cnfs",)
    CNFS_FIELD_NUMBER: _ClassVar[int]
    cnfs: _containers.RepeatedCompositeFieldContainer[CNFSummary]
    def __init__(self, cnfs: _Optional[_Iterable[_Union[CNFSummary, _Mapping]]] = ...) -> None: ...

class CNFSummary(_message.Message):
    __slots__ = ("name", "version", "pods", "pods_healthy", "deployed_at", "last_error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    PODS_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    pods: int
    pods_healthy: int
    deployed_at: int
    last_error: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., pods: _Optional[int] = ..., pods_healthy: _Optional[int] = ..., deployed_at: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("cnf",)
    CNF_FIELD_NUMBER: _ClassVar[int]
    cnf: str
    def __init__(self, cnf: _Optional[str] = ...) -> None: ...

class CNFStatus(_message.Message):
    __slots__ = ("cnf", "pods", "node", "datapath_version", "rules")
    CNF_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATAPATH_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    cnf: CNFSummary
    pods: _containers.RepeatedCompositeFieldContainer[Pod]
    node: str
    datapath_version: int
    rules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cnf: _Optional[_Union[CNFSummary, _Mapping]] = ..., pods: _Optional[_Iterable[_Union[Pod, _Mapping]]] = ..., node: _Optional[str] = ..., datapath_version: _Optional[int] = ..., rules: _Optional[_Iterable[str]] = ...) -> None: ...

class Pod(_message.Message):
    __slots__ = ("name", "kind", "namespace", "ip", "labels", "state", "message", "restarts", "sidecar_restarts", "pid", "sidecar_pid", "handlers", "handlers_attached")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_PID_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_FIELD_NUMBER: _ClassVar[int]
    HANDLERS_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    namespace: str
    ip: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    state: PodState
    message: str
    restarts: int
    sidecar_restarts: int
    pid: int
    sidecar_pid: int
    handlers: _containers.RepeatedScalarFieldContainer[str]
    handlers_attached: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ..., ip: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[PodState, str]] = ..., message: _Optional[str] = ..., restarts: _Optional[int] = ..., sidecar_restarts: _Optional[int] = ..., pid: _Optional[int] = ..., sidecar_pid: _Optional[int] = ..., handlers: _Optional[_Iterable[str]] = ..., handlers_attached: _Optional[bool] = ...) -> None: ...
