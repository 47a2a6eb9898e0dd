"""The sidecar's work: attach to the μsrv's EventStream, run each event's handler on a worker
thread inside a span whose parent is the μsrv's event span, answer sync events with the handler's
verdict — or, when the handler raises, hangs past the event's timeout, returns something that is
not a verdict or cannot be imported, with no decision (the μsrv applies the event's default at
once) and an ERROR span saying where. Reattaches when the μsrv restarts."""

from __future__ import annotations

import heapq
import itertools
import logging
import sys
import threading
import time
import traceback

import grpc
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from edgetrail.sdk import runtime as sdk_runtime
from edgetrail.sdk.context import Context, Event, HandlerSpan, make_log
from edgetrail.sdk.session import COOKIE_KEY, TraceParent, cookie_hex
from edgetrail.sdk.state import State
from edgetrail.sdk.verdict import Verdict
from edgetrail.sidecar.handlers import HandlerFile, innermost_in, innermost_line
from edgetrail.sidecar.pool import WorkerPool
from edgetrail.v1 import microservices_pb2 as pb
from edgetrail.v1 import microservices_pb2_grpc as rpc

log = logging.getLogger("edgetrail.sidecar")

_DECISION = {"allow": pb.VERDICT_DECISION_ALLOW, "deny": pb.VERDICT_DECISION_DENY}


class _Pending:
    """One event between its arrival and its verdict (or its end, for async events)."""

    __slots__ = ("wire", "handler", "span", "deadline", "outgoing", "generation", "lock", "done", "started",
                 "thread", "hung", "received")

    def __init__(self, wire, handler, span, deadline, outgoing, generation):
        self.wire = wire
        self.handler = handler
        self.span = span
        self.deadline = deadline
        self.outgoing = outgoing
        self.generation = generation
        self.lock = threading.Lock()
        self.done = False
        self.started = False
        self.thread = None
        self.hung = False
        self.received = time.monotonic()


