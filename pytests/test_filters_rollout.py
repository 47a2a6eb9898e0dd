"""Filter rules authored once and rolled out over Kafka (`edgetrail filters publish` / `status`),
on the real broker with real collectors: a publish reaches the collectors its selector names and no
other; spans a published rule drops never reach central; a set with a lint error is refused by the
CLI; one a collector's own check refuses is reported there while its old rules stay; a collector
down during a publish applies it when it starts; one started with the broker down filters with the
set it applied last."""

import os
import subprocess
import uuid

import pytest

from collector_harness import ROOT, Central, Collector, Services, consume, edgetrail_binary, export_sessions, wait_until


@pytest.fixture
def services():
    started = Services()
    yield started
    started.close()


class Rollout:
    """One rule set name on a private control topic and status topic."""

    def __init__(self, services, name="canary"):
        self.services = services
        self.name = name
        suffix = uuid.uuid4().hex[:8]
        self.topic = f"filters-{suffix}"
        self.status_topic = f"filters-status-{suffix}"

    @property
    def collector_setting(self):
        return (self.topic, self.name, self.status_topic)

    def rules(self, file_name, text):
        path = os.path.join(self.services.run_dir, file_name)
        with open(path, "w") as out:
            out.write(text)
        return path

    def publish(self, *files, selector=None):
        args = [edgetrail_binary(), "filters", "publish", *files, "--name", self.name, "--brokers", self.services.brokers,
                "--topic", self.topic]
        if selector:
            args += ["--selector", selector]
        return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60)

    def status(self):
        return subprocess.run([edgetrail_binary(), "filters", "status", self.name, "--brokers", self.services.brokers,
                               "--topic", self.topic, "--status-topic", self.status_topic],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    def wait_status(self, *expected, seconds=60):
        """`filters status` once every expected text is in it."""
        def ready():
            result = self.status()
            return result if all(text in result.stdout for text in expected) else None
        return wait_until(ready, seconds=seconds, what=f"filters status to show {expected}")


def operations(batches):
    seen = {}
    for batch in batches:
        for record in batch.records:
            seen.setdefault(batch.cookie, []).append(record.span.operation)
    return seen


def test_a_publish_reaches_the_selected_collectors_and_what_it_drops_never_reaches_central(services):
    rollout = Rollout(services)
    data = f"rollout-{uuid.uuid4().hex[:8]}"
    collectors = {node: Collector(services, data, settle="200ms", name=f"collector-{node}", node=node,
                                  published=rollout.collector_setting)
                  for node in ("edge-a1", "edge-a2", "edge-b")}
    central = Central(services, data, f"sqlite:{services.run_dir}/central.sqlite",
                      extra=("--filters-topic", rollout.topic, "--filters-status-topic", rollout.status_topic))
    try:
        rules = rollout.rules("drop-op1.rules", 'drop span where span.operation == "op1"\n')
        published = rollout.publish(rules, selector="node=edge-a*")
        assert published.returncode == 0, published.stdout + published.stderr
        assert f"published canary version 1 (1 file, selector node=edge-a*,cnf=*) to {rollout.topic}" in published.stdout
        status = rollout.wait_status("edge-a1: version 1 applied", "edge-a2: version 1 applied")
        assert "edge-b" not in status.stdout, "the selector leaves edge-b out"
        # Central serves the same rollout, for the portal.
        code, body = central.get("/v1/filters?name=canary")
        assert code == 200, body
        [rollout_view] = body["rollouts"]
        assert (rollout_view["name"], rollout_view["version"], rollout_view["selector"]) == ("canary", 1, "node=edge-a*,cnf=*")
        assert [(n["node"], n["version"], n["outcome"]) for n in rollout_view["nodes"]] == [
            ("edge-a1", 1, "applied"), ("edge-a2", 1, "applied")]

        cookies = {node: [0x00A0000000000000 + index * 16 + position for index in range(50)]
                   for position, node in enumerate(collectors)}
        for node, collector in collectors.items():
            export_sessions(collector.endpoint, cookies[node], 4)
        for collector in collectors.values():
            assert collector.wait_metric("edgetrail_collector_batches_out_total", at_least=50, seconds=30) >= 50
        wanted = {cookie for values in cookies.values() for cookie in values}
        seen = operations(consume(services.brokers, data, lambda got: {b.cookie for b in got} >= wanted))
        for node in ("edge-a1", "edge-a2"):
            for cookie in cookies[node]:
                assert sorted(seen[cookie]) == ["op0", "op2", "op3"], f"{node} drops op1"
        for cookie in cookies["edge-b"]:
            assert sorted(seen[cookie]) == ["op0", "op1", "op2", "op3"], "edge-b keeps its rules"
        # Central has what the topic carried: a selected node's session without op1.
        timeline = central.wait_for(f"{cookies['edge-a1'][0]:016x}", {"spans": 3})
        assert sorted(span["operation"] for span in timeline["spans"]) == ["op0", "op2", "op3"]
        assert collectors["edge-a1"].metric("edgetrail_collector_filter_rule_matches_total",
                                            'rule="canary@v1/drop-op1.rules:1"') == 50
    finally:
        for collector in collectors.values():
            collector.stop()
        central.stop()


def test_a_rule_set_with_a_lint_error_is_refused_by_the_cli_and_nothing_is_published(services):
    rollout = Rollout(services)
    bad = rollout.rules("bad.rules", 'drop span where span.operaton == "op1"\n')
    result = rollout.publish(bad)
    assert result.returncode == 1
    assert f"{bad}:1:17:" in result.stdout and "operaton" in result.stdout
    assert "nothing published" in result.stderr
    status = rollout.status()
    assert status.returncode == 1 and "no rule set named 'canary' was published" in status.stderr


@pytest.mark.parametrize("name", ["Bad Name", "", "9lives", "x" * 64])
def test_a_name_that_is_not_a_rule_set_name_is_refused_before_the_broker_is_asked(name):
    # Nothing listens on port 9: the name is refused first, with what a name may be.
    result = subprocess.run(
        [edgetrail_binary(), "filters", "publish", "filters/default.rules", "--name", name, "--brokers", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: --name '{name}' is not a rule set name: use 1-63 lowercase letters, "
                                     "digits, '-' or '_', starting with a letter")


def test_a_set_a_collector_cannot_apply_is_refused_there_with_the_reason_and_its_rules_stay(services):
    rollout = Rollout(services)
    data = f"refuse-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, data, settle="200ms", node="edge-r", published=rollout.collector_setting)
    try:
        assert rollout.publish(rollout.rules("v1.rules", 'drop span where span.operation == "op1"\n')).returncode == 0
        rollout.wait_status("edge-r: version 1 applied")
        # Lints, but this collector has no flow source: the rule could never apply here.
        flows = rollout.rules("flows.rules", "drop flow where flow.dport == 443\n")
        assert rollout.publish(flows).returncode == 0
        status = rollout.wait_status("edge-r: version 2 REFUSED")
        assert status.returncode == 1
        assert "canary@v2/flows.rules:1:1: this collector has no flow source (sources.flows)" in status.stdout
        assert collector.wait_metric("edgetrail_collector_source_events_total", 'source="filters",event="reload_refused"') == 1
        assert collector.metric("edgetrail_collector_source_events_total", 'source="filters",event="reload_applied"') == 1
        export_sessions(collector.endpoint, [0x00B0000000000001], 4)
        # Shipped (the topic exists) before a reader subscribes to it.
        assert collector.wait_metric("edgetrail_collector_batches_out_total", at_least=1, seconds=30) >= 1
        seen = operations(consume(services.brokers, data, lambda got: any(b.cookie == 0x00B0000000000001 for b in got)))
        assert sorted(seen[0x00B0000000000001]) == ["op0", "op2", "op3"], "version 1 is still in force"
    finally:
        collector.stop()


def test_a_collector_down_during_a_publish_applies_it_on_start_and_one_started_without_the_broker_uses_its_last(services):
    rollout = Rollout(services)
    data = f"restart-{uuid.uuid4().hex[:8]}"
    collector = Collector(services, data, settle="200ms", node="edge-d", published=rollout.collector_setting)
    assert rollout.publish(rollout.rules("v1.rules", 'drop span where span.operation == "op1"\n')).returncode == 0
    rollout.wait_status("edge-d: version 1 applied")
    collector.stop()
    # Published while the collector is down; applied when it is back.
    assert rollout.publish(rollout.rules("v2.rules", 'drop span where span.operation == "op2"\n')).returncode == 0
    status = rollout.status()
    assert "edge-d: has not answered version 2 (last: version 1 applied" in status.stdout
    collector.log = open(os.path.join(services.run_dir, "collector.log"), "ab")
    collector.start()
    try:
        rollout.wait_status("edge-d: version 2 applied")
    finally:
        collector.stop()
    # With the broker gone, a start filters with version 2 from the data directory at once.
    subprocess.run([edgetrail_binary(), "infra", "down", "--only", "broker", "--run-dir", services.run_dir,
                    "--redis-port", str(services.redis_port), "--broker-port", str(services.broker_port)],
                   check=True, capture_output=True)
    collector.log = open(os.path.join(services.run_dir, "collector.log"), "ab")
    collector.start()
    try:
        export_sessions(collector.endpoint, [0x00C0000000000001], 4)
        assert collector.wait_metric("edgetrail_collector_filter_rule_matches_total",
                                     'rule="canary@v2/v2.rules:1"', at_least=1, seconds=20) == 1
        assert collector.metric("edgetrail_collector_filter_rule_matches_total", 'rule="canary@v1/v1.rules:1"') == 0
    finally:
        collector.stop()
