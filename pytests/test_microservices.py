"""The sample μsrvs as processes, with real parts: an HTTP request through http-proxy (explicit
mode) to the origin, a handler on the proxy's event stream that asks policy-mgr (standing in for
the handler sidecar: it carries the event's cookie and traceparent on its call), and the spans,
Redis state and verdicts reconstructed at central through the collector and the broker."""

import os
import queue
import signal
import threading
import time
import uuid

import grpc
import pytest

from collector_harness import Central, Collector, Services, terminate
from edgetrail.v1 import microservices_pb2, microservices_pb2_grpc
from pod_harness import edgetrail, fetch, field


@pytest.fixture
def services():
    started = Services()
    yield started
    started.close()


def start(args, log_path):
    """Starts an `edgetrail` process and waits for its ready line; returns (Popen, line)."""
    process, line = edgetrail(args, log_path)
    return process.process, line


class PolicyHandler:
    """Attached to http-proxy's request_received: asks policy-mgr, answers with its decision."""

    def __init__(self, run_dir):
        self.events = grpc.insecure_channel(f"unix:{run_dir}/http-proxy.events.sock")
        self.policy = microservices_pb2_grpc.PolicyManagerStub(grpc.insecure_channel(f"unix:{run_dir}/policy-mgr.api.sock"))
        self.outgoing = queue.Queue()
        self.outgoing.put(microservices_pb2.HandlerMessage(
            subscribe=microservices_pb2.Subscribe(events=["request_received"], handler="test_policy.py")))
        stream = microservices_pb2_grpc.EventStreamStub(self.events).Attach(iter(self.outgoing.get, None))
        self.thread = threading.Thread(target=self.serve, args=(stream,), daemon=True)
        self.thread.start()

    def serve(self, stream):
        try:
            for event in stream:
                if event.subscribed:
                    continue  # the μsrv confirming the subscription
                metadata = [("edgetrail-cookie", f"{event.cookie:016x}"), ("traceparent", event.traceparent)]
                decision = self.policy.Check(microservices_pb2.PolicyCheckRequest(
                    method=event.attributes["http.method"], url=event.attributes["http.url"],
                    client=event.attributes["client"]), metadata=metadata)
                self.outgoing.put(microservices_pb2.HandlerMessage(verdict=microservices_pb2.Verdict(
                    event_id=event.id, decision=decision.decision, reason=decision.reason)))
        except grpc.RpcError:
            pass

    def close(self):
        self.outgoing.put(None)
        self.events.close()


