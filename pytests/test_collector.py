"""The edge collector with the real parts: the OpenTelemetry Python SDK exporting over
OTLP/gRPC, redis-server, replayed flow events, the broker, and an independent consumer
(confluent-kafka on the librdkafka 2.16 runtime) decoding batches with the committed schema."""

import os
import signal
import socket
import subprocess
import time
import uuid

import grpc
import pytest
from google.protobuf import json_format

from collector_harness import Collector, Services, consume, export_sessions
from edgetrail.v1 import telemetry_pb2
from helpers.send_spans import send
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@pytest.fixture
def services():
    started = Services()
    yield started
    started.close()


def flow_recording(path, cookie):
    """Writes a flow start and end for one connection of `cookie`, as the datapath records them."""
    lines = []
    for phase, extra in ((telemetry_pb2.FLOW_PHASE_START, {}),
                         (telemetry_pb2.FLOW_PHASE_END, {"bytes_in": 420, "bytes_out": 5120, "packets_in": 6,
                                                         "packets_out": 8, "lost_events": 3})):
        event = telemetry_pb2.FlowEvent(phase=phase, action=1, start_ns=time.time_ns(), **extra)
        event.tuple.src_ip = bytes([10, 200, 0, 2])
        event.tuple.dst_ip = bytes([10, 201, 0, 2])
        event.tuple.src_port = 41000
        event.tuple.dst_port = 80
        event.tuple.protocol = 6
        message = {"cookie": str(cookie), "node": "edge-test", "event": json_format.MessageToDict(event)}
        import json
        lines.append(json.dumps(message))
    with open(path, "w") as out:
        out.write("# recorded flow events\n" + "\n".join(lines) + "\n")


def kinds(batches):
    return sorted(record.WhichOneof("kind") for batch in batches for record in batch.records)


def test_spans_flows_and_snapshots_of_one_cookie_arrive_together_with_the_span_tree_intact(services):
    cookie = 0x00000000000000A1
    recording = os.path.join(services.run_dir, "flows.jsonl")
    flow_recording(recording, cookie)
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="1s", flows=recording)
    try:
        services.redis_cli("HSET", f"cookie:{cookie:016x}:http-proxy:session", "state", "open")
        send(collector.endpoint, f"{cookie:016x}")
        batches = consume(services.brokers, topic, lambda got: len(kinds(got)) >= 6)
        assert {batch.cookie for batch in batches} == {cookie}
        assert kinds(batches) == ["flow", "flow", "snapshot", "span", "span", "span"]
        batch = batches[0]
        assert batch.cnf == "edgesecurity" and batch.node == "edge-test" and batch.final
        spans = {record.span.operation: record.span for record in batch.records if record.HasField("span")}
        root = spans["request"]
        assert root.parent_span_id == b""
        assert spans["policy_check"].parent_span_id == root.span_id
        assert spans["inspect"].parent_span_id == root.span_id
        assert len({span.trace_id for span in spans.values()}) == 1
        assert spans["policy_check"].tags["policy.rule"] == "allow-web"
        assert spans["inspect"].logs[0].name == "scanned"
        flows = [record.flow for record in batch.records if record.HasField("flow")]
        assert flows[-1].bytes_out == 5120 and flows[-1].tuple.dst_port == 80
        snapshot = next(record.snapshot for record in batch.records if record.HasField("snapshot"))
        assert snapshot.hash_fields.fields["state"] == b"open"
        # The datapath's lost events are carried through to the metrics.
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="flows",event="datapath_lost_events"', at_least=3) == 3
    finally:
        collector.stop()


def test_a_collector_killed_with_sigkill_loses_nothing_it_accepted(services):
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    # A long settle keeps the sessions in the join (memory) when the collector is killed.
    collector = Collector(services, topic, settle="30s", idle="60s")
    cookies = [0x0000000000C00000 + index for index in range(40)]
    try:
        for cookie in cookies:
            send(collector.endpoint, f"{cookie:016x}")
        assert collector.wait_metric("edgetrail_collector_records_in_total", 'source="otlp"',
                                     at_least=3 * len(cookies)) == 3 * len(cookies)
        assert collector.metric("edgetrail_collector_batches_out_total") == 0
        collector.kill()
        # Restarted with a short settle: the journal hands the accepted records back to the join.
        collector.stop()
        collector = Collector(services, topic, settle="200ms")
        batches = consume(services.brokers, topic, lambda got: {b.cookie for b in got} >= set(cookies))
        assert {batch.cookie for batch in batches} == set(cookies)
        spans = {(batch.cookie, record.span.span_id) for batch in batches for record in batch.records}
        assert len(spans) == 3 * len(cookies), "every accepted span arrived"
    finally:
        collector.stop()


