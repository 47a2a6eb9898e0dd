"""`make demo`'s main job, `edgetrail demo`, end to end with private services: as root it builds
a real edge node and the reconstruction shows the redirected flow with the spans and snapshots."""

import os
import socket
import subprocess
import tempfile

import pytest

from collector_harness import ROOT, edgetrail_binary, free_port


def busy(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(any(busy(port) for port in (4317, 9464, 7070)),
                    reason="SKIPPED: the demo needs ports 4317, 9464 and 7070, and something holds one")
def test_the_demo_follows_one_session_through_a_real_edge_node():
    run_dir = tempfile.mkdtemp(prefix="et-demo-", dir="/tmp")
    result = subprocess.run(
        [edgetrail_binary(), "demo", "--run-dir", run_dir, "--redis-port", str(free_port()),
         "--broker-port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    subprocess.run(["rm", "-rf", run_dir], check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "==> done" in out
    assert "3 spans, 1 flows, 2 snapshots" in out
    if os.geteuid() == 0:
        assert 'datapath (eBPF): client 10.200.0.2:41000 -> 10.201.0.2:80, redirected; the answer: "answered by the http-proxy pod"' in out
        assert "3 rules applied (version 1)" in out
        # The flow's end came from the kernel: its packets were counted in both directions.
        end = next(line for line in out.splitlines() if "flow end" in line)
        assert "in 0 B" not in end and "out 0 B" not in end, end
        prefix = next(line for line in out.splitlines() if line.startswith("==> edge node ")).split()[3].rstrip(":")
        assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    else:
        assert "flow events replayed from a recording" in out
