"""The whole telemetry spine with real parts: OpenTelemetry SDK spans, Redis changes and replayed
flow events -> collector -> broker -> central (SQLite, and PostgreSQL when root) -> `edgetrail
trace`."""

import os
import subprocess
import time
import uuid

import pytest

from collector_harness import Central, Collector, Services, edgetrail_binary, free_port, wait_until
from helpers.send_spans import send

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDING = os.path.join(ROOT, "collectors", "testdata", "flows.jsonl")
COOKIE = "00000000000000a1"  # the cookie of the recorded flow


@pytest.fixture
def services():
    started = Services()
    yield started
    started.close()


def check_timeline(central):
    body = central.wait_for(COOKIE, {"spans": 3, "flows": 1, "snapshots": 1})
    assert body["cookie"] == COOKIE and body["cnf"] == "edgesecurity"
    spans = {span["operation"]: span for span in body["spans"]}
    assert spans["request"]["parentSpanId"] == ""
    assert spans["policy_check"]["parentSpanId"] == spans["request"]["spanId"]
    assert spans["inspect"]["parentSpanId"] == spans["request"]["spanId"]
    assert spans["inspect"]["status"] == "error"
    assert spans["request"]["tags"]["http.url"] == "/index.html?user=alice"
    flow = body["flows"][0]
    assert (flow["src"], flow["dst"], flow["sport"], flow["dport"], flow["proto"], flow["action"]) == (
        "10.200.0.2", "10.201.0.2", 41000, 80, "tcp", "redirect")
    assert (flow["bytesIn"], flow["bytesOut"], flow["packetsIn"], flow["packetsOut"]) == (420, 5120, 6, 8)
    assert flow["endNs"] - flow["startNs"] == 12_000_000
    assert body["snapshots"][0]["key"] == f"cookie:{COOKIE}:anti-virus:verdict"
    assert body["snapshots"][0]["value"] == {"infected": "yes", "signature": "Eicar-Test-Signature"}
    kinds = {entry["kind"] for entry in body["timeline"]}
    assert kinds == {"span-start", "span-end", "flow-start", "flow-end", "snapshot"}
    times = [entry["atNs"] for entry in body["timeline"]]
    assert times == sorted(times)
    return body


def run_spine(services, store):
    topic = f"spine-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="1s", flows=RECORDING)
    central = Central(services, topic, store)
    try:
        services.redis_cli("HSET", f"cookie:{COOKIE}:anti-virus:verdict", "infected", "yes",
                           "signature", "Eicar-Test-Signature")
        send(collector.endpoint, COOKIE, error=True)
        services.redis_cli("SET", "cookie:00000000000000a9:http-proxy:state", "open")
        check_timeline(central)
        only_snapshots = central.wait_for("00000000000000a9", {"snapshots": 1})
        assert only_snapshots["cnf"] == "edgesecurity", "a cookie seen only in Redis names the collector's CNF"

        text = central.trace(COOKIE)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"cookie {COOKIE}  cnf edgesecurity  3 spans, 1 flows, 1 snapshots")
        request = next(line for line in lines if " request [" in line)
        check = next(line for line in lines if " policy_check [" in line)
        # Children are indented one step deeper than their parent, with durations.
        assert check.index("policy_check") == request.index("request") + 2
        assert check.rstrip().endswith(" ms")
        assert any("flow start  tcp 10.200.0.2:41000 -> 10.201.0.2:80 redirect" in line for line in lines)
        assert any(f"snapshot    cookie:{COOKIE}:anti-virus:verdict" in line for line in lines)
        assert any("inspect" in line and line.endswith("ERROR") for line in lines)

        as_json = central.trace(COOKIE, "--format", "json")
        assert as_json.returncode == 0 and '"cookie":"00000000000000a1"' in as_json.stdout

        status, listing = central.get("/v1/cookies?cnf=edgesecurity&error=true&limit=10")
        assert status == 200 and [c["cookie"] for c in listing["cookies"]] == [COOKIE]
        status, listing = central.get("/v1/cookies?service=nobody")
        assert status == 200 and listing["cookies"] == []
    finally:
        collector.stop()
    return topic, central


