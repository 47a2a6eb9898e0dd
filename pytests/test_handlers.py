"""The handler SDK and sidecar with real parts: the example CNF's μsrvs as processes in front of a
real origin, its Python handlers in sidecars, Redis, the collector, the broker and central. What
is asserted is what an operator sees: the client's answers, the session's reconstruction at
central (one span tree across Swift and Python, parent by parent), and the handlers' state."""

import os
import shutil
import statistics
import threading
import time
import uuid

import pytest

from collector_harness import Central, Collector, Services
from pod_harness import EXAMPLE, Pod, fetch, field


@pytest.fixture
def services():
    started = Services()
    yield started
    started.close()


@pytest.fixture
def traced(services):
    """A collector shipping to the broker and central reading from it."""
    topic = f"handlers-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="1s")
    central = Central(services, topic, f"sqlite:{services.run_dir}/central.sqlite")
    yield collector, central
    collector.stop()
    central.stop()


@pytest.fixture
def pod(services, traced):
    collector, _ = traced
    started = Pod(services, collector.endpoint)
    yield started
    started.close()


def by_operation(timeline):
    return {span["operation"]: span for span in timeline["spans"]}


def test_the_example_handlers_decide_and_their_calls_are_one_span_tree(services, traced, pod):
    _, central = traced
    handlers = EXAMPLE / "handlers"
    pod.microservice("policy-mgr", None, "--config", str(EXAMPLE / "policy-mgr.yaml"))
    pod.microservice("content-inspect")
    _, line = pod.microservice("http-proxy")
    proxy = f"http://{field(line, 'listen')}"
    pod.sidecar("http-proxy", {"request_received": handlers / "on_request.py",
                               "response_sent": handlers / "on_response.py"})
    pod.sidecar("content-inspect", {"inspect_done": handlers / "on_inspect.py"})

    # on_request.py asks policy-mgr, whose rule denies /admin*: the handler's deny is the answer.
    status, headers, body = fetch(f"{proxy}/admin/users")
    assert status == 403 and b"admin pages are internal" in body
    denied = headers["edgetrail-cookie"]
    status, headers, body = fetch(f"{proxy}/")
    assert status == 200 and b"The origin" in body
    cookie = headers["edgetrail-cookie"]

    timeline = central.wait_for(cookie, {"spans": 12})
    spans = by_operation(timeline)
    root = spans["HTTP GET"]
    assert root["parentSpanId"] == "" and root["service"] == "http-proxy"
    # μsrv event span → handler span → SDK call span → the called μsrv's span, parent by parent.
    chain = [("event request_received", "http-proxy"), ("handler request_received", "http-proxy.handlers"),
             ("policy_mgr.check", "http-proxy.handlers"), ("PolicyManager/Check", "policy-mgr")]
    parent = root
    for operation, service in chain:
        span = spans[operation]
        assert span["parentSpanId"] == parent["spanId"], f"{operation} hangs below {parent['operation']}"
        assert span["service"] == service and span["tags"]["edgetrail.cookie"] == cookie
        parent = span
    assert spans["handler request_received"]["tags"]["edgetrail.verdict"] == "allow"
    assert spans["event request_received"]["tags"]["edgetrail.verdict"] == "allow"
    assert spans["handler request_received"]["tags"]["code.filepath"].endswith("on_request.py")
    # After the response: on_response.py hands the body to content-inspect, whose inspect_done
    # event runs on_inspect.py in the other sidecar; the categories come back as a tag.
    chain = [("event response_sent", "http-proxy"), ("handler response_sent", "http-proxy.handlers"),
             ("content_inspect.inspect", "http-proxy.handlers"), ("ContentInspect/Inspect", "content-inspect"),
             ("event inspect_done", "content-inspect"), ("handler inspect_done", "content-inspect.handlers")]
    parent = root
    for operation, service in chain:
        span = spans[operation]
        assert span["parentSpanId"] == parent["spanId"], f"{operation} hangs below {parent['operation']}"
        assert span["service"] == service
        parent = span
    assert spans["handler response_sent"]["tags"]["content.categories"] == "html"
    assert {span["traceId"] for span in timeline["spans"]} == {root["traceId"]}
    assert all(span["status"] != "error" for span in timeline["spans"])

    # The handlers' state, under the session's keys, snapshotted into the session.
    timeline = central.wait_for(cookie, {"snapshots": 5})
    snapshots = {snapshot["key"]: snapshot["value"] for snapshot in timeline["snapshots"]}
    assert snapshots[f"cookie:{cookie}:http-proxy:last_policy"] == "default"
    assert snapshots[f"cookie:{cookie}:content-inspect:inspected"] == "html"

    blocked = by_operation(central.wait_for(denied, {"spans": 5}))
    assert blocked["handler request_received"]["tags"]["edgetrail.verdict"] == "deny"
    assert blocked["handler request_received"]["tags"]["edgetrail.verdict.reason"] == "admin pages are internal"
    assert "upstream GET" not in blocked

    # `edgetrail trace` draws the same tree: each step indented below its parent.
    text = central.trace(cookie)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    column = {name: next(line for line in lines if f" {name} [" in line).index(name) for name in
              ("event request_received", "handler request_received", "policy_mgr.check", "PolicyManager/Check")}
    assert column["handler request_received"] == column["event request_received"] + 2
    assert column["policy_mgr.check"] == column["handler request_received"] + 2
    assert column["PolicyManager/Check"] == column["policy_mgr.check"] + 2