def test_garbage_and_oversized_requests_are_refused_and_the_collector_keeps_working(services):
    topic = f"garbage-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, max_request="64KiB")
    try:
        # Bytes that are not HTTP/2 on the OTLP port.
        with socket.create_connection(("127.0.0.1", collector.otlp_port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(4096))
            sock.settimeout(5)
            try:
                sock.recv(1024)
            except OSError:
                pass
        # An export request larger than max_request_bytes.
        channel = grpc.insecure_channel(collector.endpoint)
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.name = "huge"
        span.attributes.add(key="blob").value.string_value = "x" * 200_000
        with pytest.raises(grpc.RpcError) as refused:
            stub.Export(request, timeout=10)
        # The gRPC transport resets the stream once the message passes the limit (clients see
        # CANCELLED from the RST_STREAM) or answers RESOURCE_EXHAUSTED; either way it is refused.
        assert refused.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED)
        # Bytes that are not an export request, in a well-formed gRPC call.
        garbage = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                      request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
        with pytest.raises(grpc.RpcError) as unreadable:
            garbage(b"\xff\xff\xff\xff garbage", timeout=10)
        assert unreadable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        channel.close()
        # Each refusal is counted and logged: the connection that is not HTTP/2 and the oversized
        # export (both refused by the transport before any RPC exists), and the unreadable export.
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="otlp",event="connection_not_http2"') == 1
        # (gRPC clients may send the reset request once more on their own: each arrival counts.)
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="otlp",event="export_too_large"') >= 1
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="otlp",event="export_unreadable"') == 1
        log = open(collector.log.name).read()
        assert "refused a connection to the OTLP port that does not speak HTTP/2 (gRPC)" in log
        assert "refused an OTLP export larger than max_request_bytes" in log
        assert "refused an OTLP export that is not a readable ExportTraceServiceRequest" in log
        # Still alive and still shipping.
        assert collector.process.poll() is None
        send(collector.endpoint, "00000000000000b2")
        batches = consume(services.brokers, topic, lambda got: any(b.cookie == 0xB2 for b in got))
        assert any(batch.cookie == 0xB2 for batch in batches)
        # An ordinary export on a new connection is not taken for a refusal.
        too_large = collector.metric("edgetrail_collector_source_events_total", 'source="otlp",event="export_too_large"')
        send(collector.endpoint, "00000000000000b3")
        consume(services.brokers, topic, lambda got: any(b.cookie == 0xB3 for b in got))
        assert collector.metric("edgetrail_collector_source_events_total",
                                'source="otlp",event="connection_not_http2"') == 1
        assert collector.metric("edgetrail_collector_source_events_total",
                                'source="otlp",event="export_too_large"') == too_large
    finally:
        collector.stop()


def test_spans_without_a_cookie_are_counted_and_kept_in_the_no_cookie_bucket(services):
    topic = f"nocookie-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, no_cookie="bucket")
    try:
        channel = grpc.insecure_channel(collector.endpoint)
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.name = "orphan"
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
        stub.Export(request, timeout=10)
        channel.close()
        batches = consume(services.brokers, topic, lambda got: len(got) > 0, seconds=30)
        assert [batch.cookie for batch in batches] == [0]
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="otlp",event="span_without_cookie_bucketed"') == 1
    finally:
        collector.stop()


