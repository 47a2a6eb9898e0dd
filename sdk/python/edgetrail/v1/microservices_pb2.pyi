from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerdictDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_DECISION_UNSPECIFIED: _ClassVar[VerdictDecision]
    VERDICT_DECISION_ALLOW: _ClassVar[VerdictDecision]
    VERDICT_DECISION_DENY: _ClassVar[VerdictDecision]
VERDICT_DECISION_UNSPECIFIED: VerdictDecision
VERDICT_DECISION_ALLOW: VerdictDecision
VERDICT_DECISION_DENY: VerdictDecision

class Event(_message.Message):
    __slots__ = ("id", "cookie", "name", "service", "sync", "at_ns", "attributes", "payload", "traceparent", "timeout_ms", "default_decision", "subscribed")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    AT_NS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_DECISION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    id: str
    cookie: int
    name: str
    service: str
    sync: bool
    at_ns: int
    attributes: _containers.ScalarMap[str, str]
    payload: bytes
    traceparent: str
    timeout_ms: int
    default_decision: VerdictDecision
    subscribed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., cookie: _Optional[int] = ..., name: _Optional[str] = ..., service: _Optional[str] = ..., sync: _Optional[bool] = ..., at_ns: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., payload: _Optional[bytes] = ..., traceparent: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., default_decision: _Optional[_Union[VerdictDecision, str]] = ..., subscribed: _Optional[_Iterable[str]] = ...) -> None: ...

class HandlerMessage(_message.Message):
    __slots__ = ("subscribe", "verdict")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    subscribe: Subscribe
    verdict: Verdict
    def __init__(self, subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, _Mapping]] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("events", "handler")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedScalarFieldContainer[str]
    handler: str
    def __init__(self, events: _Optional[_Iterable[str]] = ..., handler: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("event_id", "decision", "reason", "annotations")
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    decision: VerdictDecision
    reason: str
    annotations: _containers.ScalarMap[str, str]
    def __init__(self, event_id: _Optional[str] = ..., decision: _Optional[_Union[VerdictDecision, str]] = ..., reason: _Optional[str] = ..., annotations: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("cookie",)
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    def __init__(self, cookie: _Optional[int] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("cookie", "client", "origin", "method", "url", "headers", "started_at_ns")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    client: str
    origin: str
    method: str
    url: str
    headers: _containers.ScalarMap[str, str]
    started_at_ns: int
    def __init__(self, cookie: _Optional[int] = ..., client: _Optional[str] = ..., origin: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., started_at_ns: _Optional[int] = ...) -> None: ...

class PolicyCheckRequest(_message.Message):
    __slots__ = ("cookie", "method", "url", "client", "headers", "categories", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    method: str
    url: str
    client: str
    headers: _containers.ScalarMap[str, str]
    categories: _containers.RepeatedScalarFieldContainer[str]
    body: bytes
    def __init__(self, cookie: _Optional[int] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., client: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., categories: _Optional[_Iterable[str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class PolicyDecision(_message.Message):
    __slots__ = ("decision", "rule", "reason")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    decision: VerdictDecision
    rule: str
    reason: str
    def __init__(self, decision: _Optional[_Union[VerdictDecision, str]] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class InspectRequest(_message.Message):
    __slots__ = ("cookie", "content_type", "body")
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    content_type: str
    body: bytes
    def __init__(self, cookie: _Optional[int] = ..., content_type: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class InspectResult(_message.Message):
    __slots__ = ("categories", "needs_scan", "size", "sniffed_type", "sha256", "decision", "reason")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    NEEDS_SCAN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SNIFFED_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    needs_scan: bool
    size: int
    sniffed_type: str
    sha256: str
    decision: VerdictDecision
    reason: str
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., needs_scan: _Optional[bool] = ..., size: _Optional[int] = ..., sniffed_type: _Optional[str] = ..., sha256: _Optional[str] = ..., decision: _Optional[_Union[VerdictDecision, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("cookie", "name", "body")
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    cookie: int
    name: str
    body: bytes
    def __init__(self, cookie: _Optional[int] = ..., name: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class ScanResult(_message.Message):
    __slots__ = ("infected", "signature", "engine", "decision", "reason")
    INFECTED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    infected: bool
    signature: str
    engine: str
    decision: VerdictDecision
    reason: str
    def __init__(self, infected: _Optional[bool] = ..., signature: _Optional[str] = ..., engine: _Optional[str] = ..., decision: _Optional[_Union[VerdictDecision, str]] = ..., reason: _Optional[str] = ...) -> None: ...
