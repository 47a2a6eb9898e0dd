"""`edgetrail datapath` as an operator uses it: the Datapath Manager served in a namespace edge
node, driven by its subcommands (real eBPF programs, real veths; root)."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from collector_harness import ROOT, edgetrail_binary, terminate

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: network namespaces and eBPF need root")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Node:
    """node + client namespaces joined by a veth: the smallest edge node to attach to."""

    def __init__(self):
        self.prefix = "etpy" + uuid.uuid4().hex[:6]
        self.node, self.client = f"{self.prefix}-node", f"{self.prefix}-client"
        self.interface = f"{self.prefix}-c0"
        sh("ip", "netns", "add", self.node)
        sh("ip", "netns", "add", self.client)
        sh("ip", "link", "add", self.interface, "netns", self.node, "type", "veth",
           "peer", "name", f"{self.prefix}-c1", "netns", self.client)
        self.run(self.node, f"ip link set lo up; ip addr add 10.200.0.1/24 dev {self.interface}; ip link set {self.interface} up")
        self.run(self.client, f"ip link set lo up; ip addr add 10.200.0.2/24 dev {self.prefix}-c1; "
                              f"ip link set {self.prefix}-c1 up; ip route add default via 10.200.0.1")

    def run(self, namespace, command):
        return sh("ip", "netns", "exec", namespace, "sh", "-c", command)

    def close(self):
        sh("ip", "netns", "delete", self.client, check=False)
        sh("ip", "netns", "delete", self.node, check=False)


@pytest.fixture
def manager(tmp_path):
    node = Node()
    socket = str(tmp_path / "datapath.sock")
    process = subprocess.Popen(
        [edgetrail_binary(), "datapath", "serve", "--interface", node.interface, "--netns", node.node,
         "--socket", socket, "--node", "edge-py", "--idle-timeout", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(100):
        if os.path.exists(socket) or process.poll() is not None:
            break
        time.sleep(0.05)
    assert os.path.exists(socket), process.communicate()[0] if process.poll() is not None else "no socket"
    yield node, socket, process
    terminate(process)
    node.close()


def cli(socket, *args, check=True):
    result = subprocess.run([edgetrail_binary(), "datapath", *args, "--socket", socket],
                            capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_apply_list_stats_events_bind_and_a_clean_stop(manager, tmp_path):
    node, socket, process = manager
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - "10.201.0.0/24 53 : ratelimit 1MB/s"\n  - "* 23 : deny"\npods: []\n')
    assert cli(socket, "apply", str(rules)).stdout.strip() == "applied 2 rules; version 1"
    listed = cli(socket, "list").stdout.splitlines()
    assert listed[0] == "version 1, 2 rules"
    assert listed[1].split() == ["1", "10.201.0.0/24", "53", ":", "ratelimit", "1MB/s"]

    bound = cli(socket, "bind", "udp", "10.200.0.2:5353", "10.201.0.2:53", "00000000000000c1").stdout
    assert "has not been seen yet" in bound
    events = subprocess.Popen([edgetrail_binary(), "datapath", "events", "--json", "--count", "2", "--socket", socket],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    node.run(node.client, "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                          "s.bind(('10.200.0.2', 5353)); [s.sendto(b'q' * 60, ('10.201.0.2', 53)) for _ in range(3)]\"")
    out, err = events.communicate(timeout=20)
    start, end = [json.loads(line) for line in out.splitlines()]
    assert start["event"]["phase"] == "FLOW_PHASE_START" and end["event"]["phase"] == "FLOW_PHASE_END"
    assert end["event"]["endReason"] == "FLOW_END_REASON_IDLE"
    assert end["cookie"] == "193" and end["node"] == "edge-py"   # 0xc1, JSON writes fixed64 as a decimal string
    assert end["event"]["action"] == "DATAPATH_ACTION_RATELIMIT" and end["event"]["ruleId"] == 1
    assert end["event"]["packetsIn"] == "3"

    stats = cli(socket, "stats").stdout.splitlines()
    rule1 = stats[1].split()
    assert rule1[:2] == ["1", "3"], stats   # rule 1 counted the three datagrams
    assert "flow events lost (ring buffer full): 0" in stats

    broken = tmp_path / "broken.yaml"
    broken.write_text('rules:\n  - "10.0.0.1 80 : redirect => [nobody]"\npods: []\n')
    refused = cli(socket, "apply", str(broken), check=False)
    assert refused.returncode == 1
    assert "no pod carries the label nobody" in refused.stderr and "the active rules stay" in refused.stderr
    assert cli(socket, "list").stdout.splitlines()[0] == "version 1, 2 rules"

    terminate(process)
    assert process.returncode == 0, process.stdout.read()
    assert not os.path.exists(socket)
    qdiscs = node.run(node.node, f"tc qdisc show dev {node.interface}").stdout
    assert "clsact" not in qdiscs


def test_a_missing_manager_and_missing_privileges_say_what_to_do(tmp_path):
    missing = cli(str(tmp_path / "none.sock"), "list", check=False)
    assert missing.returncode == 1
    assert "cannot reach the Datapath Manager" in missing.stderr and "edgetrail datapath serve" in missing.stderr

    # The object where an unprivileged user can read it (the checkout may be private to root).
    readable = tempfile.mkdtemp(prefix="et-bpf-")
    os.chmod(readable, 0o755)
    shutil.copy(ROOT / "bpf/.output/datapath.bpf.o", readable)
    os.chmod(os.path.join(readable, "datapath.bpf.o"), 0o644)
    try:
        unprivileged = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
             edgetrail_binary(), "datapath", "serve", "--interface", "lo", "--socket", os.path.join(readable, "x.sock")],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "EDGETRAIL_BPF_OBJECT": os.path.join(readable, "datapath.bpf.o")})
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert unprivileged.returncode == 1
    assert "needs root (CAP_BPF, CAP_NET_ADMIN" in unprivileged.stderr, unprivileged.stderr
