"""`edgetrail bench chain` end to end, small: two real edge nodes side by side (one traced, one
not), the modes taking turns (off, on, on, off), every traced session reconstructed at central,
and nothing left behind. Timing is not judged here; the figures are the benchmark's."""

import os
import re
import subprocess
import tempfile

import pytest

from collector_harness import ROOT, edgetrail_binary, free_port


@pytest.mark.skipif(os.geteuid() != 0, reason="the chain benchmark builds edge nodes: needs root")
def test_the_chain_benchmark_takes_turns_and_reconstructs_every_traced_session():
    run_dir = tempfile.mkdtemp(prefix="et-chain-", dir="/tmp")
    os.chmod(run_dir, 0o755)
    try:
        result = subprocess.run(
            [edgetrail_binary(), "bench", "chain", "--sessions", "40", "--rounds", "2", "--clients", "4",
             "--run-dir", run_dir, "--redis-port", str(free_port()), "--broker-port", str(free_port())],
            cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run([edgetrail_binary(), "infra", "down", "--run-dir", run_dir], capture_output=True)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        redis_left = subprocess.run(["pgrep", "-f", f"{run_dir}/bench-chain/redis-off"], capture_output=True).returncode == 0
        subprocess.run(["rm", "-rf", run_dir], check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    turns = re.findall(r"round (\d), tracing (on |off): 20 sessions in [\d.]+ s: \d+/s, .* 0 failed", out)
    assert turns == [("1", "off"), ("1", "on "), ("2", "on "), ("2", "off")], out
    off = re.search(r"tracing off: 40 sessions in .*\n    CPU seconds during its turns: (.*)", out)
    on = re.search(r"tracing on : 40 sessions in .*\n    CPU seconds during its turns: (.*)", out)
    assert off and on, out
    assert "collector" in on.group(1) and "collector" not in off.group(1), "only the traced node has a collector"
    assert re.search(r"on / off: \d\.\d{3}× requests/s \(target ≥ 0\.9×\)", out)
    assert "correlation: 40 of 40 sessions complete at central (100.00%" in out and ", 0 mixed" in out, out
    # Nothing of either node stays: namespaces, the untraced node's own Redis.
    assert not re.search(r"^chain(on|off)", left, flags=re.M), left
    assert not redis_left, "the untraced node's Redis was stopped"


def test_bad_rounds_are_refused_before_anything_starts():
    result = subprocess.run([edgetrail_binary(), "bench", "chain", "--sessions", "10", "--rounds", "20"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    if os.geteuid() == 0:
        assert "--rounds takes 1 to --sessions (10), not 20" in message, message
    else:
        assert "run it as root" in message, message
