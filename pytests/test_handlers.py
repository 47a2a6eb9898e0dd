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


def write_spec(directory, handlers, timeout="400ms", microservices=("http-proxy",)):
    """A CNF spec in `directory` binding http-proxy's request_received (and any other
    {event: file} in `handlers`, files relative to `directory`) with `timeout`."""
    os.makedirs(os.path.join(directory, "handlers"), exist_ok=True)
    lines = ["name: edgesecurity", "node: edge-1", "microservices:"]
    lines += [f"  - {{ name: {name}, kind: {name} }}" for name in microservices]
    lines.append("handlers:")
    for (owner, event), file in handlers.items():
        lines.append(f"  - {{ microservice: {owner}, event: {event}, file: {file}, timeout: {timeout} }}")
    path = os.path.join(directory, "cnf.yaml")
    with open(path, "w") as spec:
        spec.write("\n".join(lines) + "\n")
    return path


def replace(path, text):
    """Writes a new version of a handler file in place (as an editor saving it)."""
    with open(path, "w") as file:
        file.write(text)


def handler_pod(services, source, timeout="400ms", otlp=None):
    """A pod whose CNF binds http-proxy's request_received to one handler file with `source`;
    returns the pod (not started) and the file's path."""
    directory = os.path.join(services.run_dir, "cnf")
    handler = os.path.join(directory, "handlers", "handler.py")
    spec = write_spec(directory, {("http-proxy", "request_received"): "handlers/handler.py"}, timeout=timeout)
    replace(handler, source)
    return Pod(services, otlp or os.path.join(services.run_dir, "no-collector.sock"), cnf=spec), handler


def test_a_failing_handler_gets_the_default_verdict_and_an_error_span_and_edits_are_reloaded(services, traced):
    _, central = traced
    # It cannot even be imported.
    pod, handler = handler_pod(services, "from edgetrail.sdk import Verdict\n\ndef handle(event, ctx)\n"
                                         "    return Verdict.allow()\n", otlp=traced[0].endpoint)
    try:
        _, line = pod.microservice("http-proxy")
        proxy = f"http://{field(line, 'listen')}"
        sidecar = pod.sidecar("http-proxy", {"request_received": handler})
        assert any("cannot run" in seen and "handler.py:3:" in seen for seen in sidecar.seen)

        def request(path="/"):
            status, headers, _ = fetch(f"{proxy}{path}")
            return status, headers["edgetrail-cookie"]

        def version(number):
            sidecar.wait_for(f"handler handler.py (request_received) reloaded: version {number}")

        cookies = {}
        status, cookies["import"] = request()
        assert status == 200, "the default verdict (allow) applies"
        replace(handler, "from edgetrail.sdk import Verdict\n\n\ndef handle(event, ctx):\n"
                         "    return 1 / 0\n")
        version(1)
        status, cookies["raise"] = request()
        assert status == 200
        replace(handler, "def handle(event, ctx):\n    return 'deny'\n")
        version(2)
        status, cookies["no verdict"] = request()
        assert status == 200
        replace(handler, "import time\n\n\ndef handle(event, ctx):\n    time.sleep(3)\n")
        version(3)
        started = time.monotonic()
        status, cookies["hang"] = request()
        assert status == 200 and time.monotonic() - started < 3, "the timeout (400 ms) applied, not the sleep"
        replace(handler, "from edgetrail.sdk import Verdict\n\ndef handle(event, ctx):\n"
                         "    return Verdict.deny(reason='closed for maintenance')\n")
        version(4)
        status, cookies["deny"] = request()
        assert status == 403
        # A version that does not import is refused; the one in use stays.
        replace(handler, "def handle(event, ctx):\n    return Verdict.allow(\n")
        line = sidecar.wait_for("handler handler.py (request_received) not reloaded")
        assert "version 4 stays" in line and "handler.py:2:" in line and "SyntaxError" in line
        status, cookies["kept"] = request()
        assert status == 403
    finally:
        pod.close()

    def handler_span(cookie):
        spans = by_operation(central.wait_for(cookie, {"spans": 3}))
        return spans["event request_received"], spans["handler request_received"]

    expectations = {
        "import": ("handler_failed", "handler.py:3:", "SyntaxError"),
        "raise": ("handler_failed", "handler.py:5:", "ZeroDivisionError: division by zero"),
        "no verdict": ("handler_failed", "handler.py:1:", "handle returned 'deny' (str), not a Verdict or None"),
        "hang": ("timed_out", "handler.py:5:", "timed out after 400 ms"),
    }
    for case, (reason, where, message) in expectations.items():
        event, span = handler_span(cookies[case])
        assert span["status"] == "error", case
        error = span["tags"]["edgetrail.handler.error"]
        assert where in error and message in error, (case, error)
        assert span["tags"]["edgetrail.verdict.default"] == reason, case
        assert event["tags"]["edgetrail.verdict"] == "allow", case
        assert event["tags"]["edgetrail.verdict.default"] == reason, case
        assert span["parentSpanId"] == event["spanId"]
    _, span = handler_span(cookies["raise"])
    stack = next(log for log in span["logs"] if log["name"] == "exception")["fields"]["exception.stacktrace"]
    assert "line 5, in handle" in stack and "ZeroDivisionError" in stack
    _, span = handler_span(cookies["hang"])
    stack = next(log for log in span["logs"] if log["name"] == "exception")["fields"]["exception.stacktrace"]
    assert "time.sleep(3)" in stack, "the span shows where the handler hung"
    for case in ("deny", "kept"):
        _, span = handler_span(cookies[case])
        assert span["tags"]["edgetrail.verdict.reason"] == "closed for maintenance" and span["status"] != "error"


