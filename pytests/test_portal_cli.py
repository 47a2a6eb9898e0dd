"""`edgetrail portal` as a process: a taken port is refused at once, oversized input is refused
with 413 while the portal keeps serving, and SIGTERM stops it (and central) cleanly even with a
browser following the live trace log (an open event stream)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar

import pytest

from collector_harness import ROOT, Central, Services, edgetrail_binary, free_port, wait_until

PASSWORD = "portal-admin-password"


@pytest.fixture
def data():
    folder = tempfile.mkdtemp(prefix="et-portal-cli-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start(data, port, central="http://127.0.0.1:9"):
    process = subprocess.Popen(
        [edgetrail_binary(), "portal", "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--central", central,
         "--password-rounds", "210000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, EDGETRAIL_PORTAL_ADMIN_PASSWORD=PASSWORD))
    line = process.stdout.readline()
    while line and not line.startswith("portal: http://"):
        line = process.stdout.readline()
    assert line.startswith(f"portal: http://127.0.0.1:{port}/"), process.stderr.read()
    return process


def log_in(port):
    """An opener signed in as admin (session cookie kept), and its CSRF token."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    form = opener.open(f"http://127.0.0.1:{port}/login").read().decode()
    token = re.search(r'name="login_token" value="([^"]+)"', form).group(1)
    body = f"login_token={token}&next=%2Faccount&user=admin&password={PASSWORD}".encode()
    account = opener.open(f"http://127.0.0.1:{port}/login", data=body).read().decode()
    return opener, re.search(r'name="csrf" value="([^"]+)"', account).group(1)


def test_a_taken_port_is_refused_at_once(data):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.time()
        result = subprocess.run([edgetrail_binary(), "portal", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                                capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode != 0 and time.time() - started < 10
    assert f"127.0.0.1:{port}" in result.stderr and "--listen" in result.stderr, result.stderr


def test_oversized_input_is_refused_and_the_portal_keeps_serving(data):
    port = free_port()
    portal = start(data, port)
    try:
        opener, csrf = log_in(port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/drafts/check", data=b'{"name": "x", "spec": "' + b"a" * (3 << 20) + b'"}',
            headers={"Content-Type": "application/json", "X-CSRF-Token": csrf}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request)
        assert refused.value.code == 413
        # A login form far past its size, and one that is not a form at all.
        for body in (b"user=" + b"x" * (1 << 20), b"\xff\xfe\x00garbage"):
            with pytest.raises(urllib.error.HTTPError) as bad:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login", data=body)
            assert bad.value.code in (403, 413)
        assert portal.poll() is None
        assert "Signed in as <strong>admin</strong>" in opener.open(f"http://127.0.0.1:{port}/account").read().decode()
    finally:
        portal.send_signal(signal.SIGTERM)
        portal.wait(timeout=30)


def test_sigterm_stops_it_cleanly_while_a_live_log_is_open(data):
    services = Services()
    central = Central(services, "portal-cli", f"sqlite:{services.run_dir}/central.sqlite")
    port = free_port()
    portal = start(data, port, central=central.url)
    try:
        opener, _ = log_in(port)
        stream = opener.open(f"http://127.0.0.1:{port}/api/v1/live")
        assert stream.readline().startswith(b": following central")
        portal.send_signal(signal.SIGTERM)
        assert portal.wait(timeout=20) == 0, portal.stderr.read()
        stream.close()
        # Central the same, with a reader on its own live feed.
        reader = urllib.request.urlopen(f"{central.url}/v1/live")
        assert reader.readline().startswith(b": live sessions")
        central.process.send_signal(signal.SIGTERM)
        assert central.process.wait(timeout=20) == 0
        reader.close()
    finally:
        if portal.poll() is None:
            portal.kill()
        central.stop()
        services.close()
    # Started again on the same data: the users are there, no new admin is made.
    portal = start(data, free_port())
    portal.send_signal(signal.SIGTERM)
    assert portal.wait(timeout=20) == 0
