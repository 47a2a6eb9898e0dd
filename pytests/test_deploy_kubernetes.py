"""deploy/kubernetes/ checked offline: every manifest against the pinned Kubernetes schema
(kubernetes-validate, strict), and against the CLI it runs — the image is the one the project
builds, every subcommand and flag exists, the ports are the ones the processes listen on, and the
node's pipeline file passes the collector's own check with the local set-up's defaults."""

import copy
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from collector_harness import ROOT, edgetrail_binary

KUBERNETES = "1.37.0"
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
IMAGE = "edgetrail/edgetrail"
# Sample values for the $(VAR) references Kubernetes expands in args.
SAMPLE_ENV = {"NODE_NAME": "edge-7", "EDGE_INTERFACE": "eth1", "BROKERS": "kafka:9092", "STORE": "postgres://u@h:5432/d",
              "TOPIC": "edgetrail.telemetry", "GROUP": "edgetrail-central", "RETAIN": "7d"}


def documents():
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def pod_specs():
    for path, document in documents():
        template = document.get("spec", {}).get("template")
        if template:
            yield path, document, template["spec"]


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def edgetrail_containers():
    for path, document, spec in pod_specs():
        for container in spec["containers"]:
            if container["image"].startswith(IMAGE + ":") and container.get("args"):
                yield path, document, spec, container


def version():
    return subprocess.run([edgetrail_binary(), "--version"], capture_output=True, text=True, check=True).stdout.strip()


def expand(argument):
    return re.sub(r"\$\((\w+)\)", lambda match: SAMPLE_ENV[match.group(1)], argument)


def test_there_are_manifests_for_the_edge_node_central_and_the_portal():
    kinds = {(document["kind"], document["metadata"]["name"]) for _, document in documents()}
    assert ("DaemonSet", "edgetrail-edge") in kinds
    assert ("Deployment", "edgetrail-central") in kinds and ("Service", "edgetrail-central") in kinds
    assert ("Deployment", "edgetrail-portal") in kinds and ("Service", "edgetrail-portal") in kinds
    assert ("Secret", "edgetrail-central-store") in kinds and ("ConfigMap", "edgetrail-central") in kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_every_manifest_is_valid_against_the_pinned_schema(path):
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_schema_check_is_live_a_misspelled_field_is_refused():
    _, deployment = next((p, d) for p, d in documents() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "seventy"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES, strict=True)


def test_images_are_the_one_the_project_builds_at_its_version_or_pinned_third_party_ones():
    tag = version()
    dockerfile = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/usr/bin/edgetrail"]' in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert f"IMAGE := {IMAGE}" in makefile and "deploy/container/Dockerfile" in makefile
    seen = set()
    for path, _, spec in pod_specs():
        for container in containers(spec):
            image = container["image"]
            seen.add(image)
            if image.startswith(IMAGE + ":"):
                assert image == f"{IMAGE}:{tag}", f"{path.name}: {container['name']} runs {image}, the CLI is {tag}"
            else:
                name, _, pinned = image.partition(":")
                assert re.fullmatch(r"\d+(\.\d+)+", pinned), f"{path.name}: {image} is not pinned to a version"
    assert f"{IMAGE}:{tag}" in seen


