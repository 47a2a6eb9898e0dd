import EdgetrailCollector
import EdgetrailCore
import Foundation
import Testing

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

private func problems(_ fixture: String) -> [String] {
    do {
        _ = try CollectorConfiguration.load(path: "\(root)/collectors/testdata/\(fixture)")
        return []
    } catch {
        return error.diagnostics.map { $0.description.replacingOccurrences(of: "\(root)/", with: "") }
    }
}

@Suite("Collector pipeline files")
struct CollectorConfigurationTests {
    @Test("the shipped collectors/edge.yaml is valid and says what infra up starts")
    func shippedPipeline() throws {
        let configuration = try CollectorConfiguration.load(path: "\(root)/collectors/edge.yaml")
        #expect(configuration.kafka.brokers == "127.0.0.1:19092")
        #expect(configuration.kafka.topic == "edgetrail.telemetry")
        #expect(configuration.otlp?.port == 4317)
        #expect(configuration.snapshots?.endpoint == .tcp(host: "127.0.0.1", port: 16379))
        #expect(configuration.join.cnf == "edgesecurity")
        #expect(configuration.join.idleTimeoutNanoseconds == 30_000_000_000)
        #expect(configuration.kafka.spool.capacityBytes == 256 << 20)
    }

    @Test("bad_unknown_field: an unknown field is reported where it is")
    func unknownField() {
        #expect(problems("bad_unknown_field.yaml") == [
            "collectors/testdata/bad_unknown_field.yaml:3:3: unknown field 'nodes' in 'collector' (expected one of: cnf, node, data_dir, intake_journal_bytes)"
        ])
    }

    @Test("bad_duplicate_key: a key given twice is named where it first appears, not with the whole file")
    func duplicateKey() {
        #expect(problems("bad_duplicate_key.yaml") == [
            "collectors/testdata/bad_duplicate_key.yaml:6:5: the key 'topic' is given more than once in the same mapping (first here); keep one"
        ])
    }

    @Test("bad_no_sources: a pipeline without a source is refused")
    func noSources() {
        #expect(problems("bad_no_sources.yaml") == [
            "collectors/testdata/bad_no_sources.yaml:1:1: no sources: configure at least one of otlp, flows, snapshots under 'sources'"
        ])
    }

    @Test("bad_values: every bad value is reported, each at its own line and column")
    func badValues() {
        #expect(problems("bad_values.yaml") == [
            "collectors/testdata/bad_values.yaml:3:13: '127.0.0.1:99999' is not an address; write it as HOST:PORT, e.g. 127.0.0.1:4317",
            "collectors/testdata/bad_values.yaml:4:16: 'keep' is not a valid no_cookie policy (expected one of: drop, bucket)",
            "collectors/testdata/bad_values.yaml:5:24: 'lots' is not a size; write it like 4194304, 64KiB or 256MiB",
            "collectors/testdata/bad_values.yaml:7:17: 'forever' is not a duration; write it like 500ms, 30s or 2m",
            "collectors/testdata/bad_values.yaml:11:18: 'brotli' is not a valid compression (expected one of: lz4, zstd, none)",
        ])
    }

    @Test("bad_ranges: durations and sizes too large for their setting are refused where they are, not a crash")
    func badRanges() {
        #expect(problems("bad_ranges.yaml") == [
            "collectors/testdata/bad_ranges.yaml:3:25: 'intake_journal_bytes' '5000000GiB' is larger than the most it can be, 1 TiB",
            "collectors/testdata/bad_ranges.yaml:7:24: 'max_request_bytes' '99999999999999999999' is larger than the most it can be, 1 TiB",
            "collectors/testdata/bad_ranges.yaml:10:21: 'infs' is not a duration; write it like 500ms, 30s or 2m",
            "collectors/testdata/bad_ranges.yaml:12:17: '1e400s' is not a duration; write it like 500ms, 30s or 2m",
            "collectors/testdata/bad_ranges.yaml:13:11: 'settle' '5000000000000s' is longer than the most it can be, a week (168h)",
            "collectors/testdata/bad_ranges.yaml:14:10: 'grace' '100000000000000h' is longer than the most it can be, a week (168h)",
        ])
    }

    @Test("bad_names: what would fail at run time is refused by --check (CNF name, empty node, data_dir a file, topic name)")
    func badNames() {
        #expect(problems("bad_names.yaml") == [
            "collectors/testdata/bad_names.yaml:3:8: 'Edge Security' is not a valid name for 'cnf': use 1-63 lowercase letters, digits, '-' or '_', starting with a letter",
            "collectors/testdata/bad_names.yaml:4:10: 'node' is empty; name the edge node this collector runs on, e.g. edge-1",
            "collectors/testdata/bad_names.yaml:5:13: 'data_dir' '/etc/passwd' is a file; the collector keeps its journal and spool in a directory there",
            "collectors/testdata/bad_names.yaml:12:12: 'edgetrail telemetry/v1' is not a Kafka topic name: ' ' is not allowed; use letters, digits, '.', '_' and '-'",
        ])
    }

    @Test("filters.kafka: a published rule set to follow, by name, with its topics; partitions of the sink's topic")
    func publishedRules() throws {
        let parsed = try CollectorConfiguration.parse(
            "sources:\n  otlp: {listen: 127.0.0.1:4317}\nfilters:\n  kafka: {name: edge-rules}\n"
                + "sinks:\n  kafka:\n    brokers: 127.0.0.1:19092\n    partitions: 6\n",
            fileName: "edge.yaml")
        #expect(parsed.publishedRules == PublishedRulesSettings(name: "edge-rules"))
        #expect(parsed.publishedRules?.topic == "edgetrail.filters" && parsed.publishedRules?.statusTopic == "edgetrail.filters.status")
        #expect(parsed.kafka.partitions == 6)
        #expect(problems("bad_published_rules.yaml") == [
            "collectors/testdata/bad_published_rules.yaml:5:12: 'edgetrail filters' is not a Kafka topic name: ' ' is not allowed; use letters, digits, '.', '_' and '-'",
            "collectors/testdata/bad_published_rules.yaml:6:11: 'Edge-Rules' is not a valid name for 'name': use 1-63 lowercase letters, digits, '-' or '_', starting with a letter",
            "collectors/testdata/bad_published_rules.yaml:10:17: '0' is not a whole number from 1 to 10000",
        ])
        #expect(problems("bad_published_rules_no_name.yaml") == [
            "collectors/testdata/bad_published_rules_no_name.yaml:5:5: filters.kafka needs the 'name' of the rule set to follow"
        ])
    }

    @Test("flows: the Datapath Manager's socket or a recording, one of them; rate only paces a recording")
    func flowSources() throws {
        let datapath = try CollectorConfiguration.parse(
            "sources:\n  flows:\n    datapath: /run/edgetrail/datapath.sock\n    stats_interval: 2s\n"
                + "sinks:\n  kafka:\n    brokers: 127.0.0.1:19092\n",
            fileName: "edge.yaml")
        guard case .datapath(let socket, let interval) = datapath.flows else {
            Issue.record("expected the datapath flow source")
            return
        }
        #expect(socket == "/run/edgetrail/datapath.sock")
        #expect(interval == 2_000_000_000)
        #expect(problems("bad_flows.yaml") == [
            "collectors/testdata/bad_flows.yaml:3:5: the flows source takes 'datapath: SOCKET' or 'replay: FILE', not both"
        ])
        #expect(problems("bad_flows_rate.yaml") == [
            "collectors/testdata/bad_flows_rate.yaml:4:11: 'rate' paces a replay; the datapath's events come as they happen"
        ])
    }

    @Test("snapshots: Redis by HOST:PORT or by the Unix socket a node's Redis also listens on")
    func snapshotSources() throws {
        let socket = try CollectorConfiguration.parse(
            "sources:\n  snapshots:\n    redis: .run/redis.sock\n    database: 2\nsinks:\n  kafka:\n    brokers: 127.0.0.1:19092\n",
            fileName: "edge.yaml")
        #expect(socket.snapshots?.endpoint == .unix(path: ".run/redis.sock"))
        #expect(socket.snapshots?.database == 2)
        let local = try CollectorConfiguration.parse(
            "sources:\n  snapshots:\n    redis: localhost:6379\nsinks:\n  kafka:\n    brokers: 127.0.0.1:19092\n",
            fileName: "edge.yaml")
        #expect(local.snapshots?.endpoint == .tcp(host: "127.0.0.1", port: 6379))
        #expect(problems("bad_snapshots.yaml") == [
            "collectors/testdata/bad_snapshots.yaml:3:12: 'redis-host' is not an address; write it as HOST:PORT, e.g. 127.0.0.1:16379, "
                + "or as a Unix socket's path, e.g. .run/redis.sock"
        ])
    }

    @Test("bad_no_sink: a pipeline must ship somewhere")
    func noSink() {
        #expect(problems("bad_no_sink.yaml") == [
            "collectors/testdata/bad_no_sink.yaml:1:1: missing required section 'sinks' (a kafka sink with its brokers)"
        ])
    }

    @Test("bad_yaml: malformed YAML is reported with the parser's position")
    func malformedYAML() {
        let found = problems("bad_yaml.yaml")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("collectors/testdata/bad_yaml.yaml:3:") == true)
        #expect(found.first?.contains("malformed YAML") == true)
    }
}
