"""Runs the real parts for collector tests: redis-server and the broker through
`edgetrail infra up` (private run directory, free ports), and `edgetrail collector` as a
subprocess with a generated pipeline file."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sdk" / "python"))

import grpc  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402

from edgetrail.v1 import telemetry_pb2  # noqa: E402


def edgetrail_binary():
    path = ROOT / ".build" / "debug" / "edgetrail"
    if not path.exists():
        raise RuntimeError(f"{path} is missing; run `make build` first")
    return str(path)


def wait_until(predicate, seconds=30, what="the condition"):
    """The first true value of `predicate()`, polled every 0.2 s; fails naming `what` after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(process):
    """SIGTERM (a graceful shutdown), SIGKILL if it takes longer than 30 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Services:
    """redis + broker in a private run directory, stopped on close."""

    def __init__(self):
        self.run_dir = tempfile.mkdtemp(prefix="et-py-", dir="/tmp")
        os.chmod(self.run_dir, 0o755)
        self.redis_port = free_port()
        self.broker_port = free_port()
        self._cli("up", "--only", "redis", "broker")

    @property
    def brokers(self):
        return f"127.0.0.1:{self.broker_port}"

    def _cli(self, *args):
        subprocess.run(
            [edgetrail_binary(), "infra", *args, "--run-dir", self.run_dir,
             "--redis-port", str(self.redis_port), "--broker-port", str(self.broker_port)],
            check=True, capture_output=True, text=True)

    def restart_broker_empty(self, while_down=None):
        """Stops the broker (its topics are in memory: they are gone) and starts a new one."""
        self._cli("down", "--only", "broker")
        if while_down:
            while_down()
        self._cli("up", "--only", "broker")

    def broker_pid(self):
        # The pid file holds the pid, then the port the broker was started on.
        return int(pathlib.Path(self.run_dir, "broker.pid").read_text().split()[0])

    def redis_cli(self, *args):
        subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], check=True, capture_output=True)

    def close(self):
        self._cli("down")
        if not os.environ.get("EDGETRAIL_KEEP_RUN"):
            subprocess.run(["rm", "-rf", self.run_dir], check=False)


class Collector:
    """`edgetrail collector` with a generated pipeline file; restartable, killable."""

    def __init__(self, services, topic, settle="300ms", idle="5s", flows=None, max_request="4MiB",
                 no_cookie="bucket", rules=None, hold="2s", name="collector", node="edge-test", partitions=None,
                 flow_rate=None, published=None):
        self.services = services
        self.topic = topic
        self.otlp_port = free_port()
        self.metrics_port = free_port()
        self.data_dir = os.path.join(services.run_dir, name)
        self.config = os.path.join(services.run_dir, f"{name}.yaml")
        rate = f"    rate: {flow_rate}\n" if flow_rate is not None else ""
        flow_source = f"  flows:\n    replay: {flows}\n{rate}" if flows else ""
        partition_setting = f"    partitions: {partitions}\n" if partitions else ""
        # published: (control topic, rule set name, status topic) of a rule set published centrally.
        filters = "filters:\n" if rules or published else ""
        if rules:
            filters += f"  files: [{rules}]\n"
        if published:
            filters += (f"  kafka:\n    topic: {published[0]}\n    name: {published[1]}\n"
                        f"    status_topic: {published[2]}\n")
        pathlib.Path(self.config).write_text(f"""
collector:
  cnf: edgesecurity
  node: {node}
  data_dir: {self.data_dir}
sources:
  otlp:
    listen: 127.0.0.1:{self.otlp_port}
    socket: {services.run_dir}/{name}-otlp.sock
    max_request_bytes: {max_request}
    no_cookie: {no_cookie}
    hold_without_cookie: {hold}
  snapshots:
    redis: 127.0.0.1:{services.redis_port}
{flow_source}{filters}join:
  idle_timeout: {idle}
  settle: {settle}
  grace: 2s
sinks:
  kafka:
    brokers: {services.brokers}
    topic: {topic}
{partition_setting}metrics:
  listen: 127.0.0.1:{self.metrics_port}
