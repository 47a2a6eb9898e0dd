"""Central scaled out: three `edgetrail central` instances in one consumer group on one PostgreSQL,
fed by two collectors (two nodes) through the real broker. One instance is SIGKILLed mid-stream and
another added; afterwards every record is stored exactly once and every cookie reconstructs
identically from each instance."""

import base64
import json
import os
import random
import subprocess
import time
import urllib.request

import pytest

from collector_harness import Central, Collector, Services, edgetrail_binary, free_port, wait_until

COOKIES = 50_000
PARTITIONS = 6
BASE_NS = 1_795_000_000_000_000_000
SPACING_NS = 10_000_000  # cookie i's flow starts at BASE + i * 10 ms and lasts 5 ms
PAGE = 10_000

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as the postgres user, which needs root")


def flow_line(cookie, node, phase, index):
    start = BASE_NS + index * SPACING_NS
    tuple_ = {"srcIp": base64.b64encode(bytes([10, 200, (index >> 8) & 0xFF, index & 0xFF])).decode(),
              "dstIp": base64.b64encode(bytes([10, 201, 0, 2])).decode(),
              "srcPort": 20000 + index % 40000, "dstPort": 80, "protocol": 6}
    event = {"phase": phase, "tuple": tuple_, "action": "DATAPATH_ACTION_REDIRECT", "startNs": str(start)}
    if phase == "FLOW_PHASE_END":
        event.update(endNs=str(start + 5_000_000), packetsIn="6", packetsOut="4", bytesIn="900", bytesOut="4200")
    return json.dumps({"cookie": str(cookie), "node": node, "event": event})


def write_flows(path, node, indexes):
    """A recording of one connection (start, end) per cookie; cookie i is 0x10000 + i."""
    with open(path, "w") as out:
        for index in indexes:
            for phase in ("FLOW_PHASE_START", "FLOW_PHASE_END"):
                out.write(flow_line(0x10000 + index, node, phase, index) + "\n")


class Postgres:
    def __init__(self, services):
        self.services = services
        self.port = free_port()
        self.cli("up")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/edgetrail"

    def cli(self, verb):
        subprocess.run([edgetrail_binary(), "infra", verb, "--only", "postgres", "--run-dir", self.services.run_dir,
                        "--postgres-port", str(self.port)], check=verb == "up", capture_output=True)

    def scalar(self, sql):
        result = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "edgetrail",
                                 "-Atc", sql], capture_output=True, text=True, check=True)
        return int(result.stdout.strip())


def fetch(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def capture_records(central):
    """Every stored cookie's records from one instance, as {cookie: sorted serialized records},
    read page by page through /v1/capture (time windows of PAGE cookies)."""
    from edgetrail.v1 import telemetry_pb2

    cookies = {}
    for page in range(COOKIES // PAGE):
        since = BASE_NS + page * PAGE * SPACING_NS
        until = since + PAGE * SPACING_NS - 1
        data = fetch(f"{central.url}/v1/capture?since={since}&until={until}&limit={PAGE}")
        offset = 0
        while offset < len(data):
            size = int.from_bytes(data[offset:offset + 4], "little")
            batch = telemetry_pb2.CookieBatch.FromString(data[offset + 4:offset + 4 + size])
            offset += 4 + size
            cookies[batch.cookie] = sorted(record.SerializeToString(deterministic=True) for record in batch.records)
    return cookies


def metric_total(instances, name):
    total = 0.0
    for instance in instances:
        try:
            total += instance.metric(name)
        except OSError:
            pass
    return total


def test_three_instances_in_one_group_store_every_record_once_through_a_kill_and_an_addition():
    services = Services()
    postgres = Postgres(services)
    topic = f"scale-{random.randrange(1 << 30)}"
    group = "central-scale"
    collectors, instances = [], []
    try:
        flows_a, flows_b = f"{services.run_dir}/flows-a.jsonl", f"{services.run_dir}/flows-b.jsonl"
        write_flows(flows_a, "edge-a", range(0, COOKIES, 2))
        write_flows(flows_b, "edge-b", range(1, COOKIES, 2))
        # Three instances first: the group forms on the topic the collectors create.
        instances = [Central(services, topic, postgres.url, group=group, name=f"central-{n}") for n in range(3)]
        # Two nodes streaming for ~20 s each (2,500 flow events a second).
        collectors = [Collector(services, topic, idle="1s", settle="100ms", flows=flows, flow_rate=2500, name=f"collector-{node}",
                                node=f"edge-{node}", partitions=PARTITIONS)
                      for node, flows in (("a", flows_a), ("b", flows_b))]
        # The collectors created the topic with the partitions their settings name, and the group
        # spread them over the three instances.
        wait_until(lambda: metric_total(instances, "edgetrail_central_partitions") == PARTITIONS, seconds=60,
                   what=f"the group to hold all {PARTITIONS} partitions")
        assert all(instance.metric("edgetrail_central_partitions") >= 1 for instance in instances)

        # Mid-stream: one instance is SIGKILLed (no commit, no leaving the group), one is added.
        wait_until(lambda: metric_total(instances, 'edgetrail_central_records_total{outcome="inserted"}') >= 20_000,
                   seconds=120, what="20,000 records stored")
        killed = instances[1]
        killed.process.kill()
        killed.process.wait()
        assert postgres.scalar("SELECT count(*) FROM records") < 2 * COOKIES, "the kill was not mid-stream"
        instances[1] = Central(services, topic, postgres.url, group=group, name="central-3")

        # Everything arrives: 2 records per cookie, each stored once.
        wait_until(lambda: postgres.scalar("SELECT count(*) FROM records") >= 2 * COOKIES, seconds=300,
                   what=f"all {2 * COOKIES} records stored")
        wait_until(lambda: sum(instance.metric("edgetrail_central_lag") for instance in instances) == 0
                   and metric_total(instances, "edgetrail_central_partitions") == PARTITIONS,
                   seconds=60, what="the group to catch up")
        time.sleep(2)  # anything still redelivered has had time to arrive
        assert postgres.scalar("SELECT count(*) FROM records") == 2 * COOKIES
        assert postgres.scalar("SELECT count(*) FROM cookies") == COOKIES
        assert postgres.scalar("SELECT count(*) FROM (SELECT cookie FROM records GROUP BY cookie HAVING count(*) <> 2) x") == 0
        assert postgres.scalar("SELECT count(DISTINCT node) FROM cookies") == 2
        for collector in collectors:
            assert collector.metric("edgetrail_collector_records_out_total") >= COOKIES  # one node's half, 2 each

        # Every cookie reconstructs identically from each instance.
        reference = capture_records(instances[0])
        assert len(reference) == COOKIES and all(len(records) == 2 for records in reference.values())
        for instance in instances[1:]:
            assert capture_records(instance) == reference
        sample = random.Random(7).sample(sorted(reference), 300)
        for cookie in sample:
            timelines = {fetch(f"{instance.url}/v1/cookies/{cookie:016x}") for instance in instances}
            assert len(timelines) == 1, f"cookie {cookie:016x} differs between instances"
            timeline = json.loads(timelines.pop())
            # The connection's start and end make one flow on the timeline, with the end's counts.
            assert len(timeline["flows"]) == 1 and timeline["flows"][0]["bytesOut"] == 4200
    finally:
        for collector in collectors:
            collector.stop()
        for instance in instances:
            instance.stop()
        postgres.cli("down")
        services.close()
