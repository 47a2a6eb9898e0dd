"""What a handler's `handle(event, ctx)` receives."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from edgetrail.sdk.session import cookie_hex
from edgetrail.sdk.state import State


@dataclass(frozen=True)
class Event:
    """One event a μsrv raised for one session."""

    id: str
    name: str  # e.g. "request_received"
    cookie: str  # the session cookie, 16 hex digits
    microservice: str  # the μsrv that raised it
    sync: bool  # the μsrv waits for this handler's verdict
    attributes: dict[str, str] = field(default_factory=dict)  # docs/cnf-spec.md lists them per event
    payload: bytes = b""  # the body, up to the μsrv's inspection limit
    at_ns: int = 0  # when it was raised (Unix nanoseconds)
    timeout: float | None = None  # seconds the μsrv waits for the verdict (sync events)
    default: str = "allow"  # the verdict that applies when the handler cannot give one
    traceparent: str = ""

    @classmethod
    def from_wire(cls, event) -> Event:
        return cls(
            id=event.id, name=event.name, cookie=cookie_hex(event.cookie), microservice=event.service,
            sync=event.sync, attributes=dict(event.attributes), payload=bytes(event.payload), at_ns=event.at_ns,
            timeout=(event.timeout_ms / 1000) if event.sync and event.timeout_ms else None,
            default="deny" if event.default_decision == 2 else "allow", traceparent=event.traceparent)


class HandlerSpan:
    """The handler's span, OpenTracing-style: tags are span attributes, logs are span events."""

    def __init__(self, span):
        self.otel = span

    def set_tag(self, key: str, value) -> HandlerSpan:
        if not isinstance(value, (str, bool, int, float)):
            value = str(value)
        self.otel.set_attribute(str(key), value)
        return self

    def log(self, message: str | None = None, **fields) -> HandlerSpan:
        attributes = {key: value if isinstance(value, (str, bool, int, float)) else str(value)
                      for key, value in fields.items()}
        if message is not None:
            attributes["message"] = str(message)
        self.otel.add_event("log", attributes)
        return self

    def log_kv(self, fields: dict) -> HandlerSpan:
        return self.log(**{str(key): value for key, value in fields.items()})


class _HandlerLog(logging.LoggerAdapter):
    """`ctx.log`: the sidecar's log (with the cookie) and, from INFO up or when enabled, the
    handler's span (a `log` event with the message and level)."""

    def __init__(self, logger: logging.Logger, span: HandlerSpan, cookie: str):
        super().__init__(logger, {"cookie": cookie})
        self.span = span

    def process(self, msg, kwargs):
        return f"[{self.extra['cookie']}] {msg}", kwargs

    def log(self, level, msg, *args, **kwargs):
        if level >= logging.INFO or self.isEnabledFor(level):
            try:
                self.span.log(str(msg) % args if args else str(msg), level=logging.getLevelName(level).lower())
            except Exception:  # noqa: BLE001 - logging must not break the handler
                pass
        super().log(level, msg, *args, **kwargs)


@dataclass
class Context:
    """`ctx`: the session's state for this μsrv, the handler's span and log, the CNF's settings."""

    event: Event
    state: State
    span: HandlerSpan
    log: logging.LoggerAdapter
    settings: dict[str, str]
    microservice: str
    cnf: str

    @property
    def cookie(self) -> str:
        return self.event.cookie


def make_log(name: str, span: HandlerSpan, cookie: str) -> logging.LoggerAdapter:
    return _HandlerLog(logging.getLogger(f"edgetrail.handler.{name}"), span, cookie)
