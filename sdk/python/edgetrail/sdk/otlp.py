"""Spans to the node's collector over OTLP/gRPC, encoded as each one ends.

OpenTelemetry's own exporter encodes a whole batch at once on its thread (~30 µs a span, through
a message object per attribute), holding the GIL for tens of milliseconds: a handler woken during
that time waits for the GIL again and again, which was most of a handler's p99. Here a span is
written straight to OTLP's wire form when it ends (~10 µs, on the thread that ended it, after the
verdict has gone), and the sending thread only joins bytes and hands them to gRPC, whose call
runs without the GIL.

While the collector is unreachable, encoded spans wait in a bounded queue (the oldest go first,
counted) and the failure is logged once per 10 s, not once per attempt.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time

import grpc
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

log = logging.getLogger("edgetrail.sdk.otlp")

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

# OTLP's Span.kind numbers (opentelemetry/proto/trace/v1/trace.proto).
_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the payload."""
    return tag + _varint(len(payload)) + payload


def _any_value(value) -> bytes:
    """An AnyValue (a oneof: a set member is written even when it is empty or zero)."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, (bytes, bytearray)):
        return _field(b"\x3a", bytes(value))
    if isinstance(value, (tuple, list)):
        # ArrayValue: repeated AnyValue values = 1.
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(item)) for item in value))
    return _field(b"\x0a", str(value).encode())


def _key_values(tag: bytes, attributes) -> bytes:
    """Repeated KeyValue fields (key = 1, value = 2) under `tag`."""
    if not attributes:
        return b""
    return b"".join(
        _field(tag, _field(b"\x0a", key.encode()) + _field(b"\x12", _any_value(value)))
        for key, value in attributes.items())


def encode_span(span: ReadableSpan) -> bytes:
    """One OTLP Span message (field numbers as in trace.proto)."""
    context = span.context
    parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big"), b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    if span.parent is not None:
        parts.append(b"\x22\x08" + span.parent.span_id.to_bytes(8, "big"))
    parts.append(_field(b"\x2a", span.name.encode()))
    parts.append(b"\x30" + _varint(_KIND.get(span.kind, 1)))
    parts.append(b"\x39" + _FIXED64.pack(span.start_time or 0))
    parts.append(b"\x41" + _FIXED64.pack(span.end_time or span.start_time or 0))
    parts.append(_key_values(b"\x4a", span.attributes))
    for event in span.events:
        parts.append(_field(b"\x5a", b"\x09" + _FIXED64.pack(event.timestamp or 0) + _field(b"\x12", event.name.encode())
                            + _key_values(b"\x1a", event.attributes)))
    code = _STATUS.get(span.status.status_code, 0)
    if code:
        status = (_field(b"\x12", span.status.description.encode()) if span.status.description else b"") + b"\x18" + _varint(code)
        parts.append(_field(b"\x7a", status))
    return b"".join(parts)


def export_request(resource_attributes, scope: str, spans: list[bytes]) -> bytes:
    """An ExportTraceServiceRequest of already-encoded spans under one resource and scope."""
    scope_spans = _field(b"\x0a", _field(b"\x0a", scope.encode())) + b"".join(_field(b"\x12", span) for span in spans)
    resource_spans = _field(b"\x0a", _key_values(b"\x0a", resource_attributes)) + _field(b"\x12", scope_spans)
    return _field(b"\x0a", resource_spans)


class OTLPSpanProcessor(SpanProcessor):
    """Encodes each span as it ends and sends them in batches from a thread of its own."""

    def __init__(self, endpoint: str, resource_attributes: dict, scope: str = "edgetrail.sdk",
                 batch_size: int = 512, interval: float = 0.2, capacity: int = 20_000, timeout: float = 2.0):
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.interval = interval
        self.capacity = capacity
        self.timeout = timeout
        self.dropped = 0
        self.exported = 0
        self._resource = dict(resource_attributes)
        self._scope = scope
        self._queue: collections.deque[bytes] = collections.deque()
        # A batch the collector did not take, sent again after a pause that grows (up to 5 s).
        self._unsent: list[bytes] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._idle = threading.Event()
        self._idle.set()
        self._last_warning = 0.0
        self._channel = grpc.insecure_channel(endpoint)
        # Bytes in, bytes out: the request is already encoded, the (empty) response is not read.
        self._export = self._channel.unary_unary(EXPORT_METHOD)
        self._thread = threading.Thread(target=self._run, name="edgetrail-otlp", daemon=True)
        self._thread.start()

    def on_start(self, span, parent_context=None):
        pass

    def on_end(self, span: ReadableSpan):
        if not span.context.trace_flags.sampled:
            return
        encoded = encode_span(span)
        with self._wake:
            self._queue.append(encoded)
            if len(self._queue) > self.capacity:
                self._queue.popleft()
                self.dropped += 1
            if len(self._queue) >= self.batch_size:
                self._wake.notify()

    def _take(self) -> list[bytes]:
        with self._wake:
            count = min(len(self._queue), self.batch_size)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self):
        pause = self.interval
        while True:
            with self._wake:
                if self._unsent and not self._stopping:
                    self._wake.wait(pause)  # the collector did not take the last batch: back off
                elif not self._stopping and len(self._queue) < self.batch_size:
                    self._wake.wait(self.interval)
                stopping = self._stopping
                self._idle.clear()
            try:
                while True:
                    batch = self._unsent or self._take()
                    if not batch:
                        break
                    try:
                        self._export(export_request(self._resource, self._scope, batch), timeout=self.timeout)
                    except grpc.RpcError as error:
                        self._unsent = batch
                        pause = min(pause * 2, 5.0)
                        self._warn(error)
                        break
                    self.exported += len(batch)
                    self._unsent = []
                    pause = self.interval
                    # A short batch waits for the interval (a call per span would cost more).
                    if not stopping and len(self._queue) < self.batch_size:
                        break
            finally:
                self._idle.set()
            if stopping:
                with self._wake:
                    self.dropped += len(self._unsent) + len(self._queue)
                    self._queue.clear()
                return

    def _warn(self, error):
        now = time.monotonic()
        if now - self._last_warning >= 10:
            self._last_warning = now
            code = error.code().name if hasattr(error, "code") else "?"
            log.warning("cannot send spans to the collector at %s (%s); they wait in a queue of %d",
                        self.endpoint, code, self.capacity)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        while time.monotonic() < deadline:
            with self._wake:
                if not self._queue and not self._unsent and self._idle.is_set():
                    return True
                self._wake.notify()
            time.sleep(0.01)
        return False

    def shutdown(self):
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(self.timeout + 1)
        self._channel.close()
