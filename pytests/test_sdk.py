"""The handler SDK in-process: what a handler author sees when calling it wrongly, the session
metadata it sends (as the Swift side reads it), and ctx.state on a real Redis."""

import time

import pytest

from collector_harness import Services
from edgetrail.sdk import SDKError, ServiceError, Verdict, anti_virus, configure, policy_mgr
from edgetrail.sdk import runtime as sdk_runtime
from edgetrail.sdk.session import TraceParent, metadata
from edgetrail.sdk.state import State

COOKIE = 0x0123456789ABCDEF


@pytest.fixture
def invocation(tmp_path):
    """A handler call for COOKIE in a CNF with only http-proxy and policy-mgr (nothing running)."""
    runtime = configure("http-proxy", str(tmp_path), cnf="edgesecurity", otlp=None,
                        peers={"http-proxy": "http-proxy", "policy-mgr": "policy-mgr"})
    span = runtime.tracer.start_span("handler request_received")
    token = sdk_runtime.enter(sdk_runtime.Invocation(runtime, COOKIE, span, None))
    yield runtime
    sdk_runtime.leave(token)
    span.end()
    runtime.close()


def test_a_call_outside_a_handler_says_where_calls_belong(invocation):
    token = sdk_runtime.enter(None)
    try:
        with pytest.raises(SDKError, match=r"policy_mgr.check\(\) needs a session: call it from a handler's handle"):
            policy_mgr.check(url="/")
    finally:
        sdk_runtime.leave(token)


def test_a_proxy_for_a_microservice_the_cnf_lacks_names_the_cnfs_microservices(invocation):
    with pytest.raises(SDKError) as error:
        anti_virus.scan(body=b"x")
    assert str(error.value) == ("the CNF edgesecurity has no anti-virus μsrv; its μsrvs: "
                                "http-proxy (http-proxy), policy-mgr (policy-mgr)")


def test_a_call_to_a_microservice_that_is_not_running_says_so(invocation):
    with pytest.raises(ServiceError) as error:
        policy_mgr.check(url="/")
    assert error.value.code == "UNAVAILABLE"
    assert f"policy-mgr is not reachable at {invocation.run_dir}/policy-mgr.api.sock; is it running?" in str(error.value)


