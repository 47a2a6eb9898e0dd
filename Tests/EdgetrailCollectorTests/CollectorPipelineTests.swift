import EdgetrailCollector
import EdgetrailProto
import EdgetrailRuntime
import EdgetrailTestRecords
import EdgetrailTesting
import Foundation
import Logging
import Testing

/// The pipeline between its two seams: records handed in as a source does, batches taken out by
/// an in-memory sink. No broker, no sources: what is tested is the pipeline itself.
private struct PipelineFixture {
    let directory: String
    var configuration: CollectorConfiguration

    init(rules: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        configuration = CollectorConfiguration(
            cnf: "edgesecurity", node: "edge-1", brokers: "127.0.0.1:1", dataDirectory: directory + "/collector")
        // A session is over once its root span ended: released at the next step.
        configuration.join.settleNanoseconds = 0
        // A session whose root span a rule dropped never ends: it goes out when it goes quiet.
        configuration.join.idleTimeoutNanoseconds = 1_000_000_000
        configuration.metricsHost = nil
        if let rules {
            try rules.write(toFile: rulesPath, atomically: true, encoding: .utf8)
            configuration.filterFiles = [rulesPath]
        }
    }

    var rulesPath: String { directory + "/pipeline.rules" }

    func pipeline(_ sink: MemoryBatchSink) throws -> CollectorPipeline {
        var logger = Logger(label: "test.pipeline")
        logger.logLevel = .critical
        return try CollectorPipeline(configuration: configuration, sink: sink, logger: logger)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// A session of one cookie: a root span with a child, the proxy's session state.
private func session(_ cookie: UInt64, service: String = "http-proxy") -> [Edgetrail_V1_Record] {
    [
        TestRecords.span(cookie: cookie, id: 2, parent: 1, operation: "policy_check", service: "policy-mgr"),
        TestRecords.snapshot(cookie: cookie, key: "cookie:\(String(format: "%016llx", cookie)):http-proxy:session", value: "open"),
        TestRecords.span(cookie: cookie, id: 1, operation: "request", service: service),
    ]
}

/// Runs the pipeline on its thread until `done` holds (at most `seconds`), then stops it.
private func run(_ pipeline: CollectorPipeline, seconds: Double = 10, until done: () -> Bool) {
    let runner = Thread { pipeline.run() }
    runner.start()
    let deadline = Date().addingTimeInterval(seconds)
    while !done(), Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    pipeline.stop()
    while !runner.isFinished { Thread.sleep(forTimeInterval: 0.01) }
}

@Suite("Collector pipeline between its seams", .serialized)
struct CollectorPipelineTests {
    @Test("a session handed in by a source goes out as one batch of its cookie, stamped with the collector's CNF and node")
    func sessionGoesOut() async throws {
        let fixture = try PipelineFixture()
        defer { fixture.remove() }
        let sink = MemoryBatchSink()
        let pipeline = try fixture.pipeline(sink)
        #expect(pipeline.offer(session(0xA1), from: .otlp) == .accepted())
        try await onThread { run(pipeline) { !sink.batches.isEmpty } }
        let batches = sink.batches
        #expect(batches.map(\.cookie) == [0xA1])
        #expect(batches.first?.records.count == 3)
        #expect(batches.first?.records.allSatisfy { $0.cnf == "edgesecurity" && $0.node == "edge-1" } == true)
        #expect(pipeline.metrics.value("edgetrail_collector_records_in_total", [("source", "otlp")]) == 3)
    }

    @Test("records accepted by a pipeline that died before shipping go out from the next one on the same data directory")
    func crashLosesNothingAccepted() async throws {
        let fixture = try PipelineFixture()
        defer { fixture.remove() }
        do {
            // Accepted (journaled), never run: as if the collector were SIGKILLed right after.
            let doomed = try fixture.pipeline(MemoryBatchSink())
            #expect(doomed.offer(session(0xB1), from: .otlp) == .accepted())
            #expect(doomed.put(session(0xB2), from: .snapshots) == .accepted())
        }
        let sink = MemoryBatchSink()
        let restarted = try fixture.pipeline(sink)
        try await onThread { run(restarted) { Set(sink.batches.map(\.cookie)) == [0xB1, 0xB2] } }
        #expect(Set(sink.batches.map(\.cookie)) == [0xB1, 0xB2])
        #expect(sink.batches.map(\.records.count).reduce(0, +) == 6, "every accepted record, once")
        // Shipped records leave the journal: a third start has nothing to send again.
        let third = MemoryBatchSink()
        let again = try fixture.pipeline(third)
        try await onThread { run(again, seconds: 1) { false } }
        #expect(third.batches.isEmpty)
    }

    @Test("a live edit of the rule file applies between cookies; an edit that does not lint is refused and the rules in force stay")
    func rulesReloadLive() async throws {
        let fixture = try PipelineFixture(rules: "drop span where span.service == \"policy-mgr\"\n")
        defer { fixture.remove() }
        let sink = MemoryBatchSink()
        let pipeline = try fixture.pipeline(sink)
        @Sendable func operations(_ cookie: UInt64) -> [String] {
            sink.batches.filter { $0.cookie == cookie }.flatMap(\.records).compactMap {
                if case .span(let span) = $0.kind { span.operation } else { nil }
            }.sorted()
        }
        try await onThread {
            let runner = Thread { pipeline.run() }
            runner.start()
            defer {
                pipeline.stop()
                while !runner.isFinished { Thread.sleep(forTimeInterval: 0.01) }
            }
            func wait(_ done: () -> Bool) {
                let deadline = Date().addingTimeInterval(10)
                while !done(), Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            }
            _ = pipeline.offer(session(0xC1), from: .otlp)
            wait { !operations(0xC1).isEmpty }
            // Another rule, and a different length (the watcher compares time and size).
            try "drop span where span.operation == \"request\" and span.service == \"http-proxy\"\n"
                .write(toFile: fixture.rulesPath, atomically: true, encoding: .utf8)
            wait { (pipeline.metrics.value(
                "edgetrail_collector_source_events_total", [("source", "filters"), ("event", "reload_applied")]) ?? 0) >= 1 }
            _ = pipeline.offer(session(0xC2), from: .otlp)
            wait { !operations(0xC2).isEmpty }
            try "drop span where span.nonsense == 1\n".write(toFile: fixture.rulesPath, atomically: true, encoding: .utf8)
            wait { (pipeline.metrics.value(
                "edgetrail_collector_source_events_total", [("source", "filters"), ("event", "reload_refused")]) ?? 0) >= 1 }
            _ = pipeline.offer(session(0xC3), from: .otlp)
            wait { !operations(0xC3).isEmpty }
        }
        #expect(operations(0xC1) == ["request"], "the first rules drop the policy-mgr span")
        #expect(operations(0xC2) == ["policy_check"], "the edited rules drop the root instead")
        #expect(operations(0xC3) == ["policy_check"], "a refused edit leaves the edited rules in force")
    }
}
