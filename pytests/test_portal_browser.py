"""The operator portal in a real headless Chromium (selenium, chromium-driver from Debian), as root,
against a real edge node, central and broker: log in, add the example CNF, see a bad rule's error
at its line, deploy it with live progress, watch the trace log fill while the client makes
requests, open a cookie's waterfall and find its flow and a snapshot, activate a filter file, and
as a viewer fail to delete the CNF. Each test saves a screenshot under .run/test-artifacts/browser/."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from collector_harness import ROOT, Central, Services, edgetrail_binary, free_port, terminate, wait_until

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="an edge node is network namespaces and eBPF: needs root"),
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="chromium-driver is not installed (make setup)"),
]

ADMIN_PASSWORD = "portal-admin-password"
VIEWER_PASSWORD = "portal-viewer-password"
SCREENSHOTS = pathlib.Path(os.environ.get("EDGETRAIL_TEST_ARTIFACTS", ROOT / ".run" / "test-artifacts")) / "browser"

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


class Stack:
    """A throwaway node, central on its topic, and the portal showing both."""

    def __init__(self):
        self.services = Services()
        self.name = f"p{uuid.uuid4().hex[:6]}"
        self.topic = f"portal-{self.name}"
        self.metrics = f"127.0.0.1:{free_port()}"
        self.env = dict(os.environ, EDGETRAIL_RUN_DIR=self.services.run_dir,
                        EDGETRAIL_REDIS_PORT=str(self.services.redis_port),
                        EDGETRAIL_BROKER_PORT=str(self.services.broker_port))
        up = self.run("node", "up", "--name", self.name, "--otlp", f"127.0.0.1:{free_port()}", "--metrics", self.metrics,
                      "--topic", self.topic, "--python", os.path.join(ROOT, ".venv", "bin", "python"))
        assert up.returncode == 0, up.stdout + up.stderr
        self.central = Central(self.services, self.topic, f"sqlite:{self.services.run_dir}/central.sqlite")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix="et-portal-", dir="/tmp")
        self.log = open(os.path.join(self.services.run_dir, "portal.log"), "ab")
        self.portal = subprocess.Popen(
            [edgetrail_binary(), "portal", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data, "--node", self.name,
             "--central", self.central.url, "--collector-metrics", f"http://{self.metrics}/metrics",
             "--run-dir", self.services.run_dir, "--password-rounds", "210000"],
            cwd=ROOT, stdout=self.log, stderr=self.log, env=dict(self.env, EDGETRAIL_PORTAL_ADMIN_PASSWORD=ADMIN_PASSWORD))
        wait_until(lambda: b"portal: http://" in pathlib.Path(self.log.name).read_bytes(), 30, "the portal to start")

    def run(self, *args, timeout=180):
        return subprocess.run([edgetrail_binary(), *args], capture_output=True, text=True, env=self.env, cwd=ROOT,
                              timeout=timeout)

    def client_get(self, path="/"):
        """A plain request from the client namespace; its HTTP status (the session's cookie in `last_cookie`)."""
        result = subprocess.run(["ip", "netns", "exec", f"{self.name}-client", "curl", "-s", "-o", "/dev/null", "-D", "-",
                                 "-w", "%{http_code}", f"http://10.201.0.2{path}"], capture_output=True, text=True, timeout=30)
        lines = result.stdout.strip().splitlines()
        self.last_cookie = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("edgetrail-cookie:")), None)
        return int(lines[-1]) if lines else 0

    def status(self):
        result = self.run("cnf", "status", "edgesecurity", "--node", self.name, "--json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def close(self):
        terminate(self.portal)
        self.log.close()
        self.central.stop()
        down = self.run("node", "down", "--name", self.name)
        self.services.close()
        shutil.rmtree(self.data, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def stack():
    made = Stack()
    yield made
    made.close()


@pytest.fixture(scope="module")
def browser():
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def screenshot(request):
    yield
    driver = request.node.funcargs.get("browser")
    if driver is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{request.node.name}.png"))


def log_in(browser, stack, user, password):
    browser.delete_all_cookies()
    browser.get(stack.url + "/login")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    submit_and_wait(browser, browser.find_element(By.ID, "login"))


def submit_and_wait(browser, button, seconds=15):
    """Clicks a form's button and waits for the page the form brings (a new document), so what
    follows reads that page, not the form."""
    browser.execute_script("window.__edgetrail_old_page = true;")

    def replaced():
        try:
            return browser.execute_script("return window.__edgetrail_old_page === undefined && document.readyState === 'complete';")
        except WebDriverException:
            return False  # mid-navigation

    button.click()
    wait_until(replaced, seconds, "the page after the form")


def text_of(browser, css):
    """The text of what `css` selects; "" while the page is being replaced."""
    try:
        return "\n".join(element.text for element in browser.find_elements(By.CSS_SELECTOR, css))
    except StaleElementReferenceException:
        return ""


def test_log_in(stack, browser):
    log_in(browser, stack, "admin", "not-the-password")
    assert "The user name or password is not right." in browser.page_source
    log_in(browser, stack, "admin", ADMIN_PASSWORD)
    wait_until(lambda: "admin (operator)" in text_of(browser, "header"), 10, "the dashboard after log in")
    assert stack.name in text_of(browser, "#nodes")
    # The session cookie is not readable by scripts.
    session = next(cookie for cookie in browser.get_cookies() if cookie["name"] == "edgetrail_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"


def test_add_the_example_and_see_a_bad_rule_at_its_line(stack, browser):
    browser.get(stack.url + "/cnfs/new")
    Select(browser.find_element(By.ID, "source")).select_by_value("example:edgesecurity")
    submit_and_wait(browser, browser.find_element(By.ID, "add-cnf"))
    assert browser.current_url.endswith("/cnfs/edit/edgesecurity")
    wait_until(lambda: "Checks: no errors." in text_of(browser, "#check-state"), 10, "the editor's check")
    spec = browser.find_element(By.ID, "spec")
    original = spec.get_attribute("value")
    bad = original.replace("10.201.0.99 * : deny", "10.201.0.99 * : dney")
    # Typed: the editor checks as the text changes.
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", spec, bad)
    problem = wait_until(lambda: text_of(browser, "#problems li.error"), 10, "the editor to show the error")
    # The same line, column and message as `edgetrail cnf validate` on the same text.
    folder = tempfile.mkdtemp(prefix="et-bad-")
    shutil.copytree(os.path.join(ROOT, "examples", "edgesecurity"), folder, dirs_exist_ok=True)
    pathlib.Path(folder, "cnf.yaml").write_text(bad)
    validate = stack.run("cnf", "validate", os.path.join(folder, "cnf.yaml"))
    shutil.rmtree(folder)
    expected = validate.stdout.strip().split("\n")[0].replace(os.path.join(folder, "cnf.yaml"), "cnf.yaml")
    assert "unknown action 'dney'" in expected
    assert problem == expected
    assert "not deployable" in text_of(browser, "#check-state")
    # Saving it is refused; the saved spec is unchanged.
    submit_and_wait(browser, browser.find_element(By.ID, "save"))
    assert expected in text_of(browser, "#problems")
    browser.get(stack.url + "/cnfs/edit/edgesecurity")
    assert browser.find_element(By.ID, "spec").get_attribute("value") == original


def test_deploy_it_with_live_progress(stack, browser):
    browser.get(stack.url + "/cnfs/edit/edgesecurity")
    submit_and_wait(browser, browser.find_element(By.ID, "deploy"))
    assert "/deployments/" in browser.current_url
    outcome = wait_until(lambda: "running" in text_of(browser, "#outcome") and text_of(browser, "#outcome"), 120,
                         "the deploy's outcome")
    assert outcome == "Version 1 is running."
    steps = text_of(browser, "#progress li")
    assert "handlers: 3 files load" in steps and "datapath: 3 rules applied" in steps
    assert stack.status()["cnf"]["version"] == 1
    browser.get(stack.url + "/cnfs")
    table = text_of(browser, "#cnf-instances")
    assert "edgesecurity" in table and stack.name in table and "http-proxy, policy-mgr, content-inspect" in table
    assert text_of(browser, ".microservices").count("running") == 3


def set_file(browser, path, text):
    """Types `text` into the editor's box for `path`."""
    area = browser.find_element(By.CSS_SELECTOR, f"textarea[data-file='{path}']")
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                           area, text)
    return area


def test_a_failed_update_is_reported_and_version_1_keeps_running(stack, browser):
    pids = {pod["name"]: pod["pid"] for pod in stack.status()["pods"]}
    browser.get(stack.url + "/cnfs/edit/edgesecurity")
    original = browser.find_element(By.CSS_SELECTOR, "textarea[data-file='handlers/on_inspect.py']").get_attribute("value")
    # It compiles, so the editor saves it; the node finds it does not import.
    set_file(browser, "handlers/on_inspect.py", "import no_such_module_here\n\ndef handle(event, ctx):\n    pass\n")
    submit_and_wait(browser, browser.find_element(By.ID, "save"))
    assert "Saved edgesecurity." in browser.page_source
    submit_and_wait(browser, browser.find_element(By.ID, "deploy"))
    outcome = wait_until(lambda: text_of(browser, "#outcome.error"), 120, "the update's failure")
    assert "Rolled back: version 1 keeps running." in outcome
    assert "handlers/on_inspect.py:1: importing it raised ModuleNotFoundError: No module named 'no_such_module_here'" in outcome
    status = stack.status()
    assert status["cnf"]["version"] == 1 and {pod["name"]: pod["pid"] for pod in status["pods"]} == pids
    assert stack.client_get("/") == 200
    # Back to the handler that works, for the tests after this one.
    browser.get(stack.url + "/cnfs/edit/edgesecurity")
    set_file(browser, "handlers/on_inspect.py", original)
    submit_and_wait(browser, browser.find_element(By.ID, "save"))
    assert "Saved edgesecurity." in browser.page_source


def test_the_trace_log_fills_while_the_client_makes_requests(stack, browser):
    browser.get(stack.url + "/tracing/live?cnf=edgesecurity")
    browser.find_element(By.ID, "start-trace").click()
    wait_until(lambda: "following edgesecurity" in text_of(browser, "#live-state"), 10, "the log to start")
    for _ in range(5):
        assert stack.client_get("/") == 200
    rows = wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#live-log tbody tr")) >= 5 and
                      browser.find_elements(By.CSS_SELECTOR, "#live-log tbody tr"), 60, "five sessions in the log")
    assert "edgesecurity" in rows[0].text and "http-proxy" in rows[0].text
    browser.find_element(By.ID, "stop-trace").click()
    assert stack.client_get("/") == 200
    time.sleep(3)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#live-log tbody tr")) == len(rows), "a stopped log stays still"
    browser.find_element(By.ID, "clear-trace").click()
    assert not browser.find_elements(By.CSS_SELECTOR, "#live-log tbody tr")
    assert text_of(browser, "#live-counts") == "0 sessions shown"
    # Open one of the sessions again from the log.
    browser.find_element(By.ID, "start-trace").click()
    wait_until(lambda: "following" in text_of(browser, "#live-state"), 10, "the log to restart")
    assert stack.client_get("/") == 200
    link = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#live-log a.cookie"), 60, "a new session")
    stack.cookie = link[0].text
    assert len(stack.cookie) == 16


def test_a_cookies_waterfall_shows_its_flow_and_a_snapshot(stack, browser):
    browser.get(stack.url + f"/tracing/sessions/{stack.cookie}")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "details.flow"), 10, "the waterfall")
    flow = browser.find_element(By.CSS_SELECTOR, "details.flow")
    assert "tcp 10.200.0.2:" in flow.text and "10.201.0.2:80" in flow.text
    flow.find_element(By.TAG_NAME, "summary").click()
    assert "action\nredirect" in flow.text
    snapshots = browser.find_elements(By.CSS_SELECTOR, "details.snapshot")
    assert snapshots, "the session's Redis snapshots are on the axis"
    snapshots[0].find_element(By.TAG_NAME, "summary").click()
    assert f"cookie:{stack.cookie}:" in snapshots[0].text
    spans = text_of(browser, "details.span summary")
    assert "event request_received" in spans and "policy_mgr.check" in spans