def test_a_cookie_larger_than_a_kafka_message_arrives_in_pieces_and_a_record_too_large_is_refused_and_counted(services):
    topic = f"oversize-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="500ms", idle="20s", max_request="8MiB")
    store = f"sqlite:{services.run_dir}/central.sqlite"
    from collector_harness import Central
    central = Central(services, topic, store)
    cookie, lone = 0x00000000000000E1, 0x00000000000000E2
    try:
        # A 20 MB Redis value: kept cut to max_value_bytes with its full size.
        value = os.path.join(services.run_dir, "value.bin")
        with open(value, "wb") as out:
            out.write(b"v" * (20 << 20))
        with open(value, "rb") as source:
            subprocess.run(["redis-cli", "-p", str(services.redis_port), "-x", "SET",
                            f"cookie:{cookie:016x}:content-inspect:body"], stdin=source, check=True,
                           capture_output=True)

        # 10,000 spans of one cookie in one export: ~3 MB, three times a Kafka message.
        channel = grpc.insecure_channel(collector.endpoint, options=[("grpc.max_send_message_length", 16 << 20)])
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request = trace_service_pb2.ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        trace_id, root_id = os.urandom(16), os.urandom(8)
        for index in range(10_000):
            span = scope.spans.add(trace_id=trace_id, span_id=root_id if index == 0 else os.urandom(8),
                                   name=f"op{index}", start_time_unix_nano=time.time_ns())
            span.end_time_unix_nano = span.start_time_unix_nano + 1000
            if index:
                span.parent_span_id = root_id
            span.attributes.add(key="edgetrail.cookie").value.string_value = f"{cookie:016x}"
            span.attributes.add(key="http.url").value.string_value = "http://10.201.0.2/" + "p" * 200
        response = stub.Export(request, timeout=60)
        assert response.partial_success.rejected_spans == 0
        # One 4 MB span: under max_request_bytes, over any message: refused at intake, and the
        # exporter is told so.
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add(
            trace_id=os.urandom(16), span_id=os.urandom(8), name="huge")
        span.attributes.add(key="edgetrail.cookie").value.string_value = f"{lone:016x}"
        span.attributes.add(key="blob").value.string_value = "x" * (4 << 20)
        response = stub.Export(request, timeout=60)
        assert response.partial_success.rejected_spans == 1
        assert "larger than the collector ships in one message" in response.partial_success.error_message
        channel.close()
        def spans(got):
            return sum(1 for batch in got if batch.cookie == cookie for record in batch.records
                       if record.HasField("span"))
        batches = consume(services.brokers, topic, lambda got: spans(got) >= 10_000, seconds=90)
        mine = [batch for batch in batches if batch.cookie == cookie]
        assert spans(batches) == 10_000, "every span of the cookie arrives"
        assert len(mine) >= 3, "the cookie's batch went out as several messages"
        assert all(batch.ByteSize() + 16 <= 1_000_000 for batch in mine), "each under the message limit"
        assert sorted(batch.seq for batch in mine) == list(range(len(mine)))
        assert all(batch.cookie != lone for batch in batches)
        assert collector.wait_metric("edgetrail_collector_records_dropped_total",
                                     'stage="intake",reason="too_large"') == 1
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="snapshots",event="value_truncated"') == 1
        assert "refused a record too large for any Kafka message" in open(collector.log.name).read()
        # Central joins the pieces: one session of 10,000 spans and the cut snapshot.
        body = central.wait_for(f"{cookie:016x}", {"spans": 10_000, "snapshots": 1}, seconds=90)
        snapshot = body["snapshots"][0]
        assert snapshot["fullSize"] == 20 << 20 and len(snapshot["value"]) == 64 << 10
        text = central.trace(f"{cookie:016x}").stdout
        assert "(cut by the collector: the value has 20971520 bytes)" in text
        # Nothing is wedged in the spool: a restart starts and ships at once.
        collector.stop()
        collector = Collector(services, topic, settle="300ms")
        assert collector.wait_metric("edgetrail_collector_spool_batches", at_least=0) == 0
        assert collector.process.poll() is None
    finally:
        collector.stop()
        central.stop()


def test_child_spans_that_arrive_before_their_root_join_the_cookie_the_root_brings(services):
    topic = f"children-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="300ms", hold="5s")
    cookie = 0x00000000000000C7
    try:
        send(collector.endpoint, f"{cookie:016x}", root_only=True)
        batches = consume(services.brokers, topic, lambda got: len(kinds(got)) >= 3, seconds=30)
        assert {batch.cookie for batch in batches} == {cookie}, "nothing is filed under the no-cookie bucket"
        operations = sorted(record.span.operation for batch in batches for record in batch.records)
        assert operations == ["inspect", "policy_check", "request"]
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="otlp",event="span_without_cookie_attached"') == 2
        assert collector.metric("edgetrail_collector_source_events_total",
                                'source="otlp",event="span_without_cookie_held"') == 2
        assert collector.metric("edgetrail_collector_held_spans") == 0
    finally:
        collector.stop()


def test_every_record_arrives_once_after_the_broker_was_unreachable_for_30_seconds(services):
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="200ms")
    broker = services.broker_pid()
    try:
        os.kill(broker, signal.SIGSTOP)
        paused_at = time.time()
        cookies = [0x0000000000D00000 + index for index in range(2000)]
        assert export_sessions(collector.endpoint, cookies, 10) == 20_000
        assert collector.wait_metric("edgetrail_collector_spool_batches", at_least=2000, seconds=20) == 2000
        time.sleep(max(0.0, 30 - (time.time() - paused_at)))
        os.kill(broker, signal.SIGCONT)
        batches = consume(services.brokers, topic,
                          lambda got: sum(len(b.records) for b in got) >= 20_000, seconds=120)
        records = [(batch.cookie, record.span.span_id) for batch in batches for record in batch.records]
        assert len(set(records)) == 20_000, "every record arrived"
        assert len(records) == 20_000, "none arrived twice"
        assert collector.wait_metric("edgetrail_collector_records_out_total", at_least=20_000) == 20_000
        assert collector.metric("edgetrail_collector_spool_bytes") == 0
    finally:
        os.kill(broker, signal.SIGCONT)
        collector.stop()


