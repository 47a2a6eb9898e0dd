"""`edgetrail bench proxy --mode microservice` and `edgetrail bench handler` run end to end, and the
spans of what they measure are really exported (to the benchmarks' own OTLP sink, which counts
them): a figure taken while the spans fell out of a queue would flatter the μsrvs. Timing is not
judged here."""

import re
import subprocess

from collector_harness import ROOT, Services, edgetrail_binary


def bench(*arguments: str) -> str:
    """Runs `edgetrail bench ARGUMENTS --redis …` on a Redis of its own; its output, once it passed."""
    services = Services()
    try:
        result = subprocess.run(
            [edgetrail_binary(), "bench", *arguments, "--redis", f"127.0.0.1:{services.redis_port}"],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
    finally:
        services.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    return result.stdout


def spans_received(out: str) -> int:
    match = re.search(r"spans the sink received[^:]*: (\d+)", out)
    assert match, out
    return int(match.group(1))


def test_the_proxy_benchmark_exports_every_requests_spans_and_prints_its_figures():
    out = bench("proxy", "--mode", "microservice", "--seconds", "0.6", "--rounds", "1", "--clients", "2")
    assert "spans over OTLP/gRPC to this benchmark's OTLP sink" in out and "state to Redis" in out and "(up)" in out
    proxied = re.search(r"\((\d+) requests measured through the proxy", out)
    assert proxied, out
    assert int(proxied.group(1)) > 0
    # The server span and the upstream span of each measured request (and of the warm-ups).
    assert spans_received(out) >= 2 * int(proxied.group(1)), out
    assert re.search(r"proxy / direct requests/s: \d\.\d\d×", out)
    assert re.search(r"p99 added by the proxy \(one client\): -?\d+\.\d\d ms", out)
    assert "(0 failed)" in out


def test_the_handler_benchmark_exports_the_sidecars_and_policy_mgrs_spans():
    out = bench("handler", "--seconds", "0.6", "--in-flight", "2")
    assert "spans over OTLP/gRPC to this benchmark's OTLP sink" in out
    assert re.search(r"Python handler, one SDK call +\d+ events/s", out), out
    assert spans_received(out) > 0