def test_the_spine_reconstructs_a_session_from_all_three_kinds_into_sqlite(services):
    store = f"sqlite:{services.run_dir}/central.sqlite"
    topic, central = run_spine(services, store)
    try:
        # Everything read again (a new consumer group from the start): nothing is stored twice.
        inserted = central.metric('edgetrail_central_records_total{outcome="inserted"}')
        central.stop()
        again = Central(services, topic, store, group="replay")
        try:
            deadline = time.time() + 60
            while time.time() < deadline and again.metric('edgetrail_central_records_total{outcome="duplicate"}') < inserted:
                time.sleep(0.3)
            assert again.metric('edgetrail_central_records_total{outcome="duplicate"}') == inserted
            assert again.metric('edgetrail_central_records_total{outcome="inserted"}') == 0
            check_timeline(again)
        finally:
            again.stop()
    finally:
        central.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as the postgres user, which needs root")
def test_the_spine_works_the_same_with_postgresql(services):
    pg_port = free_port()
    subprocess.run([edgetrail_binary(), "infra", "up", "--only", "postgres", "--run-dir", services.run_dir,
                    "--postgres-port", str(pg_port)], check=True, capture_output=True)
    try:
        _, central = run_spine(services, f"postgres://postgres@127.0.0.1:{pg_port}/edgetrail")
        central.stop()
    finally:
        subprocess.run([edgetrail_binary(), "infra", "down", "--only", "postgres", "--run-dir",
                        services.run_dir, "--postgres-port", str(pg_port)], check=False, capture_output=True)


def test_trace_explains_what_is_wrong(services):
    central = Central(services, "empty-topic", f"sqlite:{services.run_dir}/c.sqlite")
    try:
        missing = central.trace("00000000000000ff")
        assert missing.returncode == 1 and "no records for cookie 00000000000000ff" in missing.stderr
        bad = central.trace("xyz")
        assert bad.returncode != 0 and "16 hex digits" in bad.stderr
        status, body = central.get("/v1/cookies/not-a-cookie")
        assert status == 400 and "16 hex digits" in body["error"]
        status, body = central.get("/v1/cookies?limit=0")
        assert status == 400
        with_path = subprocess.run([edgetrail_binary(), "trace", COOKIE, "--central", central.url + "/v1"],
                                   capture_output=True, text=True)
        assert with_path.returncode == 1
        assert ("answered 404 Not Found; central's address is its base address, like http://127.0.0.1:7070, "
                "without a path; give --central that address") in with_path.stderr, with_path.stderr
    finally:
        central.stop()
    unreachable = subprocess.run([edgetrail_binary(), "trace", COOKIE, "--central", "http://127.0.0.1:9"],
                                 capture_output=True, text=True)
    assert unreachable.returncode == 1 and "cannot reach central" in unreachable.stderr


def test_central_deletes_sessions_older_than_its_retention_and_keeps_the_rest(services):
    from confluent_kafka import Producer
    from edgetrail.v1 import telemetry_pb2

    topic = f"retain-{uuid.uuid4().hex[:8]}"
    central = Central(services, topic, f"sqlite:{services.run_dir}/retain.sqlite",
                      extra=("--retain", "1h", "--retention-interval", "0.5"))
    try:
        producer = Producer({"bootstrap.servers": services.brokers})
        now = time.time_ns()
        for cookie, at in ((0xA1, now - 2 * 3600 * 10**9), (0xA2, now)):
            batch = telemetry_pb2.CookieBatch(cookie=cookie, cnf="edgesecurity", node="edge-1", final=True)
            record = batch.records.add()
            record.cookie = cookie
            record.service = "http-proxy"
            record.span.trace_id = cookie.to_bytes(16, "big")
            record.span.span_id = cookie.to_bytes(8, "big")
            record.span.operation = "HTTP GET"
            record.span.start_ns = at
            record.span.end_ns = at + 1_000_000
            producer.produce(topic, key=f"{cookie:016x}".encode(), value=batch.SerializeToString())
        assert producer.flush(15) == 0
        central.wait_for("00000000000000a2", {"spans": 1})
        wait_until(lambda: central.metric("edgetrail_central_sessions_expired_total") >= 1, 30,
                   "central to delete the two-hour-old session")
        assert central.get("/v1/cookies/00000000000000a1")[0] == 404
        assert central.get("/v1/cookies/00000000000000a2")[0] == 200
        assert central.metric("edgetrail_central_sessions_expired_total") == 1
        # Its partitions and how far behind it is, on /metrics.
        wait_until(lambda: central.metric("edgetrail_central_partitions") >= 1, 15, "central to report its partitions")
        assert central.metric("edgetrail_central_lag") == 0
        bad = subprocess.run([edgetrail_binary(), "central", "--retain", "7 days"], capture_output=True, text=True)
        assert bad.returncode != 0 and "--retain '7 days' is not a duration; write it like 7d, 12h, 30m or 90s" in bad.stderr
    finally:
        central.stop()