def test_every_subcommand_and_flag_the_manifests_pass_exists_in_the_cli():
    checked = 0
    for path, _, _, container in edgetrail_containers():
        arguments = [expand(argument) for argument in container["args"]]
        words = []
        for argument in arguments:
            if argument.startswith("-"):
                break
            words.append(argument)
        shown = subprocess.run([edgetrail_binary(), *words, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0, f"{path.name}: 'edgetrail {' '.join(words)}' is not a command: {shown.stderr}"
        usage = shown.stdout
        for flag in (argument.split("=")[0] for argument in arguments if argument.startswith("--")):
            assert re.search(rf"(^|[\s\[]){re.escape(flag)}\b", usage, re.M), \
                f"{path.name}: {container['name']} passes {flag}, which 'edgetrail {' '.join(words)}' does not take"
        checked += 1
    assert checked >= 5  # datapath, collector, agent, central, portal


def test_a_flag_the_cli_does_not_take_would_be_caught():
    shown = subprocess.run([edgetrail_binary(), "central", "--help"], capture_output=True, text=True).stdout
    assert not re.search(r"(^|[\s\[])--partitions\b", shown)


def listen_port(arguments):
    if "--listen" in arguments:
        return int(arguments[arguments.index("--listen") + 1].rsplit(":", 1)[1])
    return None


def edge_files():
    config = next(d for _, d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "edgetrail-edge")
    return config["data"]


def test_ports_and_probes_are_the_ones_the_processes_listen_on():
    pipeline = yaml.safe_load(edge_files()["edge.yaml"])
    collector_ports = {int(pipeline["metrics"]["listen"].rsplit(":", 1)[1]), int(pipeline["sources"]["otlp"]["listen"].rsplit(":", 1)[1])}
    services = [d for _, d in documents() if d["kind"] == "Service"]
    for path, document, spec, container in edgetrail_containers():
        arguments = container["args"]
        declared = {port["containerPort"] for port in container.get("ports", [])}
        if arguments[0] == "collector":
            assert declared == collector_ports, f"the collector listens on {collector_ports}, the DaemonSet says {declared}"
        elif listen_port(arguments) is not None:
            assert declared == {listen_port(arguments)}, f"{path.name}: {container['name']} listens on {listen_port(arguments)}"
            assert arguments[arguments.index("--listen") + 1].startswith("0.0.0.0:"), "a Service reaches only 0.0.0.0"
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container and "httpGet" in container[probe]:
                assert container[probe]["httpGet"]["port"] in declared
        names = {port.get("name") for port in container.get("ports", [])}
        for service in services:
            if service["spec"]["selector"] == document["spec"]["selector"]["matchLabels"]:
                for port in service["spec"]["ports"]:
                    assert port["targetPort"] in names or port["targetPort"] in declared
                    assert port["port"] in declared


def test_the_service_port_defaults_match_the_local_set_up():
    by_command = {container["args"][0]: listen_port(container["args"]) for _, _, _, container in edgetrail_containers()}
    assert by_command["central"] == 7070 and by_command["portal"] == 8080
    central = next(c for _, _, _, c in edgetrail_containers() if c["args"][0] == "central")
    portal = next(c for _, _, _, c in edgetrail_containers() if c["args"][0] == "portal")
    assert "http://edgetrail-central:7070" in portal["args"]
    assert central["ports"][0]["containerPort"] == 7070


def flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def test_the_node_pipeline_passes_the_collectors_check_with_the_local_defaults(tmp_path):
    files = edge_files()
    # The ConfigMap mounted at /etc/edgetrail, its paths moved under tmp_path.
    text = files["edge.yaml"].replace("/etc/edgetrail", str(tmp_path / "etc")).replace("/var/lib/edgetrail", str(tmp_path / "data"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "edge.yaml").write_text(text)
    (tmp_path / "etc" / "default.rules").write_text(files["default.rules"])
    checked = subprocess.run([edgetrail_binary(), "collector", "--config", str(tmp_path / "etc" / "edge.yaml"), "--check"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.strip() == "ok", checked.stdout + checked.stderr
    # The same rules as the repository's default, and the same settings as collectors/edge.yaml
    # except where a cluster differs: addresses, paths and the flow source.
    assert files["default.rules"] == (ROOT / "filters" / "default.rules").read_text()
    local = flatten(yaml.safe_load((ROOT / "collectors" / "edge.yaml").read_text()))
    cluster = flatten(yaml.safe_load(files["edge.yaml"]))
    differ = {"collector.cnf", "collector.node", "collector.data_dir", "sources.otlp.socket", "filters.files",
              "sinks.kafka.brokers", "sources.flows.datapath"}
    for key in set(local) | set(cluster):
        if key not in differ:
            assert local.get(key) == cluster.get(key), f"{key}: local {local.get(key)!r}, cluster {cluster.get(key)!r}"
    # A pipeline the collector refuses is caught the same way.
    (tmp_path / "etc" / "edge.yaml").write_text(text.replace("compression: lz4", "compression: lz5"))
    refused = subprocess.run([edgetrail_binary(), "collector", "--config", str(tmp_path / "etc" / "edge.yaml"), "--check"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode != 0 and "compression" in refused.stdout


def test_the_datapath_has_the_capabilities_it_needs_and_central_runs_unprivileged():
    daemonset = next(d for _, d in documents() if d["kind"] == "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    datapath = next(c for c in spec["containers"] if c["name"] == "datapath")
    added = set(datapath["securityContext"]["capabilities"]["add"])
    assert {"BPF", "NET_ADMIN", "PERFMON"} <= added and not datapath["securityContext"].get("privileged")
    assert any(v.get("hostPath", {}).get("path") == "/sys/fs/bpf" for v in spec["volumes"])
    central = next(d for _, d in documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "edgetrail-central")
    pod = central["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    store = next(e for e in pod["containers"][0]["env"] if e["name"] == "STORE")
    assert store["valueFrom"]["secretKeyRef"]["name"] == "edgetrail-central-store"
