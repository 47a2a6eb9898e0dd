#if canImport(Glibc)
import EdgetrailDatapathAPI
import EdgetrailNode
import Glibc
#endif
import EdgetrailCollector
import EdgetrailDatapath
import EdgetrailDatapathManager
import EdgetrailKafka
import EdgetrailProto
import EdgetrailInfra
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
    @Test(
        "a collector that loses the manager's stream resumes after the last event it got: what happened meanwhile is shipped, what the manager no longer held is counted lost"
    )
    func resumesAfterReconnect() async throws {
        try await TestInfra.with([.broker]) { services in
            let node = try TestNode(services)
            defer { node.topology.tearDown() }
            let (topology, socket, topic, logger) = (node.topology, node.socket, node.topic, node.logger)
            // The manager keeps the newest 2 events for subscribers that come back.
            let manager = try DatapathManagerServer(
                configuration: DatapathManagerConfiguration(
                    interface: topology.clientInterface, networkNamespace: topology.node, socketPath: socket,
                    objectPath: try TestInfra.datapathObject(), node: "edge-1",
                    // No idle sweep in the test's time: only the test's own flows make events.
                    idleTimeoutNanoseconds: 3_600_000_000_000, replayBuffer: 2),
                logger: logger)
            let managerGroup = try manager.makeServiceGroup(signals: [])
            let managing = Task { try await manager.run(group: managerGroup) }
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { try await Task.sleep(for: .milliseconds(50)) }
            let ready = (0..<50).contains { _ in topology.attempt(topology.client, "curl -s -m 1 http://10.201.0.2/ >/dev/null").status == 0 }
            #expect(ready, "the origin should answer the client through the node")

            let collector = try Collector(configuration: node.collectorConfiguration(services), logger: logger)
            let collectorGroup = try collector.makeServiceGroup(signals: [])
            let collecting = Task { try await collectorGroup.run() }

            func subscribed(_ count: Int) async throws {
                let by = ContinuousClock.now + .seconds(30)
                while manager.manager.subscriberCount != count, ContinuousClock.now < by {
                    try await Task.sleep(for: .milliseconds(50))
                }
                try #require(manager.manager.subscriberCount == count, "the collector's subscription")
            }
            /// Cuts the collector's stream and keeps it from reconnecting (the socket's name is
            /// moved aside; the manager still listens on it) while `body` makes traffic.
            func whileAway(_ body: () async throws -> Void) async throws {
                try FileManager.default.moveItem(atPath: socket, toPath: socket + ".away")
                manager.manager.endStreams()
                try await subscribed(0)
                try await body()
                try FileManager.default.moveItem(atPath: socket + ".away", toPath: socket)
                try await subscribed(1)
            }
            func request(_ port: UInt16, cookie: UInt64) async throws -> UInt64 {
                let bind = DatapathMessages.bindTCP(from: ([10, 200, 0, 2], port), to: ([10, 201, 0, 2], 80), cookie: cookie)
                _ = try await DatapathManagerClient.with(socket: FileManager.default.fileExists(atPath: socket) ? socket : socket + ".away") {
                    try await $0.bindFlow(bind)
                }
                let answer = topology.attempt(topology.client, "curl -s -m 3 --local-port \(port) http://10.201.0.2/")
                #expect(answer.status == 0, "the origin should answer: \(answer.output)")
                return cookie
            }
            /// Waits until the manager has published `count` events since `since` (both ends of
            /// the flows made while away are read before the collector may come back).
            func published(since: UInt64, count: UInt64) async throws {
                let by = ContinuousClock.now + .seconds(30)
                var last: UInt64 = 0
                repeat {
                    last = try await DatapathManagerClient.with(socket: socket + ".away") {
                        try await $0.stats(Edgetrail_V1_StatsRequest()).lastSequence
                    }
                    if last - since >= count { break }
                    try await Task.sleep(for: .milliseconds(100))
                } while ContinuousClock.now < by
                try #require(last - since == count, "events published while the collector was away")
            }
            func lastSequence() async throws -> UInt64 {
                try await DatapathManagerClient.with(socket: socket) { try await $0.stats(Edgetrail_V1_StatsRequest()).lastSequence }
            }

            try await subscribed(1)
            // The readiness probes' flows must be over (their end events, and any late packet's,
            // published) before counting what is published while the collector is away: wait
            // until no flow is open and nothing was published for a second.
            let settled = ContinuousClock.now + .seconds(20)
            var previous = try await lastSequence()
            while ContinuousClock.now < settled {
                try await Task.sleep(for: .seconds(1))
                let stats = try await DatapathManagerClient.with(socket: socket) { try await $0.stats(Edgetrail_V1_StatsRequest()) }
                if stats.openFlows == 0, stats.lastSequence == previous { break }
                previous = stats.lastSequence
            }
            // Away while one flow starts and ends (2 events): both are replayed on return.
            var since = try await lastSequence()
            var first: UInt64 = 0
            try await whileAway {
                first = try await request(42_001, cookie: 0x0000_0000_0000_a001)
                try await published(since: since, count: 2)
            }
            // Away while two flows start and end (4 events): the manager holds the newest 2, so
            // the second flow comes back whole and the first flow's 2 events are counted lost.
            since = try await lastSequence()
            var lostFlow: UInt64 = 0
            var second: UInt64 = 0
            try await whileAway {
                lostFlow = try await request(42_002, cookie: 0x0000_0000_0000_a002)
                second = try await request(42_003, cookie: 0x0000_0000_0000_a003)
                try await published(since: since, count: 4)
            }
            let shipped = try await shippedFlows(brokers: services.brokers, topic: topic, until: [first, second])
            #expect(shipped.flows[first]?.map(\.phase) == [.start, .end])
            #expect(shipped.flows[second]?.map(\.phase) == [.start, .end])
            #expect(shipped.flows[lostFlow] == nil, "its events were pushed out of the manager's replay buffer")
            #expect(shipped.flows[second]?.first?.lostEvents == 2, "the loss arrives on the first event after it")

            let lost = [("source", "flows"), ("event", "datapath_lost_events")]
            let by = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < by, collector.pipeline.metrics.value("edgetrail_collector_source_events_total", lost) != 2 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(collector.pipeline.metrics.value("edgetrail_collector_source_events_total", lost) == 2)
            #expect(
                collector.pipeline.metrics.value(
                    "edgetrail_collector_source_events_total", [("source", "flows"), ("event", "datapath_reconnect")]) == 2)

            // The manager restarts: a new run. The collector comes back to it, says so, and
            // takes the new run's events from its first.
            await managerGroup.triggerGracefulShutdown()
            try await managing.value
            let restarted = try DatapathManagerServer(
                configuration: DatapathManagerConfiguration(
                    interface: topology.clientInterface, networkNamespace: topology.node, socketPath: socket,
                    objectPath: try TestInfra.datapathObject(), node: "edge-1", idleTimeoutNanoseconds: 3_600_000_000_000),
                logger: logger)
            let restartedGroup = try restarted.makeServiceGroup(signals: [])
            let restartedRun = Task { try await restarted.run(group: restartedGroup) }
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { try await Task.sleep(for: .milliseconds(50)) }
            let third = try await request(42_004, cookie: 0x0000_0000_0000_a004)
            let afterRestart = try await shippedFlows(brokers: services.brokers, topic: topic, until: [third])
            #expect(afterRestart.flows[third]?.map(\.phase) == [.start, .end])
            let restarts = [("source", "flows"), ("event", "datapath_manager_restarted")]
            let restartBy = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < restartBy, collector.pipeline.metrics.value("edgetrail_collector_source_events_total", restarts) != 1 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(collector.pipeline.metrics.value("edgetrail_collector_source_events_total", restarts) == 1)
            await collectorGroup.triggerGracefulShutdown()
            try await collecting.value
            await restartedGroup.triggerGracefulShutdown()
            try await restartedRun.value
        }
    }

    @Test("a collector started before the manager follows its events once it is up, and ships a bound flow under its cookie")
    func followsTheManager() async throws {
        try await TestInfra.with([.broker]) { services in
            let node = try TestNode(services)
            defer { node.topology.tearDown() }
            let (topology, socket, topic, logger) = (node.topology, node.socket, node.topic, node.logger)

            // The collector first: the manager is not there yet.
            let collector = try Collector(configuration: node.collectorConfiguration(services), logger: logger)
            let collectorGroup = try collector.makeServiceGroup(signals: [])
            let collecting = Task { try await collectorGroup.run() }
            try await Task.sleep(for: .milliseconds(1500))

            let manager = try DatapathManagerServer(
                configuration: DatapathManagerConfiguration(
                    interface: topology.clientInterface, networkNamespace: topology.node, socketPath: socket,
                    objectPath: try TestInfra.datapathObject(), node: "edge-1"),
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

            let shipped = try await shippedFlows(brokers: services.brokers, topic: topic, until: [request.cookie])
            let flows = shipped.flows[request.cookie] ?? []
            #expect(shipped.keys == ["000000005eedf10f"])
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
            #expect(rendered.contains("edgetrail_datapath_flows_untracked_total 0"))
            #expect(rendered.contains("edgetrail_datapath_flow_table_size 65536"))
            // The flow's start, counted by the action the rules gave it.
            #expect(rendered.contains("edgetrail_datapath_flows_total{action=\"ratelimit\"} 1"), "\(rendered)")
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


/// The flow events shipped to `topic`, by cookie, and the message keys seen; reads until every
/// cookie in `until` has a flow end (or 30 s). The poll loop blocks: on a thread of its own, so
/// the collector's async flow source (in this process) is not starved of the cooperative pool.
private func shippedFlows(
    brokers: String, topic: String, until cookies: Set<UInt64>
) async throws -> (flows: [UInt64: [Edgetrail_V1_FlowEvent]], keys: Set<String>) {
    try await onThread { () throws -> ([UInt64: [Edgetrail_V1_FlowEvent]], Set<String>) in
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(brokers: brokers, groupID: "check-\(UUID().uuidString)", topics: [topic]))
        defer { consumer.close() }
        var flows: [UInt64: [Edgetrail_V1_FlowEvent]] = [:]
        var keys: Set<String> = []
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !cookies.allSatisfy({ flows[$0]?.contains { $0.phase == .end } == true }) {
            guard let message = try consumer.poll(timeoutMilliseconds: 300) else { continue }
            let batch = try Edgetrail_V1_CookieBatch(serializedBytes: message.value)
            guard cookies.contains(batch.cookie) else { continue }
            keys.insert(String(decoding: message.key, as: UTF8.self))
            flows[batch.cookie, default: []] += batch.records.compactMap { record in
                if case .flow(let flow) = record.kind { flow } else { nil }
            }
        }
        return (flows, keys)
    }
}

/// A throwaway edge node with an HTTP origin, and the names a test's manager and collector use.
private struct TestNode {
    let topology: EdgeNodeNamespaces
    let scratch: String
    let socket: String
    let topic = "flows-\(UUID().uuidString.prefix(8))"
    let logger: Logger

    init(_ services: InfraConfiguration) throws {
        topology = try EdgeNodeNamespaces()
        scratch = services.runDirectory + "/\(topology.prefix)"
        socket = scratch + "/datapath.sock"
        var logger = Logger(label: "test.flow-source")
        logger.logLevel = .error
        self.logger = logger
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try topology.start(
                topology.server,
                "python3 -c \"import http.server as h; h.HTTPServer(('10.201.0.2', 80), h.SimpleHTTPRequestHandler).serve_forever()\"")
        } catch {
            topology.tearDown()
            throw error
        }
    }

    /// A collector following this node's manager, shipping to `topic`, releasing cookies soon.
    func collectorConfiguration(_ services: InfraConfiguration) -> CollectorConfiguration {
        var configuration = CollectorConfiguration(
            cnf: "edgesecurity", node: "edge-1", brokers: services.brokers, dataDirectory: scratch + "/collector")
        configuration.kafka.topic = topic
        configuration.metricsHost = nil
        configuration.flows = .datapath(socket: socket, statsIntervalNanoseconds: 300_000_000)
        configuration.join.idleTimeoutNanoseconds = 1_000_000_000
        configuration.join.settleNanoseconds = 200_000_000
        return configuration
    }
}