class Sidecar:
    def __init__(self, runtime: sdk_runtime.Runtime, handlers: dict[str, HandlerFile], workers: int = 32,
                 watch_interval: float = 0.5, out=None):
        self.runtime = runtime
        self.handlers = handlers
        self.socket = f"{runtime.run_dir}/{runtime.microservice}.events.sock"
        self.pool = WorkerPool(workers)
        self.watch_interval = watch_interval
        self._out = out or sys.stdout
        self._print_lock = threading.Lock()
        self._stopping = threading.Event()
        self._generation = 0
        self._call = None
        self._deadlines: list = []
        self._deadline_serial = itertools.count()
        self._deadline_wake = threading.Condition()
        self.failed: str | None = None

    # --- output ------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        with self._print_lock:
            try:
                print(line, file=self._out, flush=True)
            except (OSError, ValueError):  # nobody reads our stdout any more: the log still has it
                log.info("%s", line)

    # --- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Runs until `stop`; returns the exit status."""
        threads = [threading.Thread(target=self._connect_loop, name="attach", daemon=True),
                   threading.Thread(target=self._watch_deadlines, name="deadlines", daemon=True),
                   threading.Thread(target=self._watch_files, name="files", daemon=True)]
        for thread in threads:
            thread.start()
        while not self._stopping.wait(1.0):
            pass
        call = self._call
        if call is not None:
            call.cancel()
        with self._deadline_wake:
            self._deadline_wake.notify_all()
        threads[0].join(5)
        self.pool.close()
        self.runtime.close()
        return 2 if self.failed else 0

    def stop(self) -> None:
        self._stopping.set()

    def check_files(self) -> None:
        for handler in self.handlers.values():
            line = handler.refresh()
            if line:
                self.say(line)

    def _watch_files(self):
        while not self._stopping.wait(self.watch_interval):
            try:
                self.check_files()
            except Exception:  # noqa: BLE001 - a watcher hiccup must not stop the sidecar
                log.exception("checking handler files")

    # --- the event stream --------------------------------------------------------------------
    def _connect_loop(self):
        backoff = 0.1
        name = self.runtime.microservice
        said_waiting = False
        while not self._stopping.is_set():
            channel = grpc.insecure_channel(f"unix:{self.socket}")
            outgoing = _Outgoing()
            self._generation += 1
            generation = self._generation
            outgoing.put(pb.HandlerMessage(subscribe=pb.Subscribe(
                events=sorted(self.handlers),
                handler=",".join(handler.name for _, handler in sorted(self.handlers.items())))))
            call = rpc.EventStreamStub(channel).Attach(iter(outgoing.get, None))
            self._call = call
            attached = False
            try:
                for message in call:
                    if message.subscribed:
                        attached = True
                        backoff = 0.1
                        said_waiting = False
                        self.say(f"attached {name} events={','.join(message.subscribed)} socket={self.socket}")
                        continue
                    try:
                        self._dispatch(message, outgoing, generation)
                    except Exception:  # noqa: BLE001 - one bad event must not end the stream
                        log.exception("could not hand event %s (%s) to its handler", message.id, message.name)
                        if message.sync:
                            outgoing.put(pb.HandlerMessage(verdict=pb.Verdict(
                                event_id=message.id, decision=pb.VERDICT_DECISION_UNSPECIFIED,
                                reason="the sidecar could not run the handler (see its log)")))
                if not self._stopping.is_set():
                    self.say(f"detached {name}: it ended the event stream; reattaching")
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    break
                code = error.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    self.failed = f"{name} refused the subscription: {error.details()}"
                    self.say(f"error: {self.failed}")
                    self._stopping.set()
                    break
                if attached:
                    self.say(f"detached {name}: {error.details() or code.name}; reattaching")
                elif not said_waiting:
                    self.say(f"waiting for {name}: nothing serves {self.socket} yet")
                    said_waiting = True
            finally:
                outgoing.put(None)
                channel.close()
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, 2.0)

    def _dispatch(self, wire, outgoing, generation):
        handler = self.handlers.get(wire.name)
        parent = TraceParent.parse(wire.traceparent)
        context = None
        if parent is not None:
            context = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                parent.trace_id, parent.span_id, is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT))))
        span = self.runtime.tracer.start_span(
            f"handler {wire.name}", context=context if context is not None else OtelContext(),
            kind=SpanKind.CONSUMER,
            attributes={COOKIE_KEY: cookie_hex(wire.cookie), "edgetrail.event": wire.name,
                        "edgetrail.event.id": wire.id, "edgetrail.handler": handler.name if handler else "",
                        "code.filepath": handler.path if handler else ""})
        deadline = None
        if wire.sync and wire.timeout_ms:
            # The μsrv's clock started when it raised the event.
            waited = max(0.0, time.time() - wire.at_ns / 1e9) if wire.at_ns else 0.0
            deadline = time.monotonic() + max(0.0, wire.timeout_ms / 1000 - waited)
        pending = _Pending(wire, handler, span, deadline, outgoing, generation)
        if deadline is not None:
            with self._deadline_wake:
                heapq.heappush(self._deadlines, (deadline, next(self._deadline_serial), pending))
                self._deadline_wake.notify()
        self.pool.submit(lambda: self._run(pending))

    # --- one event ---------------------------------------------------------------------------
    def _run(self, pending: _Pending):
        with pending.lock:
            if pending.done:
                return  # its time was up while it waited for a worker
            pending.started = True
            pending.thread = threading.get_ident()
        handler = pending.handler
        if handler is None:
            self._fail(pending, "", f"no handler for {pending.wire.name}")
            return
        handle, problem, version = handler.current()
        pending.span.set_attribute("edgetrail.handler.version", version)
        if handle is None:
            self._fail(pending, problem.where, problem.message, problem.details)
            return
        event = Event.from_wire(pending.wire)
        span = HandlerSpan(pending.span)
        runtime = self.runtime
        ctx = Context(event=event, state=State(runtime.redis_client, pending.wire.cookie, runtime.microservice),
                      span=span, log=make_log(handler.name, span, event.cookie), settings=runtime.settings,
                      microservice=runtime.microservice, cnf=runtime.cnf)
        token = sdk_runtime.enter(sdk_runtime.Invocation(runtime, pending.wire.cookie, pending.span, pending.deadline))
        try:
            with trace.use_span(pending.span, end_on_exit=False, record_exception=False,
                                set_status_on_exception=False):
                result = handle(event, ctx)
        except BaseException as error:  # noqa: BLE001 - whatever a handler raises is reported, not fatal
            line = innermost_line(error.__traceback__, handler.path)
            self._fail(pending, f"{handler.path}:{line or 1}", f"{type(error).__name__}: {error}",
                       "".join(traceback.format_exception(error)), error)
            return
        finally:
            sdk_runtime.leave(token)
        if result is None:
            result = Verdict.allow()
        if not isinstance(result, Verdict):
            line = getattr(getattr(handle, "__code__", None), "co_firstlineno", 1)
            self._fail(pending, f"{handler.path}:{line}",
                       f"handle returned {result!r} ({type(result).__name__}), not a Verdict or None")
            return
        self._finish(pending, result)

    def _claim(self, pending: _Pending) -> bool:
        """Marks the event answered; False when it already was (its time ran out first)."""
        with pending.lock:
            if pending.done:
                late = True
            else:
                pending.done = True
                late = False
        if late and pending.hung:
            self.pool.returned_from_hang()
            log.warning("handler %s returned %.0f ms after its timeout; its verdict was dropped",
                        pending.handler.name if pending.handler else "?",
                        (time.monotonic() - pending.deadline) * 1000 if pending.deadline else 0)
        return not late

    def _send(self, pending: _Pending, decision: int, reason: str, annotations: dict | None = None):
        if not pending.wire.sync or pending.generation != self._generation:
            return  # async, or the stream it came on is gone (the μsrv applied the default)
        pending.outgoing.put(pb.HandlerMessage(verdict=pb.Verdict(
            event_id=pending.wire.id, decision=decision, reason=reason, annotations=annotations or {})))

    def _finish(self, pending: _Pending, verdict: Verdict):
        if not self._claim(pending):
            return
        span = pending.span
        if pending.wire.sync:
            self._send(pending, _DECISION[verdict.decision], verdict.reason, verdict.annotations)
            span.set_attribute("edgetrail.verdict", verdict.decision)
            if verdict.reason:
                span.set_attribute("edgetrail.verdict.reason", verdict.reason)
        elif verdict.denied:
            span.set_attribute("edgetrail.verdict.ignored", f"{pending.wire.name} is not a sync event; deny has no effect")
        span.end()

    def _fail(self, pending: _Pending, where: str, message: str, details: str = "", error=None,
              default_reason: str = "handler_failed", claimed: bool = False):
        if not claimed and not self._claim(pending):
            return
        account = f"{where}: {message}" if where else message
        if default_reason != "timed_out":  # a timeout the μsrv sees itself, and counts as such
            self._send(pending, pb.VERDICT_DECISION_UNSPECIFIED, account)
        span = pending.span
        span.set_status(Status(StatusCode.ERROR, account))
        span.set_attribute("edgetrail.handler.error", account)
        if where:
            file, _, line = where.partition(":")
            span.set_attribute("code.filepath", file)
            if line.split(":")[0].isdigit():
                span.set_attribute("code.lineno", int(line.split(":")[0]))
        if pending.wire.sync:
            span.set_attribute("edgetrail.verdict", "deny" if pending.wire.default_decision == pb.VERDICT_DECISION_DENY
                               else "allow")
            span.set_attribute("edgetrail.verdict.default", default_reason)
        attributes = {"exception.type": type(error).__name__ if error else default_reason,
                      "exception.message": account}
        if details:
            attributes["exception.stacktrace"] = details
        span.add_event("exception", attributes)
        span.end()
        log.warning("%s [%s]: %s", pending.wire.name, cookie_hex(pending.wire.cookie), account)

    # --- deadlines ---------------------------------------------------------------------------
    def _watch_deadlines(self):
        while not self._stopping.is_set():
            with self._deadline_wake:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    if self._deadlines and self._deadlines[0][0] <= now:
                        _, _, pending = heapq.heappop(self._deadlines)
                        break
                    self._deadline_wake.wait(self._deadlines[0][0] - now if self._deadlines else 1.0)
                else:
                    return
            if not pending.done:
                self._expire(pending)

    def _expire(self, pending: _Pending):
        with pending.lock:
            if pending.done:
                return
            pending.done = True
            started, thread = pending.started, pending.thread
            pending.hung = started
        timeout = pending.wire.timeout_ms
        handler = pending.handler
        if not started:
            waited = (time.monotonic() - pending.received) * 1000
            self._fail(pending, "", f"no worker was free within the {timeout} ms timeout (waited {waited:.0f} ms; "
                       f"{self.pool.hung} handlers hung)", default_reason="timed_out", claimed=True)
            return
        frame = sys._current_frames().get(thread)
        stack = traceback.extract_stack(frame) if frame is not None else traceback.StackSummary()
        line = innermost_in(stack, handler.path) if handler else None
        where = f"{handler.path}:{line}" if handler and line else (handler.path if handler else "")
        self._fail(pending, where, f"timed out after {timeout} ms (still running there)",
                   "Stack of the handler when its time was up:\n" + "".join(stack.format()),
                   default_reason="timed_out", claimed=True)
        # Its thread is stuck in the handler; another takes its place.
        self.pool.declare_hung()


class _Outgoing:
    """The messages to the μsrv; `get` blocks the gRPC request iterator until there is one."""

    def __init__(self):
        import queue

        self._queue = queue.SimpleQueue()

    def put(self, message):
        self._queue.put(message)

    def get(self):
        return self._queue.get()