def test_a_request_through_proxy_and_policy_mgr_is_one_span_tree_at_central(services):
    topic = f"ms-{uuid.uuid4().hex[:8]}"
    run_dir = os.path.join(services.run_dir, "pod")
    collector = Collector(services, topic, settle="1s")
    central = Central(services, topic, f"sqlite:{services.run_dir}/central.sqlite")
    config = os.path.join(services.run_dir, "policy-mgr.yaml")
    with open(config, "w") as file:
        file.write("policy:\n  rules:\n    - name: no-admin\n      action: deny\n"
                   "      reason: admin pages are internal\n      paths: [\"/admin*\"]\n")
    common = ["--cnf", "edgesecurity", "--run-dir", run_dir, "--redis", f"127.0.0.1:{services.redis_port}",
              "--otlp", collector.endpoint]
    processes = []
    handler = None
    try:
        origin, line = start(["origin", "--listen", "127.0.0.1:0"], os.path.join(services.run_dir, "origin.log"))
        processes.append(origin)
        origin_address = field(line, "listen")
        policy, _ = start(["microservice", "run", "policy-mgr", "--name", "policy-mgr", "--config", config, *common],
                          os.path.join(services.run_dir, "policy-mgr.log"))
        processes.append(policy)
        proxy, line = start(["microservice", "run", "http-proxy", "--name", "http-proxy", "--listen", "127.0.0.1:0",
                             "--upstream", origin_address, *common], os.path.join(services.run_dir, "http-proxy.log"))
        processes.append(proxy)
        assert field(line, "api") == f"{run_dir}/http-proxy.api.sock"
        proxy_url = f"http://{field(line, 'listen')}"
        handler = PolicyHandler(run_dir)
        time.sleep(0.5)  # the subscription reaches the proxy

        status, headers, body = fetch(f"{proxy_url}/admin/users")
        assert status == 403
        denied = headers["edgetrail-cookie"]
        assert b"admin pages are internal" in body and denied.encode() in body
        status, headers, body = fetch(f"{proxy_url}/")
        assert status == 200 and b"The origin" in body
        allowed = headers["edgetrail-cookie"]

        # An event with no handler attached (policy_check, response_received, response_sent here)
        # is counted, not traced: four spans.
        timeline = central.wait_for(allowed, {"spans": 4, "snapshots": 3})
        spans = {span["operation"]: span for span in timeline["spans"]}
        root = spans["HTTP GET"]
        assert root["parentSpanId"] == ""
        assert root["service"] == "http-proxy"
        assert root["tags"]["http.status_code"] == "200"
        event = spans["event request_received"]
        assert event["parentSpanId"] == root["spanId"]
        assert event["tags"]["edgetrail.verdict"] == "allow"
        # policy-mgr's span is a child of the event its caller handled: one tree across processes.
        check = spans["PolicyManager/Check"]
        assert check["parentSpanId"] == event["spanId"] and check["service"] == "policy-mgr"
        assert check["tags"]["edgetrail.cookie"] == allowed
        assert "event policy_check" not in spans
        assert spans["upstream GET"]["parentSpanId"] == root["spanId"]
        assert {span["traceId"] for span in timeline["spans"]} == {root["traceId"]}
        keys = {snapshot["key"] for snapshot in timeline["snapshots"]}
        assert {f"cookie:{allowed}:http-proxy:request", f"cookie:{allowed}:http-proxy:response",
                f"cookie:{allowed}:policy-mgr:check"} <= keys

        blocked = central.wait_for(denied, {"spans": 3})
        denied_spans = {span["operation"]: span for span in blocked["spans"]}
        assert denied_spans["event request_received"]["tags"]["edgetrail.verdict.reason"] == "admin pages are internal"
        assert "upstream GET" not in denied_spans, "a denied request never reaches the origin"

        text = central.trace(allowed)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        at = {name: next(line for line in lines if f" {name} [" in line) for name in
              ("HTTP GET", "event request_received", "PolicyManager/Check")}
        assert at["event request_received"].index("event") == at["HTTP GET"].index("HTTP") + 2
        assert at["PolicyManager/Check"].index("PolicyManager") == at["event request_received"].index("event") + 2
    finally:
        if handler:
            handler.close()
        for process in reversed(processes):
            terminate(process)
        collector.stop()
        central.stop()
    # SIGTERM stops each μsrv cleanly, and it removes its sockets.
    assert all(process.returncode == 0 for process in processes)
    assert not os.path.exists(f"{run_dir}/http-proxy.api.sock")


def test_sigterm_while_a_handler_holds_a_sync_event_answers_the_client_and_exits(services):
    """A μsrv stopping with a request waiting for a handler that never answers: the request gets
    its default verdict (and the origin's answer), the handler's stream ends with `unavailable`,
    and the process exits 0 at once, removing its sockets."""
    run_dir = os.path.join(services.run_dir, "pod")
    origin, line = start(["origin", "--listen", "127.0.0.1:0"], os.path.join(services.run_dir, "origin.log"))
    try:
        proxy, line = start(["microservice", "run", "http-proxy", "--name", "http-proxy", "--cnf", "t",
                             "--run-dir", run_dir, "--listen", "127.0.0.1:0", "--upstream", field(line, "listen"),
                             "--redis", f"127.0.0.1:{services.redis_port}", "--otlp", f"{run_dir}/no-collector.sock"],
                            os.path.join(services.run_dir, "http-proxy.log"))
        url = f"http://{field(line, 'listen')}/"
        outgoing = queue.Queue()
        outgoing.put(microservices_pb2.HandlerMessage(
            subscribe=microservices_pb2.Subscribe(events=["request_received"], handler="stuck.py")))
        channel = grpc.insecure_channel(f"unix:{run_dir}/http-proxy.events.sock")
        stream = microservices_pb2_grpc.EventStreamStub(channel).Attach(iter(outgoing.get, None))
        seen, ended = [], []

        def handler():
            try:
                for event in stream:
                    if not event.subscribed:
                        seen.append(event)  # and never answers
            except grpc.RpcError as error:
                ended.append(error.code())

        threading.Thread(target=handler, daemon=True).start()
        time.sleep(0.5)
        answer = {}
        client = threading.Thread(target=lambda: answer.update(result=fetch(url)))
        client.start()
        deadline = time.time() + 10
        while not seen and time.time() < deadline:
            time.sleep(0.05)
        assert seen, "the request reached the handler"
        started = time.time()
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=30) == 0
        assert time.time() - started < 10
        client.join(10)
        status, _, body = answer["result"]
        assert status == 200 and b"The origin" in body
        deadline = time.time() + 5
        while not ended and time.time() < deadline:
            time.sleep(0.05)
        assert ended == [grpc.StatusCode.UNAVAILABLE]
        assert not os.path.exists(f"{run_dir}/http-proxy.events.sock")
        outgoing.put(None)
        channel.close()
    finally:
        terminate(origin)
