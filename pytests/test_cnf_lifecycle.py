"""The CNF lifecycle on a real edge node, as root: `edgetrail cnf deploy/status/list/update/delete`
through the node agent. Pods are network namespaces with the μsrv and its handler sidecar inside;
client traffic is steered into the proxy pod by the eBPF datapath. A crashed μsrv is restarted and
counted; an update whose handler does not load, or whose pod does not come up healthy, is rolled
back while traffic keeps being answered; an update of handler code alone keeps the μsrv running;
delete leaves nothing behind."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from collector_harness import ROOT, Services, edgetrail_binary, free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an edge node is network namespaces and eBPF: needs root")

EXAMPLE = os.path.join(ROOT, "examples", "edgesecurity")


class Node:
    """A throwaway edge node with private Redis and broker; its CNF commands."""

    def __init__(self):
        self.services = Services()
        self.name = f"t{uuid.uuid4().hex[:6]}"
        self.run_dir = os.path.join(self.services.run_dir, "node")
        self.env = dict(os.environ, EDGETRAIL_RUN_DIR=self.services.run_dir,
                        EDGETRAIL_REDIS_PORT=str(self.services.redis_port),
                        EDGETRAIL_BROKER_PORT=str(self.services.broker_port))
        up = self.run("node", "up", "--name", self.name, "--run-dir", self.run_dir, "--otlp", f"127.0.0.1:{free_port()}",
                      "--metrics", f"127.0.0.1:{free_port()}", "--topic", "lifecycle-test",
                      "--python", os.path.join(ROOT, ".venv", "bin", "python"))
        assert up.returncode == 0, up.stdout + up.stderr

    def run(self, *args, timeout=180):
        return subprocess.run([edgetrail_binary(), *args], capture_output=True, text=True, env=self.env, cwd=ROOT,
                              timeout=timeout)

    def cnf(self, *args):
        return self.run("cnf", *args, "--node", self.name, "--run-dir", self.run_dir)

    def status(self, name="edgesecurity"):
        result = self.cnf("status", name, "--json")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def pod(self, microservice):
        return next(pod for pod in self.status()["pods"] if pod["name"] == microservice)

    def get(self, path):
        """A plain client request from the client namespace: (status, cookie or None, body)."""
        script = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://10.201.0.2{path}', timeout=10)\n"
            "except urllib.error.HTTPError as e:\n"
            "    r = e\n"
            "print(r.status); print(r.headers.get('edgetrail-cookie') or '-'); print(r.read().decode(errors='replace'))\n")
        result = subprocess.run(["ip", "netns", "exec", f"{self.name}-client", "python3", "-c", script],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        status, cookie, body = result.stdout.split("\n", 2)
        return int(status), (None if cookie == "-" else cookie), body

    def namespaces(self):
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return {line.split()[0] for line in listed.splitlines() if line.split() and line.split()[0].startswith(self.name)}

    def close(self):
        down = self.run("node", "down", "--name", self.name, "--run-dir", self.run_dir)
        self.services.close()
        assert down.returncode == 0, down.stdout + down.stderr
        assert not self.namespaces(), "node down removes the pods' namespaces too"
        assert subprocess.run(["pgrep", "-f", self.run_dir], capture_output=True).returncode == 1, "no process left"


@pytest.fixture(scope="module")
def node():
    edge = Node()
    yield edge
    edge.close()


def variant(tmp, edit):
    """A copy of the example CNF (its symlinked handlers resolved) with `edit(folder)` applied."""
    folder = os.path.join(tmp, "cnf")
    shutil.copytree(EXAMPLE, folder, symlinks=False)
    edit(folder)
    return folder


def test_deploy_shows_its_steps_and_the_pods_serve_the_clients_traffic(node):
    deployed = node.cnf("deploy", EXAMPLE)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    out = deployed.stdout
    for line in ("edgesecurity version 1: spec checked (3 μsrvs, 3 handlers, 3 datapath rules)", "handlers: 3 files load",
                 "pod http-proxy: healthy, handlers attached", "datapath: 3 rules applied",
                 f"edgesecurity version 1 is running on {node.name}"):
        assert line in out, out

    status = node.status()
    assert status["cnf"]["version"] == 1 and status["node"] == node.name
    pods = {pod["name"]: pod for pod in status["pods"]}
    assert set(pods) == {"http-proxy", "policy-mgr", "content-inspect"}
    assert all(pod["state"] == "POD_STATE_RUNNING" for pod in pods.values()), pods
    assert pods["http-proxy"]["handlers"] == ["request_received=handlers/on_request.py",
                                              "response_sent=handlers/on_response.py"]
    assert pods["http-proxy"]["handlersAttached"] and "handlers" not in pods["policy-mgr"]
    assert {f"{node.name}-edgesecurity-{name}" for name in pods} <= node.namespaces()

    table = node.cnf("status", "edgesecurity")
    assert table.returncode == 0
    assert f"{node.name}-edgesecurity-http-proxy" in table.stdout and "request_received,response_sent (attached)" in table.stdout
    assert "10.201.0.2 80 : redirect => [http-proxy]" in table.stdout
    listed = node.cnf("list")
    assert "edgesecurity" in listed.stdout and "3/3 healthy" in listed.stdout

    status_code, cookie, body = node.get("/")
    assert status_code == 200 and "The origin" in body
    assert cookie and len(cookie) == 16, "the answer came through the proxy pod, which minted the session cookie"

    # policy-mgr runs with the settings file the spec names (examples/edgesecurity/policy-mgr.yaml).
    status_code, _, body = node.get("/admin/users")
    assert status_code == 403 and "admin pages are internal" in body

    again = node.cnf("deploy", EXAMPLE)
    assert again.returncode == 1 and "already deployed" in again.stderr and "cnf update" in again.stderr


def test_a_crashed_microservice_is_restarted_and_counted(node):
    before = node.pod("http-proxy")
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_until(lambda: (pod := node.pod("http-proxy"))["state"] == "POD_STATE_RUNNING" and pod.get("restarts") == 1
                       and pod["handlersAttached"] and pod, what="the proxy's restart")
    assert after["pid"] != before["pid"]
    assert "killed by signal 9" in after["message"]
    status_code, cookie, _ = node.get("/")
    assert status_code == 200 and cookie, "traffic flows through the restarted proxy"
    table = node.cnf("status", "edgesecurity").stdout
    assert "http-proxy: last restart: μsrv killed by signal 9" in table


def test_an_update_whose_handler_does_not_import_is_refused_and_traffic_flows_on(node, tmp_path):
    def break_handler(folder):
        path = os.path.join(folder, "handlers", "on_inspect.py")
        with open(path, "w") as handler:
            handler.write("import no_such_module_here\n\ndef handle(event, ctx):\n    pass\n")

    pids = {pod["name"]: pod["pid"] for pod in node.status()["pods"]}
    folder = variant(str(tmp_path), break_handler)
    update = node.cnf("update", folder)
    assert update.returncode == 1
    assert f"{folder}/handlers/on_inspect.py:1: importing it raised ModuleNotFoundError: No module named 'no_such_module_here'" in update.stderr
    assert "rolled back: edgesecurity version 1 keeps running" in update.stderr
    status = node.status()
    assert status["cnf"]["version"] == 1 and {pod["name"]: pod["pid"] for pod in status["pods"]} == pids
    assert "no_such_module_here" in status["cnf"]["lastError"]
    status_code, cookie, _ = node.get("/")
    assert status_code == 200 and cookie


def test_an_update_whose_pod_does_not_come_up_healthy_is_rolled_back(node, tmp_path):
    # The handler loads where the agent checks it (the host's network), but not inside its pod: a
    # module that connects at import to a port only the host has. The pod's sidecar says it
    # cannot run; the agent rolls the update back and restarts the version in force.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]

    def pod_only_failure(folder):
        with open(os.path.join(folder, "handlers", "on_inspect.py"), "w") as handler:
            handler.write(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n\n"
                          "def handle(event, ctx):\n    pass\n")
        spec = os.path.join(folder, "cnf.yaml")
        text = open(spec).read().replace("file: handlers/on_inspect.py", "file: handlers/on_inspect.py\n    timeout: 2s")
        open(spec, "w").write(text)

    try:
        folder = variant(str(tmp_path), pod_only_failure)
        update = node.cnf("update", folder)
    finally:
        holder.close()
    assert update.returncode == 1, update.stdout
    assert "changes: content-inspect: restart" in update.stdout
    assert "pod content-inspect is not healthy: its sidecar says: handler inspect_done.py (inspect_done) cannot run" in update.stderr
    assert "ConnectionRefusedError" in update.stderr
    assert "rolled back: edgesecurity version 1 keeps running" in update.stderr
    status = wait_until(lambda: (s := node.status())["cnf"]["podsHealthy"] == 3 and s, what="the rollback's pods healthy")
    assert status["cnf"]["version"] == 1
    assert next(p for p in status["pods"] if p["name"] == "content-inspect")["handlersAttached"]
    status_code, cookie, _ = node.get("/downloads/report.pdf")
    assert status_code == 200 and cookie


def test_an_update_of_handler_code_alone_keeps_the_microservice_running(node, tmp_path):
    def tag_response(folder):
        path = os.path.join(folder, "handlers", "on_request.py")
        text = open(path).read().replace('ctx.state.set("last_policy", decision.rule)',
                                         'ctx.state.set("last_policy", decision.rule)\n    ctx.span.set_tag("edited", "yes")')
        assert "edited" in text
        open(path, "w").write(text)

    before = node.pod("http-proxy")
    folder = variant(str(tmp_path), tag_response)
    update = node.cnf("update", folder)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "pod http-proxy: new handler code, μsrv kept running" in update.stdout
    after = node.pod("http-proxy")
    assert after["pid"] == before["pid"] and after.get("sidecarPid") == before.get("sidecarPid")
    assert node.status()["cnf"]["version"] >= 2
    log = os.path.join(node.run_dir, "logs", "pods", "edgesecurity", "http-proxy.sidecar.log")
    wait_until(lambda: "handler request_received.py (request_received) reloaded" in open(log).read(),
               what="the sidecar's reload")


def test_delete_removes_the_pods_and_the_rules(node):
    deleted = node.cnf("delete", "edgesecurity")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "edgesecurity deleted" in deleted.stdout and "datapath rules of edgesecurity removed" in deleted.stdout
    assert node.namespaces() == {node.name, f"{node.name}-client", f"{node.name}-origin"}
    status_code, cookie, body = node.get("/")
    assert status_code == 200 and cookie is None and "The origin" in body, "no rule steers into a proxy any more"
    assert "no CNF runs" in node.cnf("list").stdout
    missing = node.cnf("status", "edgesecurity")
    assert missing.returncode == 1 and "no CNF named edgesecurity runs on" in missing.stderr