def test_activate_a_filter_file(stack, browser):
    browser.get(stack.url + "/filters")
    rules = browser.find_element(By.ID, "rules")
    # A rule with a mistake first: shown at its line as it is typed.
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", rules,
                           '# no upstream spans\ndrop span where span.operaton == "upstream GET"\n')
    problem = wait_until(lambda: text_of(browser, "#problems li"), 10, "the lint error")
    assert problem.startswith("active.rules:2:17: unknown field span.operaton")
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", rules,
                           '# no upstream spans\ndrop span where span.operation == "upstream GET"\n')
    wait_until(lambda: "Lint: ok (1 rules)." in text_of(browser, "#check-state"), 10, "the lint to pass")
    # A dry run over the sample capture gives the figures of `edgetrail filters test`.
    Select(browser.find_element(By.ID, "capture")).select_by_value("file:sample.capture")
    submit_and_wait(browser, browser.find_element(By.ID, "dry-run-button"))
    report = text_of(browser, "#dry-run")
    rule_file = pathlib.Path(stack.services.run_dir, "upstream.rules")
    rule_file.write_text('# no upstream spans\ndrop span where span.operation == "upstream GET"\n')
    cli = stack.run("filters", "test", str(rule_file), "--input", os.path.join(ROOT, "filters", "testdata", "sample.capture"))
    figures = [line for line in cli.stdout.splitlines() if line.startswith(("cookies:", "records:", "bytes:"))]
    assert len(figures) == 3 and all(line in report.splitlines() for line in figures), (report, cli.stdout)
    # Activated: the collector applies it (the file as the browser sent it, CRLF line breaks and
    # all), and a new session has no upstream span.
    submit_and_wait(browser, browser.find_element(By.ID, "activate"), seconds=20)
    note = text_of(browser, "#filters-note")
    assert note == f"Activated on {stack.name}: the collector applied the rules."
    assert stack.client_get("/") == 200
    timeline = stack.central.wait_for(stack.last_cookie, {"spans": 5, "flows": 1})
    operations = [span["operation"] for span in timeline["spans"]]
    assert "upstream GET" not in operations and "event request_received" in operations


