#if canImport(Glibc)
import Glibc
#endif
import EdgetrailCollector
import EdgetrailDatapath
import EdgetrailDatapathManager
import EdgetrailKafka
import EdgetrailProto
import EdgetrailServices
import EdgetrailTesting
import Foundation
import Logging
import SwiftProtobuf
import Testing

/// The collector's flow source against a real Datapath Manager (the eBPF programs attached in
/// a throwaway edge node), shipping to the real broker.
@Suite(
    "Collector flow source: the Datapath Manager's event stream", .serialized,
    .enabled(if: getuid() == 0, "SKIPPED: loading eBPF programs and making network namespaces needs root"))
struct DatapathFlowSourceTests {
    @Test("a collector started before the manager follows its events once it is up, and ships a bound flow under its cookie")
    func followsTheManager() async throws {
        try await TestServices.with([.broker]) { services in
            let topology = try EdgeNodeNamespaces()
            let scratch = services.runDirectory + "/\(topology.prefix)"
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            defer { topology.tearDown() }
            try topology.start(
                topology.server,
                "python3 -c \"import http.server as h; h.HTTPServer(('10.201.0.2', 80), h.SimpleHTTPRequestHandler).serve_forever()\"")
            var logger = Logger(label: "test.flow-source")
            logger.logLevel = .error
            let socket = scratch + "/datapath.sock"
            let topic = "flows-\(UUID().uuidString.prefix(8))"

            // The collector first: the manager is not there yet.
            var configuration = CollectorConfiguration(
                cnf: "edgesecurity", node: "edge-1", brokers: services.brokers, dataDirectory: scratch + "/collector")
            configuration.kafka.topic = topic
            configuration.metricsHost = nil
            configuration.flows = .datapath(socket: socket, statsIntervalNanoseconds: 300_000_000)
            configuration.join.idleTimeoutNanoseconds = 1_000_000_000
            configuration.join.settleNanoseconds = 200_000_000
            let collector = try Collector(configuration: configuration, logger: logger)
            let collectorGroup = try collector.makeServiceGroup(signals: [])
            let collecting = Task { try await collectorGroup.run() }
            try await Task.sleep(for: .milliseconds(1500))

            let manager = try DatapathManagerServer(
                configuration: DatapathManagerConfiguration(
                    interface: topology.clientInterface, networkNamespace: topology.node, socketPath: socket,
                    objectPath: try TestServices.datapathObject(), node: "edge-1"),
                logger: logger)
            let managerGroup = try manager.makeServiceGroup(signals: [])
            let managing = Task { try await manager.run(group: managerGroup) }

            let request = DatapathMessages.bindTCP(
                from: ([10, 200, 0, 2], 42_424), to: ([10, 201, 0, 2], 80), cookie: 0x0000_0000_5eed_f10f)
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { try await Task.sleep(for: .milliseconds(50)) }
            let rules = try RuleSetFile.read("rules: [\"10.201.0.2 80 : ratelimit 100MB/s\"]\npods: []", fileName: "rules.yaml")
            _ = try await DatapathManagerClient.with(socket: socket) { client in
                _ = try await client.applyRules(rules)
                return try await client.bindFlow(request)
            }
            // The source retries every second: the flow starts once it has subscribed.
            let subscribedBy = ContinuousClock.now + .seconds(30)
            while manager.manager.subscriberCount == 0, ContinuousClock.now < subscribedBy {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(manager.manager.subscriberCount == 1, "the collector should have subscribed to the manager's events")
            let answer = topology.attempt(topology.client, "curl -s -m 3 --local-port 42424 http://10.201.0.2/")
            #expect(answer.status == 0, "the origin should answer: \(answer.output)")

            // The poll loop blocks: on a thread of its own, so the collector's async flow source
            // (in this process) is not starved of the cooperative pool.
            let brokers = services.brokers
            let cookie = request.cookie
            let (flows, keys) = try await onThread { () throws -> ([Edgetrail_V1_FlowEvent], Set<String>) in
                let consumer = try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        brokers: brokers, groupID: "check-\(UUID().uuidString)", topics: [topic]))
                defer { consumer.close() }
                var flows: [Edgetrail_V1_FlowEvent] = []
                var keys: Set<String> = []
                let deadline = Date().addingTimeInterval(30)
                while Date() < deadline, !flows.contains(where: { $0.phase == .end }) {
                    guard let message = try consumer.poll(timeoutMilliseconds: 300) else { continue }
                    let batch = try Edgetrail_V1_CookieBatch(serializedBytes: message.value)
                    guard batch.cookie == cookie else { continue }
                    keys.insert(String(decoding: message.key, as: UTF8.self))
                    flows += batch.records.compactMap { record in
                        if case .flow(let flow) = record.kind { flow } else { nil }
                    }
                }
                return (flows, keys)
            }
            #expect(keys == ["000000005eedf10f"])
            // The manager's counters reach the collector's /metrics.
            let series = "edgetrail_datapath_rule_packets_total{rule=\"1\",match=\"10.201.0.2 80 : ratelimit 100MB/s\"}"
            let metricsBy = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < metricsBy,
                (collector.pipeline.metrics.value("edgetrail_datapath_rule_packets_total", [("rule", "1"), ("match", "10.201.0.2 80 : ratelimit 100MB/s")]) ?? 0) < 5
            {
                try await Task.sleep(for: .milliseconds(100))
            }
            let rendered = collector.pipeline.metrics.render()
            let packets = rendered.split(separator: "\n").first { $0.hasPrefix(series) }.flatMap { Int($0.split(separator: " ").last ?? "") }
            #expect((packets ?? 0) >= 5, "rule 1 counted the request's packets on /metrics:\n\(rendered)")
            #expect(rendered.contains("edgetrail_datapath_rules_version 1"))
            #expect(rendered.contains("edgetrail_datapath_ring_buffer_lost_total 0"))
            await managerGroup.triggerGracefulShutdown()
            try await managing.value
            await collectorGroup.triggerGracefulShutdown()
            try await collecting.value

            #expect(flows.map(\.phase) == [.start, .end])
            let end = flows.last
            #expect(end?.tuple == request.tuple)
            #expect(end?.endReason == .fin)
            #expect(end?.action == .ratelimit && end?.ruleID == 1)
            #expect((end?.bytesOut ?? 0) > 100 && (end?.bytesIn ?? 0) > 50)
        }
    }
}
