"""Long-running commands as an operator meets them: a listen address another program holds
fails at once with the address named, and SIGTERM stops them within seconds in every state —
including a collector holding spans it cannot ship because the broker is unreachable."""

import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time

from collector_harness import edgetrail_binary, free_port
from helpers.send_spans import send


def collector_config(directory, otlp_port, metrics_port, broker_port):
    path = pathlib.Path(directory) / "collector.yaml"
    path.write_text(f"""
collector:
  cnf: edgesecurity
  node: edge-test
  data_dir: {directory}/data
sources:
  otlp:
    listen: 127.0.0.1:{otlp_port}
join:
  settle: 100ms
sinks:
  kafka:
    brokers: 127.0.0.1:{broker_port}
    topic: lifecycle
metrics:
  listen: 127.0.0.1:{metrics_port}
""")
    return str(path)


def held_port():
    """A listening socket another program holds, and its port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def wait_listening(port, process, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {seconds} s")


def stopped_within(process, seconds):
    """SIGTERM, then how long the process took to exit (SIGKILL past `seconds`)."""
    started = time.time()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"still running {seconds} s after SIGTERM")
    return time.time() - started


def test_a_collector_whose_addresses_are_taken_exits_at_once_naming_them():
    with tempfile.TemporaryDirectory() as directory:
        holder, taken = held_port()
        try:
            for otlp, metrics, setting in ((taken, free_port(), "sources.otlp.listen"),
                                           (free_port(), taken, "metrics.listen")):
                config = collector_config(directory, otlp, metrics, free_port())
                started = time.time()
                result = subprocess.run([edgetrail_binary(), "collector", "--config", config],
                                        capture_output=True, text=True, timeout=30)
                assert result.returncode != 0
                assert time.time() - started < 10, "it failed at once"
                assert f"127.0.0.1:{taken} ({setting}) is already in use by another program" in result.stderr
                assert "collector started" not in result.stderr, "no misleading start line"
        finally:
            holder.close()


def test_central_whose_address_is_taken_exits_at_once_naming_it():
    with tempfile.TemporaryDirectory() as directory:
        holder, taken = held_port()
        try:
            result = subprocess.run(
                [edgetrail_binary(), "central", "--listen", f"127.0.0.1:{taken}", "--brokers",
                 f"127.0.0.1:{free_port()}", "--store", f"sqlite:{directory}/central.db"],
                capture_output=True, text=True, timeout=30)
            assert result.returncode != 0
            assert f"127.0.0.1:{taken} (--listen) is already in use by another program" in result.stderr
        finally:
            holder.close()


def test_sigterm_stops_a_collector_that_cannot_reach_its_broker_and_keeps_what_it_accepted():
    with tempfile.TemporaryDirectory() as directory:
        otlp, metrics = free_port(), free_port()
        config = collector_config(directory, otlp, metrics, free_port())
        with open(os.path.join(directory, "collector.log"), "wb") as log:
            process = subprocess.Popen([edgetrail_binary(), "collector", "--config", config],
                                       stdout=log, stderr=log)
            wait_listening(otlp, process)
            send(f"127.0.0.1:{otlp}", "00000000000000c1")
            time.sleep(1)
            took = stopped_within(process, 20)
        assert process.returncode == 0
        assert took < 15, f"took {took:.1f} s (the shutdown waits at most 10 s for acknowledgements)"
        text = pathlib.Path(directory, "collector.log").read_text()
        assert "they stay spooled and go out on the next start" in text


def test_sigterm_stops_central_while_its_broker_is_unreachable():
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        process = subprocess.Popen(
            [edgetrail_binary(), "central", "--listen", f"127.0.0.1:{port}", "--brokers",
             f"127.0.0.1:{free_port()}", "--store", f"sqlite:{directory}/central.db"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port, process)
        time.sleep(1)
        assert stopped_within(process, 20) < 10
