"""`edgetrail bench collector --otlp` runs end to end on the real broker and Redis: a generator
process feeds a collector process until the broker acknowledged every record, and every figure
the issue asks for is printed (spans/s per collector CPU-second, peak RSS, the floor and the
ratio, the OpenTelemetry Collector's figure for scale). Timing is not judged here."""

import re
import subprocess

from collector_harness import ROOT, Services, edgetrail_binary


def test_the_otlp_fed_benchmark_runs_and_prints_its_figures(tmp_path):
    services = Services()
    try:
        result = subprocess.run(
            [edgetrail_binary(), "bench", "collector", "--otlp", "--cookies", "300", "--brokers", services.brokers,
             "--redis", f"127.0.0.1:{services.redis_port}", "--work-dir", str(tmp_path / "bench")],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
    finally:
        services.close()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "300 cookies x (8 spans, 2 flow events, 2 Redis snapshots) = 3,600 records" in out
    assert "sent requests=5 spans=2400" in result.stderr
    assert re.search(r"collector: [\d.]+ s wall, [\d.]+ CPU s \(its own\) -> [\d,]+ spans/s per collector CPU-second", out), out
    assert re.search(r"peak RSS \d+ MB", out)
    assert re.search(r"floor .*: [\d,]+ spans/s per CPU-second", out)
    assert re.search(r"pipeline / floor: \d\.\d\d \(target >= 0\.50\)", out)
    assert "OpenTelemetry Collector publishes ~12,000 spans/s per core" in out
    assert not (tmp_path / "bench-otlp").exists(), "the scratch folder is removed after"
