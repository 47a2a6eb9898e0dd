"""The handler SDK in-process: what a handler author sees when calling it wrongly, the session
metadata it sends (as the Swift side reads it), and ctx.state on a real Redis."""

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