def test_after_the_broker_restarts_empty_everything_not_yet_acknowledged_is_shipped(services):
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, topic, settle="200ms")
    try:
        assert export_sessions(collector.endpoint, [0xE0], 3) == 3
        assert collector.wait_metric("edgetrail_collector_batches_out_total") == 1
        cookies = [0x0000000000E00001 + index for index in range(50)]
        services.restart_broker_empty(
            while_down=lambda: export_sessions(collector.endpoint, cookies, 4))
        batches = consume(services.brokers, topic, lambda got: {b.cookie for b in got} >= set(cookies), seconds=90)
        assert {batch.cookie for batch in batches} == set(cookies), "the new, empty broker got every batch sent meanwhile"
        records = {(batch.cookie, record.span.span_id) for batch in batches for record in batch.records}
        assert len(records) == 200
    finally:
        collector.stop()


def test_a_rule_file_changed_while_records_flow_switches_rules_with_nothing_lost_or_duplicated(services):
    topic = f"reload-{uuid.uuid4().hex[:8]}"
    rules = os.path.join(services.run_dir, "live.rules")
    with open(rules, "w") as out:
        out.write('drop span where span.operation == "op1"\n')
    collector = Collector(services, topic, settle="200ms", rules=rules)
    try:
        before = [0x0000000000F00000 + index for index in range(100)]
        export_sessions(collector.endpoint, before, 4)
        assert collector.wait_metric("edgetrail_collector_batches_out_total", at_least=100) == 100
        with open(rules, "w") as out:
            out.write('drop span where span.operation == "op2"\n')
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="filters",event="reload_applied"') == 1
        # A broken edit is refused; the rules in force stay.
        with open(rules, "w") as out:
            out.write('drop span where span.operaton == "op3"\n')
        assert collector.wait_metric("edgetrail_collector_source_events_total",
                                     'source="filters",event="reload_refused"') == 1
        after = [0x0000000000F10000 + index for index in range(100)]
        export_sessions(collector.endpoint, after, 4)
        wanted = set(before) | set(after)
        batches = consume(services.brokers, topic, lambda got: {b.cookie for b in got} >= wanted)
        operations = {}
        for batch in batches:
            for record in batch.records:
                operations.setdefault(batch.cookie, []).append(record.span.operation)
        assert set(operations) == wanted, "no cookie lost"
        for cookie in before:
            assert sorted(operations[cookie]) == ["op0", "op2", "op3"], "the first rules dropped op1"
        for cookie in after:
            assert sorted(operations[cookie]) == ["op0", "op1", "op3"], "the new rules drop op2; the broken edit changed nothing"
        assert collector.metric("edgetrail_collector_filter_rule_matches_total", f'rule="{rules}:1"') == 200
    finally:
        collector.stop()


def test_rules_nested_too_deep_or_too_slow_appended_live_are_refused_and_the_collector_keeps_filtering(services):
    """The shapes that crashed the parser (thousands of '(', 'or', 'not', 'any(') and a regex
    that backtracks exponentially, each appended to a live rule file: each edit is refused with
    its position, the collector stays up and the rules in force keep working."""
    topic = f"deep-{uuid.uuid4().hex[:8]}"
    rules = os.path.join(services.run_dir, "live.rules")
    good = 'drop span where span.operation == "op1"\n'
    with open(rules, "w") as out:
        out.write(good)
    collector = Collector(services, topic, settle="200ms", rules=rules)
    term = 'span.service == "a"'
    shapes = [
        "drop span where " + "(" * 2000 + term + ")" * 2000,
        "drop span where " + " or ".join([term] * 5000),
        "drop span where " + "not " * 10000 + term,
        "keep cookie where " + "any(span where " * 2000 + term + ")" * 2000,
        "drop span where span.tags[\"q\"] ~ /(a+)+$/",
    ]
    try:
        for refused, shape in enumerate(shapes, start=1):
            with open(rules, "w") as out:
                out.write(good + shape + "\n")
            assert collector.wait_metric("edgetrail_collector_source_events_total",
                                         'source="filters",event="reload_refused"', at_least=refused) == refused
            assert collector.process.poll() is None, f"the collector survived edit {refused}"
        log = open(collector.log.name, encoding="utf-8", errors="replace").read()
        assert f"{rules}:2:49: '(' nests deeper than 32 levels" in log
        assert "a condition holds at most 256 operators" in log
        assert "'not' nests deeper than 32 levels" in log
        assert "any(…) nests deeper than 32 levels" in log
        assert "/(a+)+$/ repeats a repeat" in log
        cookies = [0x0000000000D00000 + index for index in range(20)]
        export_sessions(collector.endpoint, cookies, 3)
        batches = consume(services.brokers, topic, lambda got: {b.cookie for b in got} >= set(cookies))
        operations = sorted(record.span.operation for batch in batches for record in batch.records
                            if batch.cookie == cookies[0])
        assert operations == ["op0", "op2"], "the rules in force still drop op1"
    finally:
        collector.stop()
