"""Runs a CNF's parts as processes for tests: `edgetrail origin`, `edgetrail microservice run …`
and handler sidecars (`python -m edgetrail.sidecar`), each waited for by the line it prints."""

import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from collector_harness import ROOT, edgetrail_binary, terminate

EXAMPLE = ROOT / "examples" / "edgesecurity"


class Process:
    """A child whose stdout lines are collected, so a test can wait for the one it needs."""

    def __init__(self, args, log_path, env=None):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix, seconds=30):
        """The next stdout line starting with `prefix`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    raise RuntimeError(f"{self.args[:4]} exited with {self.process.returncode}; see {self.log_path}")
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise RuntimeError(f"{self.args[:4]} printed no '{prefix}' line within {seconds} s "
                           f"(it printed {self.seen}); see {self.log_path}")

    def stop(self):
        terminate(self.process)
        self.log.close()
        return self.process.returncode


def field(line, name):
    return next(part.split("=", 1)[1] for part in line.split() if part.startswith(name + "="))


def edgetrail(args, log_path, ready="ready"):
    """Starts an `edgetrail` process and waits for its ready line; returns (process, line)."""
    process = Process([edgetrail_binary(), *args], log_path)
    try:
        return process, process.wait_for(ready)
    except RuntimeError:
        process.stop()
        raise


def sidecar(run_dir, microservice, handlers, log_path, redis_port, otlp="none", cnf="edgesecurity", extra=()):
    """A handler sidecar for `microservice` with `handlers` ({event: file}); waits until it attached."""
    args = [sys.executable, "-m", "edgetrail.sidecar", "--microservice", microservice, "--run-dir", run_dir,
            "--cnf", cnf, "--redis", f"127.0.0.1:{redis_port}", "--otlp", otlp, *extra]
    for event, file in handlers.items():
        args += ["--handler", f"{event}={file}"]
    process = Process(args, log_path)
    try:
        process.wait_for("attached")
    except RuntimeError:
        process.stop()
        raise
    return process


def fetch(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class Pod:
    """An origin and μsrvs in one run directory; stops all of them on close (SIGTERM, in reverse)."""

    def __init__(self, services, otlp, cnf=str(EXAMPLE)):
        self.services = services
        self.run_dir = os.path.join(services.run_dir, "pod")
        self.otlp = otlp
        self.cnf = cnf
        self.processes = []
        self.origin = None

    def log(self, name):
        return os.path.join(self.services.run_dir, f"{name}.log")

    def start_origin(self):
        process, line = edgetrail(["origin", "--listen", "127.0.0.1:0"], self.log("origin"))
        self.processes.append(process)
        self.origin = field(line, "listen")
        return self.origin

    def microservice(self, kind, name=None, *extra):
        name = name or kind
        args = ["microservice", "run", kind, "--name", name, "--cnf", self.cnf, "--run-dir", self.run_dir,
                "--redis", f"127.0.0.1:{self.services.redis_port}", "--otlp", self.otlp, *extra]
        if kind == "http-proxy":
            args += ["--listen", "127.0.0.1:0", "--upstream", self.origin or self.start_origin()]
        process, line = edgetrail(args, self.log(name))
        self.processes.append(process)
        return process, line

    def sidecar(self, microservice, handlers, otlp=None, extra=()):
        process = sidecar(self.run_dir, microservice, handlers, self.log(f"{microservice}-sidecar"),
                          self.services.redis_port, otlp=otlp or self.otlp, extra=extra)
        self.processes.append(process)
        return process

    def close(self):
        for process in reversed(self.processes):
            process.stop()