def test_a_viewer_fails_to_delete(stack, browser):
    browser.get(stack.url + "/account")
    add = browser.find_element(By.CSS_SELECTOR, "form[action='/account/users']")
    add.find_element(By.NAME, "name").send_keys("vera")
    Select(add.find_element(By.NAME, "role")).select_by_value("viewer")
    add.find_element(By.NAME, "password").send_keys(VIEWER_PASSWORD)
    submit_and_wait(browser, add.find_element(By.ID, "add-user"))
    assert "Added vera (viewer)." in browser.page_source
    submit_and_wait(browser, browser.find_element(By.ID, "logout"))
    log_in(browser, stack, "vera", VIEWER_PASSWORD)
    wait_until(lambda: "vera (viewer)" in text_of(browser, "header"), 10, "the viewer's dashboard")
    browser.get(stack.url + "/cnfs")
    assert not browser.find_elements(By.CSS_SELECTOR, ".delete-cnf"), "a viewer is offered no Del CNF"
    # Posted anyway, with the viewer's own session and CSRF token: refused.
    status = browser.execute_script(
        "const token = document.querySelector('meta[name=csrf-token]').content;"
        "const response = await fetch(arguments[0], {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
        " body: 'csrf=' + token});"
        "return response.status;", f"/cnfs/{stack.name}/edgesecurity/delete")
    assert status == 403
    assert stack.status()["cnf"]["version"] == 1, "the CNF keeps running"
    browser.get(stack.url + "/cnfs")
    assert "edgesecurity" in text_of(browser, "#cnf-instances")
