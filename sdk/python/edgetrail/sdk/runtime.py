"""Where a handler runs: its μsrv, the CNF's other μsrvs and their sockets, Redis, and the tracer
whose spans go to the node's collector. The sidecar configures it once; a script or a test may
call `configure` itself."""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass, field

import grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from .otlp import OTLPSpanProcessor

KINDS = ("http-proxy", "policy-mgr", "content-inspect", "anti-virus")
DEFAULT_REDIS = "127.0.0.1:16379"
DEFAULT_OTLP = "127.0.0.1:4317"


class SDKError(Exception):
    """The SDK cannot do what was asked; the message says why and what to do."""


@dataclass
class Runtime:
    microservice: str
    run_dir: str
    cnf: str = ""
    # The CNF's μsrvs: name -> kind.
    peers: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    redis: str = DEFAULT_REDIS
    otlp: str | None = DEFAULT_OTLP
    provider: TracerProvider | None = None
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)
    _redis_client: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        if self.provider is None:
            resource = Resource.create({
                "service.name": f"{self.microservice}.handlers",
                "edgetrail.cnf": self.cnf,
                "edgetrail.microservice": self.microservice,
            })
            self.provider = TracerProvider(resource=resource)
            if self.otlp:
                endpoint = f"unix://{self.otlp}" if self.otlp.startswith("/") else self.otlp
                # A short export deadline: the collector is on the same node, and a sidecar that
                # stops must not wait long on one that is gone.
                self.provider.add_span_processor(OTLPSpanProcessor(endpoint, resource.attributes, timeout=2.0))
        self.tracer = self.provider.get_tracer("edgetrail.sdk")

    # --- the CNF's μsrvs -------------------------------------------------------------------
    def peer(self, kind: str, name: str | None = None) -> str:
        """The name of the CNF's μsrv of `kind` (or `name`, which must be of that kind)."""
        described = ", ".join(f"{peer} ({peer_kind})" for peer, peer_kind in sorted(self.peers.items())) or "none"
        if name is not None:
            if self.peers.get(name) != kind:
                raise SDKError(f"the CNF {self.cnf or '(unnamed)'} has no {kind} μsrv named '{name}'; its μsrvs: {described}")
            return name
        named = sorted(peer for peer, peer_kind in self.peers.items() if peer_kind == kind)
        if not named:
            raise SDKError(f"the CNF {self.cnf or '(unnamed)'} has no {kind} μsrv; its μsrvs: {described}")
        if len(named) > 1:
            attribute = kind.replace("-", "_")
            raise SDKError(f"the CNF {self.cnf or '(unnamed)'} has {len(named)} {kind} μsrvs ({', '.join(named)}); "
                           f"say which: {attribute}.on('{named[0]}')")
        return named[0]

    def channel(self, name: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(name)
            if channel is None:
                channel = grpc.insecure_channel(f"unix:{self.run_dir}/{name}.api.sock")
                self._channels[name] = channel
            return channel

    def redis_client(self):
        with self._lock:
            if self._redis_client is None:
                import redis

                if self.redis.startswith("/"):
                    self._redis_client = redis.Redis(unix_socket_path=self.redis, decode_responses=True)
                else:
                    host, _, port = self.redis.rpartition(":")
                    self._redis_client = redis.Redis(host=host or "127.0.0.1", port=int(port), decode_responses=True)
            return self._redis_client

    def close(self):
        """Sends what spans are left and closes the connections."""
        if self.provider is not None:
            self.provider.force_flush(2000)
            self.provider.shutdown()
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            if self._redis_client is not None:
                self._redis_client.close()


_runtime: Runtime | None = None


def configure(microservice: str, run_dir: str, **options) -> Runtime:
    """Sets where handlers run (the sidecar does this); returns the runtime."""
    global _runtime
    _runtime = Runtime(microservice=microservice, run_dir=run_dir, **options)
    return _runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise SDKError("the SDK is not configured: handlers run in the sidecar "
                       "(python -m edgetrail.sidecar), or call edgetrail.sdk.configure(...) first")
    return _runtime


@dataclass
class Invocation:
    """One handler call for one event: its session, its span, and when its time is up."""

    runtime: Runtime
    cookie: int
    span: object  # the OpenTelemetry span
    deadline: float | None  # time.monotonic() by which a sync event's verdict is due

    def remaining(self, default: float = 5.0) -> float:
        if self.deadline is None:
            return default
        return max(0.001, self.deadline - time.monotonic())


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("edgetrail_invocation", default=None)


def current(what: str) -> Invocation:
    invocation = _current.get()
    if invocation is None:
        raise SDKError(f"{what} needs a session: call it from a handler's handle(event, ctx), "
                       "which the sidecar runs for one session's event")
    return invocation


def enter(invocation: Invocation | None) -> contextvars.Token:
    return _current.set(invocation)


def leave(token: contextvars.Token) -> None:
    _current.reset(token)