def test_verdicts_and_session_metadata():
    assert Verdict.deny(reason="no", rule="r1") == Verdict("deny", "no", {"rule": "r1"})
    assert Verdict.allow().allowed and not Verdict.allow().denied
    parent = TraceParent.parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert parent == TraceParent(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True)
    assert TraceParent.parse("00-00000000000000000000000000000000-b7ad6b7169203331-01") is None
    assert TraceParent.parse("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") is None
    assert metadata(COOKIE, parent) == [
        ("edgetrail-cookie", "0123456789abcdef"), ("baggage", "edgetrail.cookie=0123456789abcdef"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]


def test_state_is_the_sessions_redis_keys_and_the_microservices_own_records_are_read_only():
    services = Services()
    try:
        import redis

        client = redis.Redis(port=services.redis_port, decode_responses=True)
        state = State(lambda: client, COOKIE, "http-proxy")
        state.set("last_policy", "no-admin")
        state.set("attempts", 3)
        assert client.get("cookie:0123456789abcdef:http-proxy:last_policy") == "no-admin"
        assert 0 < client.ttl("cookie:0123456789abcdef:http-proxy:last_policy") <= 3600
        assert state.get("attempts") == "3" and state.get("missing", "none") == "none"
        # http-proxy's own record of the request is a hash: readable, not writable.
        client.hset("cookie:0123456789abcdef:http-proxy:request", mapping={"method": "GET", "url": "/"})
        assert state.get("request") == {"method": "GET", "url": "/"}
        with pytest.raises(ValueError, match="is the μsrv's own record"):
            state.set("request", "x")
        assert client.hgetall("cookie:0123456789abcdef:http-proxy:request") == {"method": "GET", "url": "/"}
        assert state.delete("last_policy") and state.get("last_policy") is None
        with pytest.raises(TypeError, match="takes text or a number, not dict"):
            state.set("x", {"a": 1})
        client.close()
    finally:
        services.close()


def test_sidecar_check_loads_each_handler_as_the_sidecar_would_and_says_where_one_fails(tmp_path):
    import subprocess
    import sys

    good = tmp_path / "good.py"
    good.write_text("def handle(event, ctx):\n    return None\n")
    broken = tmp_path / "broken.py"
    broken.write_text("import json\nimport no_such_module_anywhere\n\ndef handle(event, ctx):\n    pass\n")
    unfinished = tmp_path / "unfinished.py"
    unfinished.write_text("def handle(event, ctx):\n    return (\n")
    result = subprocess.run(
        [sys.executable, "-m", "edgetrail.sidecar", "--check", "--handler", f"a={good}", "--handler", f"b={broken}",
         "--handler", f"c={unfinished}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{good}: ok"
    assert lines[1] == (f"{broken}:2: importing it raised ModuleNotFoundError: No module named "
                        "'no_such_module_anywhere' (handler for b)")
    assert lines[2].startswith(f"{unfinished}:2:") and "SyntaxError" in lines[2]
    assert "Traceback" in result.stderr, "the import's traceback goes to stderr"
    ok = subprocess.run([sys.executable, "-m", "edgetrail.sidecar", "--check", "--handler", f"a={good}"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{good}: ok"


def test_spans_are_encoded_as_opentelemetrys_own_otlp_encoder_encodes_them():
    """The sidecar writes each span to OTLP's wire form itself as it ends (see edgetrail/sdk/otlp.py):
    what a collector decodes from it must be what OpenTelemetry's encoder would have sent."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from edgetrail.sdk.otlp import encode_span, export_request

    ended = []

    class Keep(SpanExporter):
        def export(self, spans):
            ended.extend(spans)
            return SpanExportResult.SUCCESS

    resource = Resource.create({"service.name": "policy-mgr.handlers", "edgetrail.cnf": "edgesecurity"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracer = provider.get_tracer("edgetrail.sdk")
    with tracer.start_as_current_span("handler request_received", kind=SpanKind.CONSUMER, attributes={
            "edgetrail.cookie": "0123456789abcdef", "count": 3, "negative": -7, "ratio": 0.25, "zero": 0,
            "flag": False, "empty": "", "names": ("a", "b"), "numbers": [1, 2]}) as handler:
        with tracer.start_as_current_span("PolicyManager/Check", kind=SpanKind.CLIENT) as call:
            call.set_status(Status(StatusCode.ERROR, "UNAVAILABLE: policy-mgr is not reachable"))
            call.add_event("exception", {"exception.type": "ServiceError", "exception.stacktrace": "x" * 300})
        handler.add_event("log", {"message": "checked"})
        handler.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("lonely", kind=SpanKind.INTERNAL):
        pass
    provider.shutdown()
    assert len(ended) == 3

    ours = ExportTraceServiceRequest.FromString(
        export_request(resource.attributes, "edgetrail.sdk", [encode_span(span) for span in ended]))
    theirs = encode_spans(ended)

    def spans(request):
        result = []
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.flags = 0  # context flags: not written by ours, not read by the collector
                    if span.status.code == 0 and not span.status.message:
                        span.ClearField("status")  # an unset status, written empty or not at all
                    attributes = sorted(span.attributes, key=lambda pair: pair.key)
                    del span.attributes[:]
                    span.attributes.extend(attributes)
                    result.append(span)
        return sorted(result, key=lambda span: span.name)

    assert [span.name for span in spans(ours)] == ["PolicyManager/Check", "handler request_received", "lonely"]
    assert spans(ours) == spans(theirs)
    assert {pair.key: pair.value.string_value for pair in ours.resource_spans[0].resource.attributes} == \
        {key: str(value) for key, value in resource.attributes.items()}
    assert ours.resource_spans[0].scope_spans[0].scope.name == "edgetrail.sdk"


def test_spans_wait_while_the_collector_is_away_and_go_when_it_is_back_with_one_warning(caplog):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.trace import TracerProvider

    from edgetrail.sdk.otlp import EXPORT_METHOD, OTLPSpanProcessor
    from collector_harness import free_port

    port = free_port()
    processor = OTLPSpanProcessor(f"127.0.0.1:{port}", {"service.name": "t"}, interval=0.05, timeout=0.5)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with caplog.at_level("WARNING", logger="edgetrail.sdk.otlp"):
        for index in range(10):
            tracer.start_span(f"span {index}").end()
        time.sleep(1.0)  # several attempts fail meanwhile
        assert processor.exported == 0
        received = []

        def export(request: bytes, context):
            received.extend(span.name for resource in ExportTraceServiceRequest.FromString(request).resource_spans
                            for scope in resource.scope_spans for span in scope.spans)
            return b""

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service, method = EXPORT_METHOD.strip("/").split("/")
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {method: grpc.unary_unary_rpc_method_handler(export)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        try:
            assert processor.force_flush(8000)
        finally:
            provider.shutdown()
            server.stop(0)
    assert sorted(received) == sorted(f"span {index}" for index in range(10))
    assert processor.exported == 10 and processor.dropped == 0
    warnings = [record.getMessage() for record in caplog.records if record.name == "edgetrail.sdk.otlp"]
    assert len(warnings) == 1, warnings
    assert f"cannot send spans to the collector at 127.0.0.1:{port} (UNAVAILABLE)" in warnings[0]
