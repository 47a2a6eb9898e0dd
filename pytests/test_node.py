"""`edgetrail node up/status/down` as root: a real edge node of network namespaces with the eBPF
datapath, the collector and an origin, reached from its client namespace; and nothing left
behind after `down` (a second `down` harmless)."""

import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from collector_harness import Services, edgetrail_binary, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an edge node is network namespaces and eBPF: needs root")


def node(*args, env=None):
    return subprocess.run([edgetrail_binary(), "node", *args], capture_output=True, text=True, env=env, timeout=120)


def namespaces():
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_node_up_runs_a_real_node_and_down_leaves_nothing_behind():
    services = Services()
    name = f"t{uuid.uuid4().hex[:6]}"
    run_dir = os.path.join(services.run_dir, "node")
    env = dict(os.environ, EDGETRAIL_REDIS_PORT=str(services.redis_port), EDGETRAIL_BROKER_PORT=str(services.broker_port))
    metrics = f"127.0.0.1:{free_port()}"
    common = ["--name", name, "--run-dir", run_dir]
    try:
        up = node("up", *common, "--otlp", f"127.0.0.1:{free_port()}", "--metrics", metrics, "--topic", "node-test",
                  env=env)
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"namespaces: {name} (the node), {name}-client (client 10.200.0.2), {name}-origin (origin 10.201.0.2)" in up.stdout
        for part in ("origin: http://10.201.0.2/", "datapath-manager: eBPF on etc0", "collector: OTLP", "node-agent: CNFs are deployed"):
            assert part in up.stdout
        assert {name, f"{name}-client", f"{name}-origin"} <= namespaces()

        status = node("status", *common, env=env)
        assert status.returncode == 0, status.stdout
        assert [line.split()[:2] for line in status.stdout.splitlines()] == [
            ["namespaces", "up"], ["origin", "up"], ["datapath-manager", "up"], ["collector", "up"], ["node-agent", "up"]]

        # Plain client traffic from the client namespace reaches the origin through the node...
        fetch = subprocess.run(
            ["ip", "netns", "exec", f"{name}-client", "python3", "-c",
             "import urllib.request; print(urllib.request.urlopen('http://10.201.0.2/', timeout=5).read().decode())"],
            capture_output=True, text=True, timeout=30)
        assert fetch.returncode == 0 and "The origin" in fetch.stdout, fetch.stderr
        # ...and the datapath's flow events for it reach the node's collector.
        deadline = time.time() + 20
        flows = 0.0
        while time.time() < deadline and flows < 2:
            text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2).read().decode()
            flows = next((float(line.split()[-1]) for line in text.splitlines()
                          if line.startswith('edgetrail_collector_records_in_total{source="flows"}')), 0.0)
            time.sleep(0.2)
        assert flows >= 2, "a flow's start and end came from the kernel to the collector"

        again = node("up", *common, env=env)
        assert again.returncode == 1 and f"a node named {name} is already up" in again.stderr
    finally:
        down = node("down", *common, env=env)
        services.close()
    assert down.returncode == 0
    assert "collector: stopped" in down.stdout and "node-agent: stopped" in down.stdout
    assert "namespaces: removed" in down.stdout
    assert not {ns for ns in namespaces() if ns == name or ns.startswith(name + "-")}
    assert subprocess.run(["pgrep", "-f", run_dir], capture_output=True).returncode == 1, "no process of the node runs"
    second = node("down", *common, env=env)
    assert second.returncode == 0 and f"node {name}: nothing to remove" in second.stdout
    status = node("status", *common, env=env)
    assert status.returncode == 1 and all(" down " in line for line in status.stdout.splitlines())


def test_node_up_with_the_collectors_port_taken_fails_at_once_and_leaves_nothing():
    services = Services()
    name = f"t{uuid.uuid4().hex[:6]}"
    run_dir = os.path.join(services.run_dir, "node")
    env = dict(os.environ, EDGETRAIL_REDIS_PORT=str(services.redis_port), EDGETRAIL_BROKER_PORT=str(services.broker_port))
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        started = time.time()
        up = node("up", "--name", name, "--run-dir", run_dir, "--otlp", f"127.0.0.1:{taken.getsockname()[1]}",
                  "--metrics", f"127.0.0.1:{free_port()}", env=env)
        assert up.returncode == 1 and time.time() - started < 30
        assert "collector exited while starting" in up.stderr, up.stderr
        assert not {ns for ns in namespaces() if ns == name or ns.startswith(name + "-")}
        assert subprocess.run(["pgrep", "-f", run_dir], capture_output=True).returncode == 1
    finally:
        taken.close()
        node("down", "--name", name, "--run-dir", run_dir, env=env)
        services.close()


def test_a_second_node_agent_on_the_same_socket_is_refused_at_once_and_sigterm_stops_the_first(tmp_path):
    """`node agent` needs no root until it deploys: two on one run directory, the second refused."""
    run_dir = str(tmp_path / "node")
    command = [edgetrail_binary(), "node", "agent", "--name", "tagent", "--run-dir", run_dir, "--python", "python3"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        socket_path = os.path.join(run_dir, "agent.sock")
        deadline = time.time() + 30
        while not os.path.exists(socket_path) and time.time() < deadline:
            time.sleep(0.1)
        assert os.path.exists(socket_path), "the first agent serves its socket"
        started = time.time()
        second = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and time.time() - started < 10
        assert f"another node agent serves {socket_path}" in second.stderr, second.stderr
        assert os.path.exists(socket_path) and first.poll() is None, "the first agent keeps its socket"
        listed = subprocess.run([edgetrail_binary(), "cnf", "list", "--node", "tagent", "--run-dir", run_dir],
                                capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0 and "no CNF runs on tagent" in listed.stdout, listed.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        status = first.wait(timeout=15)
    assert status == 0
    assert not os.path.exists(os.path.join(run_dir, "agent.sock")), "its socket is removed"
