"""The live trace log in a real browser at a steady rate: sessions are produced to the broker as
CookieBatches (what collectors ship), central stores them and feeds its live stream, the portal
relays it, and headless Chromium shows it. Prints what the page shows against what was sent,
how long after the last send the page had it all, and the page's own script time.

    .venv/bin/python scripts/bench-portal-browser.py [--rate 1000] [--seconds 10] [--edgetrail .build/release/edgetrail]
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pytests"))

import collector_harness  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from edgetrail.v1 import telemetry_pb2  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="sessions a second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--edgetrail", default=str(ROOT / ".build" / "release" / "edgetrail"))
    args = parser.parse_args()
    if not os.path.exists(args.edgetrail):
        sys.exit(f"{args.edgetrail} is missing; build it (swift build -c release --product edgetrail) or pass --edgetrail")
    if shutil.which("chromedriver") is None:
        sys.exit("chromium-driver is not installed; run make setup")
    collector_harness.edgetrail_binary = lambda: args.edgetrail

    services = collector_harness.Services()
    topic = "bench-portal"
    central = collector_harness.Central(services, topic, f"sqlite:{services.run_dir}/central.sqlite")
    port = collector_harness.free_port()
    data = tempfile.mkdtemp(prefix="et-bench-portal-")
    log = open(os.path.join(services.run_dir, "portal.log"), "ab")
    portal = subprocess.Popen(
        [args.edgetrail, "portal", "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--central", central.url,
         "--run-dir", services.run_dir, "--password-rounds", "210000"],
        cwd=ROOT, stdout=log, stderr=log, env=dict(os.environ, EDGETRAIL_PORTAL_ADMIN_PASSWORD="bench-admin-password"))
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        deadline = time.time() + 30
        while b"portal: http://" not in pathlib.Path(log.name).read_bytes():
            if time.time() > deadline:
                sys.exit("the portal did not start; see " + log.name)
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        browser.get(url + "/login")
        browser.find_element(By.ID, "user").send_keys("admin")
        browser.find_element(By.ID, "password").send_keys("bench-admin-password")
        browser.find_element(By.ID, "login").click()
        deadline = time.time() + 15
        while "admin (operator)" not in browser.page_source:
            if time.time() > deadline:
                sys.exit("could not log in to the portal; see " + log.name)
            time.sleep(0.1)
        browser.get(url + "/tracing/live?cnf=bench")
        browser.find_element(By.ID, "start-trace").click()
        # Counts the page's long tasks (main thread busy > 50 ms) while the log runs.
        browser.execute_script(
            "window.__long = {count: 0, ms: 0};"
            "new PerformanceObserver(function (list) { list.getEntries().forEach(function (e) {"
            " window.__long.count += 1; window.__long.ms += e.duration; }); }).observe({entryTypes: ['longtask']});")
        time.sleep(1)

        producer = Producer({"bootstrap.servers": services.brokers, "linger.ms": 5})
        total = int(args.rate * args.seconds)
        start = time.time()
        for index in range(total):
            due = start + index / args.rate
            now = time.time()
            if due > now:
                time.sleep(due - now)
            batch = telemetry_pb2.CookieBatch(cookie=index + 1, cnf="bench", node="edge-1", final=True)
            record = batch.records.add()
            record.cookie = index + 1
            record.service = "http-proxy"
            record.cnf = "bench"
            record.span.trace_id = (index + 1).to_bytes(16, "big")
            record.span.span_id = (index + 1).to_bytes(8, "big")
            record.span.operation = "HTTP GET"
            record.span.start_ns = time.time_ns()
            record.span.end_ns = record.span.start_ns + 1_000_000
            producer.produce(topic, key=f"{index + 1:016x}".encode(), value=batch.SerializeToString())
            producer.poll(0)
        producer.flush(30)
        sent_at = time.time()
        offered = sent_at - start

        def shown():
            text = browser.find_element(By.ID, "live-counts").text
            return int(text.split()[0]), text

        count, text = shown()
        while count < total and time.time() < sent_at + 60:
            time.sleep(0.1)
            count, text = shown()
        caught_up = time.time() - sent_at
        long_tasks = browser.execute_script("return window.__long;")
        rows = len(browser.find_elements(By.CSS_SELECTOR, "#live-log tbody tr"))
        print(f"live trace log in headless Chromium, {total} sessions produced at {args.rate}/s over {offered:.2f} s "
              f"(broker -> central -> portal -> browser):")
        print(f"  the page shows: {text!r}; {rows} rows kept")
        print(f"  the page had every session {caught_up:.2f} s after the last was produced "
              f"(events come at most 5 a second, so up to ~0.2 s is batching)")
        print(f"  long tasks (main thread busy > 50 ms) while it ran: {long_tasks['count']}, {long_tasks['ms']:.0f} ms in all")
        kept_up = count >= total and "not shown" not in text and caught_up < 2
        print(f"  (target: the browser keeps up with {args.rate} sessions/s: {'met' if kept_up else 'NOT MET'})")
    finally:
        browser.quit()
        collector_harness.terminate(portal)
        log.close()
        central.stop()
        services.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
