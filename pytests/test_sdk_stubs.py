"""The Python stubs the SDK uses speak the same schema as the Swift side."""

import grpc

from edgetrail.v1 import datapath_pb2, datapath_pb2_grpc, microservices_pb2_grpc, telemetry_pb2


def test_a_cookie_batch_built_in_python_round_trips_with_all_three_record_kinds():
    batch = telemetry_pb2.CookieBatch(cookie=0x0123456789ABCDEF, seq=1, final=True, cnf="edgesecurity")
    span = batch.records.add(cookie=batch.cookie, service="http-proxy")
    span.span.operation = "request_received"
    span.span.tags["http.url"] = "/index.html"
    flow = batch.records.add(cookie=batch.cookie)
    flow.flow.tuple.dst_port = 80
    flow.flow.bytes_in = 512
    snap = batch.records.add(cookie=batch.cookie)
    snap.snapshot.key = "cookie:0123456789abcdef:http-proxy:session"
    snap.snapshot.hash_fields.fields["state"] = b"open"

    decoded = telemetry_pb2.CookieBatch.FromString(batch.SerializeToString())
    assert decoded == batch
    assert [r.WhichOneof("kind") for r in decoded.records] == ["span", "flow", "snapshot"]
    assert f"{decoded.cookie:016x}" == "0123456789abcdef"


def test_grpc_stubs_exist_for_the_datapath_manager_and_the_event_stream():
    channel = grpc.insecure_channel("unix:///nonexistent.sock")
    stub = datapath_pb2_grpc.DatapathManagerStub(channel)
    for name in ("ApplyRules", "ListRules", "BindFlow", "Stats", "StreamEvents"):
        assert callable(getattr(stub, name))
    assert callable(microservices_pb2_grpc.EventStreamStub(channel).Attach)
    rule = datapath_pb2.DatapathRule(ip="10.201.0.2", port=80, labels=["http-proxy"])
    assert datapath_pb2.DatapathRule.FromString(rule.SerializeToString()).labels == ["http-proxy"]
    channel.close()