""")
        self.process = None
        self.log = open(os.path.join(services.run_dir, f"{name}.log"), "ab")
        self.start()

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.otlp_port}"

    def start(self):
        self.process = subprocess.Popen(
            [edgetrail_binary(), "collector", "--config", self.config, "--log-level", "notice"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"collector exited with {self.process.returncode}; see {self.log.name}")
            try:
                self.metrics()
                with socket.create_connection(("127.0.0.1", self.otlp_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("collector did not come up within 30 s")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            return response.read().decode()

    def metric(self, name, labels=""):
        key = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_metric(self, name, labels="", at_least=1.0, seconds=10):
        """The metric's value once it reaches `at_least` (metrics are published every 250 ms)."""
        deadline = time.time() + seconds
        value = self.metric(name, labels)
        while value < at_least and time.time() < deadline:
            time.sleep(0.1)
            value = self.metric(name, labels)
        return value

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        terminate(self.process)
        self.log.close()


def consume(brokers, topic, until, seconds=60, group=None):
    """Reads CookieBatches from the topic's start until `until(batches)` is true or time is up."""
    consumer = Consumer({
        "bootstrap.servers": brokers, "group.id": group or f"check-{time.time_ns()}",
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
    })
    consumer.subscribe([topic])
    batches = []
    deadline = time.time() + seconds
    try:
        while time.time() < deadline and not until(batches):
            message = consumer.poll(0.3)
            if message is None or message.error():
                continue
            batch = telemetry_pb2.CookieBatch.FromString(message.value())
            assert message.key().decode() == f"{batch.cookie:016x}", "message key is the cookie as 16 hex digits"
            batches.append(batch)
    finally:
        consumer.close()
    return batches


class Central:
    """`edgetrail central` on a store, consuming the topic; queried over HTTP and with `trace`."""

    def __init__(self, services, topic, store, group="central", extra=(), name="central"):
        self.services = services
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [edgetrail_binary(), "central", "--brokers", services.brokers, "--topic", topic,
                     "--store", store, "--group", group, "--listen", f"127.0.0.1:{self.port}",
                     "--log-level", "notice", *extra]
        self.log = open(os.path.join(services.run_dir, f"{name}.log"), "ab")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"central exited with {self.process.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("central did not come up within 30 s")

    def get(self, path):
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def metric(self, line_prefix):
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(line_prefix + " "):
                    return float(line.split()[-1])
        return 0.0

    def trace(self, cookie, *args):
        return subprocess.run([edgetrail_binary(), "trace", cookie, "--central", self.url, *args],
                              capture_output=True, text=True)

    def wait_for(self, cookie, kinds, seconds=60):
        """The cookie's timeline once it has at least `kinds` (e.g. {"spans": 3, "flows": 1})."""
        deadline = time.time() + seconds
        body = None
        while time.time() < deadline:
            status, body = self.get(f"/v1/cookies/{cookie}")
            if status == 200 and all(len(body[kind]) >= count for kind, count in kinds.items()):
                return body
            time.sleep(0.3)
        raise AssertionError(f"cookie {cookie} did not reach {kinds} within {seconds} s: {body}")

    def stop(self):
        terminate(self.process)
        self.log.close()


def export_sessions(endpoint, cookies, spans_per_cookie):
    """Exports spans_per_cookie spans (one root) per cookie straight over OTLP/gRPC."""
    channel = grpc.insecure_channel(endpoint)
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    sent = 0
    for cookie in cookies:
        trace_id = os.urandom(16)
        root_id = os.urandom(8)
        for index in range(spans_per_cookie):
            span = scope.spans.add()
            span.trace_id = trace_id
            span.span_id = root_id if index == 0 else os.urandom(8)
            if index:
                span.parent_span_id = root_id
            span.name = f"op{index}"
            span.start_time_unix_nano = time.time_ns()
            span.end_time_unix_nano = span.start_time_unix_nano + 1000
            span.attributes.add(key="edgetrail.cookie").value.string_value = f"{cookie:016x}"
        if len(scope.spans) >= 500:
            stub.Export(request, timeout=30)
            sent += len(scope.spans)
            del scope.spans[:]
    if len(scope.spans):
        stub.Export(request, timeout=30)
        sent += len(scope.spans)
    channel.close()
    return sent
