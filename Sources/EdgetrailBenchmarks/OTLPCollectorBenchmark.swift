import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailNet
import EdgetrailOTLP
import EdgetrailProto
import EdgetrailPortal
import EdgetrailTelemetry
import Foundation
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// `edgetrail bench collector --otlp`: the collector fed as users feed it. A collector process
/// ships to the broker; a separate generator process sends OTLP/gRPC export requests (512 spans
/// each) while writing the sessions' Redis state and serving their flow events on a Datapath
/// Manager's socket, which the collector follows as on a node.
/// Measured: the collector's own CPU time until the broker acknowledged every record, and its
/// peak RSS. The floor, in the same run: decoding the same requests and encoding the same records
/// once, with no pipeline.
public enum OTLPCollectorBenchmark {
    public struct Settings: Sendable {
        public var executable: String
        public var brokers = "127.0.0.1:19092"
        public var redis = "127.0.0.1:16379"
        public var cookies = 50_000
        public var concurrency = 4
        public var workDirectory = ".run/bench-collector-otlp"

        public init(executable: String) {
            self.executable = executable
        }
    }

    /// The OpenTelemetry Collector's own published figure for its OTLP pipeline, spans/s per core.
    static let otelCollectorSpansPerCore = 12_000.0

    public static func run(_ settings: Settings, print say: @escaping @Sendable (String) -> Void) async throws {
        let load = OTLPLoad(cookies: settings.cookies)
        say(
            "collector benchmark, OTLP-fed: \(grouped(Double(load.cookies))) cookies x (\(load.spansPerCookie) spans, 2 flow events, "
                + "\(load.snapshotsPerCookie) Redis snapshots) = \(grouped(Double(load.records))) records; "
                + "\(load.requests) export requests of \(load.batch) spans from a separate process")
        let work = URL(fileURLWithPath: settings.workDirectory).standardizedFileURL.path
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let otlpPort = SocketProbe.freePort()
        let metricsPort = SocketProbe.freePort()
        let topic = "bench-otlp-\(UInt32.random(in: 0...UInt32.max))"
        try """
            collector:
              cnf: edgesecurity
              node: bench-node
              data_dir: \(work)/collector
            sources:
              otlp:
                listen: 127.0.0.1:\(otlpPort)
                max_request_bytes: 8MiB
              snapshots:
                redis: \(settings.redis)
              flows:
                datapath: \(work)/flows.sock
            sinks:
              kafka:
                brokers: \(settings.brokers)
                topic: \(topic)
                partitions: 4
            metrics:
              listen: 127.0.0.1:\(metricsPort)

            """.write(toFile: work + "/collector.yaml", atomically: true, encoding: .utf8)

        // The floor is measured before and after the pipeline and the two averaged: these shared
        // machines drift in speed by tens of percent within minutes, and a floor taken at
        // another moment than the pipeline would measure the drift.
        let floorBefore = try floorSpansPerCPUSecond(load)

        // 1. The generator, its own process: it serves the flow events on a Datapath Manager's
        // socket and sends once the collector follows them and takes OTLP.
        let generator = try LineChild.start(
            settings.executable,
            ["bench", "otlp-load", "--target", "127.0.0.1:\(otlpPort)", "--redis", settings.redis, "--flows", work + "/flows.sock",
             "--cookies", String(settings.cookies), "--concurrency", String(settings.concurrency)],
            waitFor: "serving", core: nil)
        defer { generator.stop() }

        // 2. The collector, its own process. Its CPU time is counted from its start: start-up
        // is part of what it costs.
        let collector = Process()
        collector.executableURL = URL(fileURLWithPath: settings.executable)
        collector.arguments = ["collector", "--config", work + "/collector.yaml", "--log-level", "warning"]
        collector.standardOutput = FileHandle.standardError
        try collector.run()
        let started = Date()
        defer {
            if collector.isRunning {
                collector.terminate()
                collector.waitUntilExit()
            }
        }
        let pid = collector.processIdentifier
        let metrics = "http://127.0.0.1:\(metricsPort)/metrics"
        func shipped() async -> Double {
            guard let samples = await PortalBackend.scrape(metrics) else { return -1 }
            return samples.filter { $0.name == "edgetrail_collector_records_out_total" }.reduce(0) { $0 + $1.value }
        }
        var lastReport = Date()
        while true {
            let out = await shipped()
            if out >= Double(load.records) { break }
            guard collector.isRunning else {
                throw BenchmarkError("the collector exited during the run; is the broker up ('edgetrail infra up')?")
            }
            guard generator.process.isRunning else { throw BenchmarkError("the generator exited during the run") }
            if Date().timeIntervalSince(lastReport) > 5 {
                say("  ... \(grouped(max(out, 0))) of \(grouped(Double(load.records))) records acknowledged by the broker")
                lastReport = Date()
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        let elapsed = Date().timeIntervalSince(started)
        let cpu = ProcessFigures.cpuSeconds(pid)
        let peakRSS = ProcessFigures.peakRSS(pid)
        collector.terminate()
        collector.waitUntilExit()
        let pipelineRate = Double(load.spans) / cpu
        say(
            String(
                format: "  collector: %.2f s wall, %.2f CPU s (its own) -> %@ spans/s per collector CPU-second (%@ records/s per CPU-second), peak RSS %.0f MB",
                elapsed, cpu, grouped(pipelineRate), grouped(Double(load.records) / cpu), Double(peakRSS) / 1_048_576))

        // 3. The floor: the same requests decoded and the same records encoded once, one thread.
        let floorAfter = try floorSpansPerCPUSecond(load)
        let floor = (floorBefore + floorAfter) / 2
        say(
            String(
                format: "  floor (decode the same OTLP requests, encode the same records once, no pipeline): %@ spans/s per CPU-second (before the pipeline %@, after it %@)",
                grouped(floor), grouped(floorBefore), grouped(floorAfter)))
        say(String(format: "  pipeline / floor: %.2f (target >= 0.50); peak RSS target <= 150 MB", pipelineRate / floor))
        say(
            "  for scale: the OpenTelemetry Collector publishes ~\(grouped(otelCollectorSpansPerCore)) spans/s per core for its own OTLP pipeline; "
                + "this collector: \(grouped(pipelineRate)) spans/s per CPU-second (with the join, filters, journal, spool and Kafka)")
    }

    /// Spans per CPU-second of the least any pipeline does with this load: decode each export
    /// request, turn its spans into records, build the flow and snapshot records, group them per
    /// cookie and encode each cookie's batch once.
    static func floorSpansPerCPUSecond(_ load: OTLPLoad) throws -> Double {
        let encoded: [[UInt8]] = try (0..<load.requests).map { try load.request($0).serializedBytes() }
        let flows = (0..<load.cookies).flatMap { load.flowMessages($0) }
        let started = ProcessFigures.threadCPUSeconds()
        var converter = SpanConverter(cnf: "edgesecurity", node: "bench-node", noCookie: .bucket)
        var byCookie: [UInt64: [Edgetrail_V1_Record]] = [:]
        byCookie.reserveCapacity(load.cookies)
        for bytes in encoded {
            // Read as the collector reads them: from the wire form straight into spans.
            let request = try bytes.withUnsafeBytes { try SpanConverter.read(exportRequest: $0) }
            for record in converter.convert(request, now: 0).records { byCookie[record.cookie, default: []].append(record) }
        }
        for message in flows {
            var record = Edgetrail_V1_Record()
            record.cookie = message.cookie
            record.cnf = "edgesecurity"
            record.node = message.node
            record.flow = message.event
            byCookie[record.cookie, default: []].append(record)
        }
        for index in 0..<load.cookies {
            let cookie = load.cookie(index)
            for number in 0..<load.snapshotsPerCookie {
                var record = Edgetrail_V1_Record()
                record.cookie = cookie
                record.service = "http-proxy"
                record.snapshot.key = "\(Cookie(cookie).redisKeyPrefix)http-proxy:state\(number)"
                record.snapshot.stringValue = Data("session-\(index)-step-\(number)".utf8)
                record.snapshot.event = "set"
                byCookie[cookie, default: []].append(record)
            }
        }
        var bytes = 0
        for (cookie, records) in byCookie {
            var batch = Edgetrail_V1_CookieBatch()
            batch.cookie = cookie
            batch.cnf = "edgesecurity"
            batch.node = "bench-node"
            batch.final = true
            // Written as the collector writes it: each record by RecordWire, framed once.
            bytes += RecordWire.batchBytes(batch, encoded: records.map(RecordWire.encode)).count
        }
        let cpu = ProcessFigures.threadCPUSeconds() - started
        precondition(bytes > 0)
        return Double(load.spans) / cpu
    }
}