def test_a_slow_handler_for_one_session_does_not_delay_the_others(services):
    pod, handler = handler_pod(services, "import time\n\ndef handle(event, ctx):\n"
                                   "    if 'slow=1' in event.attributes['http.url']:\n        time.sleep(3)\n",
                         timeout="10s")
    try:
        _, line = pod.microservice("http-proxy")
        proxy = f"http://{field(line, 'listen')}"
        pod.sidecar("http-proxy", {"request_received": handler})
        took = {}

        def timed(path):
            started = time.monotonic()
            status, _, _ = fetch(f"{proxy}{path}", timeout=30)
            took[path] = (status, time.monotonic() - started)

        clients = [threading.Thread(target=timed, args=("/?slow=1",))]
        clients += [threading.Thread(target=timed, args=(f"/?session={n}",)) for n in range(49)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        assert len(took) == 50 and all(status == 200 for status, _ in took.values())
        slow = took.pop("/?slow=1")[1]
        others = sorted(seconds for _, seconds in took.values())
        p99 = others[int(len(others) * 0.99) - 1]
        assert slow >= 3
        assert p99 < 3, f"the other 49 sessions' p99 was {p99:.2f} s (median {statistics.median(others):.3f} s)"
    finally:
        pod.close()


def test_the_sidecar_attaches_again_when_its_microservice_restarts(services):
    pod, handler = handler_pod(services, "from edgetrail.sdk import Verdict\n\ndef handle(event, ctx):\n"
                                         "    if '/admin' in event.attributes['http.url']:\n"
                                         "        return Verdict.deny(reason='internal')\n")
    try:
        proxy_process, line = pod.microservice("http-proxy")
        sidecar = pod.sidecar("http-proxy", {"request_received": handler})
        assert fetch(f"http://{field(line, 'listen')}/admin")[0] == 403
        assert proxy_process.stop() == 0
        sidecar.wait_for("detached http-proxy")
        time.sleep(1)  # it keeps trying while nothing serves the socket
        _, line = pod.microservice("http-proxy")
        sidecar.wait_for("attached http-proxy")
        assert fetch(f"http://{field(line, 'listen')}/admin")[0] == 403
        assert fetch(f"http://{field(line, 'listen')}/")[0] == 200
        assert sidecar.process.poll() is None
    finally:
        pod.close()
    assert sidecar.process.returncode == 0, "SIGTERM stops the sidecar cleanly"


def test_the_sidecar_stops_on_sigterm_while_waiting_for_its_microservice_and_while_a_handler_hangs(services):
    pod, handler = handler_pod(services, "import time\n\ndef handle(event, ctx):\n    time.sleep(60)\n", timeout="10s")
    from pod_harness import Process
    import sys
    waiting = Process([sys.executable, "-m", "edgetrail.sidecar", "--microservice", "http-proxy", "--run-dir",
                       pod.run_dir, "--otlp", "none", "--handler", f"request_received={handler}"],
                      os.path.join(services.run_dir, "waiting.log"))
    waiting.wait_for("waiting for http-proxy")
    started = time.monotonic()
    assert waiting.stop() == 0 and time.monotonic() - started < 10
    try:
        _, line = pod.microservice("http-proxy")
        sidecar = pod.sidecar("http-proxy", {"request_received": handler})
        client = threading.Thread(target=fetch, args=(f"http://{field(line, 'listen')}/", 30), daemon=True)
        client.start()
        time.sleep(1)  # the handler is asleep in its event now
        started = time.monotonic()
        assert sidecar.stop() == 0 and time.monotonic() - started < 10
        client.join(15)
        assert not client.is_alive(), "the request got its default verdict when the handler left"
    finally:
        pod.close()
