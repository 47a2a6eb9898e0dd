"""The CNF's μsrvs as Python objects: each call is a gRPC call over the μsrv's Unix socket that
carries the session (cookie, baggage, traceparent) and is a child span of the handler's span, so
the called μsrv's span hangs below it in the session's trace. Results are plain objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from edgetrail.sdk import runtime as _runtime
from edgetrail.sdk.session import COOKIE_KEY, TraceParent, cookie_hex, metadata
from edgetrail.sdk.verdict import Decided
from edgetrail.v1 import microservices_pb2 as pb
from edgetrail.v1 import microservices_pb2_grpc as rpc

_DECISIONS = {pb.VERDICT_DECISION_ALLOW: "allow", pb.VERDICT_DECISION_DENY: "deny"}


class ServiceError(Exception):
    """A μsrv refused or failed a call: `microservice`, `method`, the gRPC `code` name and its
    message."""

    def __init__(self, microservice: str, method: str, code: str, message: str):
        super().__init__(f"{microservice} {method}: {code}: {message}")
        self.microservice = microservice
        self.method = method
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PolicyDecision(Decided):
    decision: str  # "allow" or "deny"
    rule: str  # the rule that decided; "default" when none matched
    reason: str


@dataclass(frozen=True)
class InspectResult(Decided):
    categories: list[str]  # from the bytes: "html", "pdf", "executable", "download", ...
    needs_scan: bool
    size: int
    sniffed_type: str
    sha256: str
    decision: str  # the inspect_done handler's verdict
    reason: str


@dataclass(frozen=True)
class ScanResult(Decided):
    infected: bool
    signature: str
    engine: str
    decision: str  # deny when infected, unless the scan_done handler says otherwise
    reason: str


@dataclass(frozen=True)
class Session:
    cookie: str
    client: str
    origin: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    started_at_ns: int = 0


class _Proxy:
    kind = ""
    service = ""

    def __init__(self, name: str | None = None):
        self._name = name
        self._stubs: dict[int, object] = {}

    @property
    def _attribute(self) -> str:
        return self.kind.replace("-", "_")

    def on(self, name: str):
        """The same proxy for the CNF's μsrv `name`, when it has more than one of this kind."""
        return type(self)(name)

    def _call(self, method: str, operation: str, request):
        invocation = _runtime.current(f"{self._attribute}.{operation}()")
        runtime = invocation.runtime
        name = runtime.peer(self.kind, self._name)
        channel = runtime.channel(name)
        stub = self._stubs.get(id(channel))
        if stub is None:
            stub = self._stubs[id(channel)] = getattr(rpc, f"{self.service}Stub")(channel)
        parent = trace.set_span_in_context(invocation.span)
        span = runtime.tracer.start_span(
            f"{self._attribute}.{operation}", context=parent, kind=SpanKind.CLIENT,
            attributes={COOKIE_KEY: cookie_hex(invocation.cookie), "rpc.system": "grpc",
                        "rpc.service": f"edgetrail.v1.{self.service}", "rpc.method": method,
                        "edgetrail.peer": name})
        context = span.get_span_context()
        here = TraceParent(context.trace_id, context.span_id, context.trace_flags.sampled)
        if not request.cookie:
            request.cookie = invocation.cookie
        try:
            return getattr(stub, method)(request, metadata=metadata(invocation.cookie, here),
                                         timeout=invocation.remaining())
        except grpc.RpcError as error:
            code = error.code().name if error.code() else "UNKNOWN"
            details = error.details() or ""
            if error.code() == grpc.StatusCode.UNAVAILABLE and "connect" in details:
                details = f"{name} is not reachable at {runtime.run_dir}/{name}.api.sock; is it running?"
            span.set_status(Status(StatusCode.ERROR, f"{code}: {details}"))
            span.set_attribute("rpc.grpc.status_code", code)
            raise ServiceError(name, method, code, details) from None
        finally:
            span.end()


class PolicyManagerProxy(_Proxy):
    kind = "policy-mgr"
    service = "PolicyManager"

    def check(self, method: str = "GET", url: str = "/", client: str = "", headers: dict | None = None,
              categories: list[str] | None = None, body: bytes = b"") -> PolicyDecision:
        """Whether the request may proceed, by policy-mgr's rules (first match wins), then its
        policy_check handler; `body` (e.g. a response's) is that handler's event.payload."""
        if isinstance(body, str):
            body = body.encode()
        request = pb.PolicyCheckRequest(method=method, url=url, client=client, headers=headers or {},
                                        categories=categories or [], body=bytes(body))
        answer = self._call("Check", "check", request)
        return PolicyDecision(_DECISIONS.get(answer.decision, "allow"), answer.rule, answer.reason)


class ContentInspectProxy(_Proxy):
    kind = "content-inspect"
    service = "ContentInspect"

    def inspect(self, body: bytes = b"", content_type: str = "application/octet-stream") -> InspectResult:
        """The body's type and categories from its bytes, its size and SHA-256."""
        if isinstance(body, str):
            body = body.encode()
        answer = self._call("Inspect", "inspect", pb.InspectRequest(content_type=content_type, body=bytes(body)))
        return InspectResult(list(answer.categories), answer.needs_scan, answer.size, answer.sniffed_type,
                             answer.sha256, _DECISIONS.get(answer.decision, "allow"), answer.reason)


class AntiVirusProxy(_Proxy):
    kind = "anti-virus"
    service = "AntiVirus"

    def scan(self, body: bytes = b"", name: str = "") -> ScanResult:
        """Scans the body with ClamAV."""
        if isinstance(body, str):
            body = body.encode()
        answer = self._call("Scan", "scan", pb.ScanRequest(name=name, body=bytes(body)))
        return ScanResult(answer.infected, answer.signature, answer.engine, _DECISIONS.get(answer.decision, "allow"),
                          answer.reason)


class HttpProxyProxy(_Proxy):
    kind = "http-proxy"
    service = "HttpProxy"

    def get_session(self, cookie: str | int | None = None) -> Session:
        """The client session http-proxy keeps for `cookie` (the current one by default)."""
        request = pb.GetSessionRequest()
        invocation = _runtime.current("http_proxy.get_session()")
        wanted = invocation.cookie if cookie is None else (int(cookie, 16) if isinstance(cookie, str) else cookie)
        request.cookie = wanted
        answer = self._call("GetSession", "get_session", request)
        return Session(cookie_hex(answer.cookie), answer.client, answer.origin, answer.method, answer.url,
                       dict(answer.headers), answer.started_at_ns)


policy_mgr = PolicyManagerProxy()
content_inspect = ContentInspectProxy()
anti_virus = AntiVirusProxy()
http_proxy = HttpProxyProxy()
