import EdgetrailCollector
import EdgetrailCore
import EdgetrailKafka
import EdgetrailProto
import Foundation
import Logging
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// Figures of one process's resource use.
struct ResourceUsage {
    var cpuSeconds: Double
    var peakRSSBytes: Int

    static func now() -> ResourceUsage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return ResourceUsage(cpuSeconds: cpu, peakRSSBytes: Int(usage.ru_maxrss) * 1024)
    }
}

/// Synthetic sessions: per cookie a root span with 5 children, a flow start and end, and 3
/// Redis snapshots — 11 records — shaped like what the collector sees.
enum SyntheticSessions {
    static func records(cookie: UInt64, at base: UInt64) -> [Edgetrail_V1_Record] {
        var records: [Edgetrail_V1_Record] = []
        records.reserveCapacity(11)
        var traceID = Data(count: 16)
        withUnsafeBytes(of: cookie.bigEndian) { traceID.replaceSubrange(0..<8, with: $0) }
        let rootID = Data(withUnsafeBytes(of: (cookie &* 31).bigEndian) { Array($0) })
        var flow = Edgetrail_V1_Record()
        flow.cookie = cookie
        flow.flow.phase = .start
        flow.flow.action = .redirect
        flow.flow.tuple.srcIp = Data([10, 200, 0, UInt8(truncatingIfNeeded: cookie)])
        flow.flow.tuple.dstIp = Data([10, 201, 0, 2])
        flow.flow.tuple.srcPort = UInt32(truncatingIfNeeded: 1024 + cookie % 60000)
        flow.flow.tuple.dstPort = 80
        flow.flow.tuple.protocol = 6
        flow.flow.startNs = base
        records.append(flow)
        let operations = ["request", "policy_check", "inspect", "scan", "lookup", "respond"]
        for (index, operation) in operations.enumerated() {
            var span = Edgetrail_V1_Record()
            span.cookie = cookie
            span.service = ["http-proxy", "policy-mgr", "content-inspect", "anti-virus"][index % 4]
            span.span.traceID = traceID
            span.span.spanID = index == 0 ? rootID : Data(withUnsafeBytes(of: (cookie &* 31 &+ UInt64(index)).bigEndian) { Array($0) })
            if index > 0 { span.span.parentSpanID = rootID }
            span.span.operation = operation
            span.span.startNs = base + UInt64(index) * 100_000
            span.span.endNs = base + UInt64(index) * 100_000 + 80_000
            span.span.status = .ok
            span.span.tags = ["http.method": "GET", "http.url": "/catalog/item/\(cookie % 1000)"]
            records.append(span)
        }
        for index in 0..<3 {
            var snapshot = Edgetrail_V1_Record()
            snapshot.cookie = cookie
            snapshot.service = "http-proxy"
            snapshot.snapshot.key = "\(Cookie(cookie).redisKeyPrefix)http-proxy:state\(index)"
            snapshot.snapshot.stringValue = Data("state-\(index)-open".utf8)
            snapshot.snapshot.event = "set"
            snapshot.snapshot.atNs = base + 50_000 + UInt64(index) * 100_000
            records.append(snapshot)
        }
        var end = flow
        end.flow.phase = .end
        end.flow.endNs = base + 700_000
        end.flow.bytesIn = 420
        end.flow.bytesOut = 5120
        records.append(end)
        return records
    }
}

/// `edgetrail bench collector`: the collector's pipeline (intake journal, filters, join,
/// encoding, spool, librdkafka) against raw librdkafka producing the same messages.
public enum CollectorBenchmark {
    public static func run(brokers: String, cookies: Int, workDirectory: String, print say: (String) -> Void) throws {
        let records = cookies * 11
        say("collector benchmark: \(cookies) synthetic cookies x 11 records (6 spans, 2 flow events, 3 snapshots) = \(records) records")
        try? FileManager.default.removeItem(atPath: workDirectory)

        // 1. The pipeline.
        let topic = "bench-pipeline-\(UInt32.random(in: 0...UInt32.max))"
        var configuration = CollectorConfiguration(
            cnf: "bench", node: "bench-node", brokers: brokers, dataDirectory: workDirectory + "/collector")
        configuration.kafka.topic = topic
        configuration.join.settleNanoseconds = 0
        configuration.join.idleTimeoutNanoseconds = 5_000_000_000
        configuration.intakeQueueRecords = 20_000
        configuration.metricsHost = nil
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let sink = try KafkaSink(configuration: configuration.kafka, logger: logger)
        let pipeline = try CollectorPipeline(configuration: configuration, sink: sink, logger: logger)
        let before = ResourceUsage.now()
        let started = Date()
        let runner = Thread { pipeline.run() }
        runner.start()
        let base = UInt64(Date().timeIntervalSince1970 * 1e9)
        let chunk = 100
        var cookie: UInt64 = 1
        while cookie <= UInt64(cookies) {
            var batch: [Edgetrail_V1_Record] = []
            batch.reserveCapacity(chunk * 11)
            for _ in 0..<chunk where cookie <= UInt64(cookies) {
                batch += SyntheticSessions.records(cookie: cookie, at: base + cookie * 1000)
                cookie += 1
            }
            _ = pipeline.put(batch, from: .bench)
        }
        // Done when the broker acknowledged every record.
        while (pipeline.metrics.value("edgetrail_collector_records_out_total") ?? 0) < Double(records) {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let elapsed = Date().timeIntervalSince(started)
        let after = ResourceUsage.now()
        pipeline.stop()
        while !runner.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        let pipelineRate = Double(records) / elapsed
        let cpuPerMillion = (after.cpuSeconds - before.cpuSeconds) / Double(records) * 1e6
        say(
            String(
                format: "  pipeline: %.2f s, %@ records/s, %.2f CPU s per million records, peak RSS %.0f MB",
                elapsed, grouped(pipelineRate), cpuPerMillion, Double(after.peakRSSBytes) / 1_048_576))

        // 2. The ceiling: librdkafka alone, the same messages (encoded up front).
        let rawTopic = "bench-raw-\(UInt32.random(in: 0...UInt32.max))"
        var producerConfiguration = KafkaProducerConfiguration(brokers: brokers)
        producerConfiguration.compression = configuration.kafka.compression
        producerConfiguration.messageTimeoutMilliseconds = 0
        let producer = try KafkaProducer(configuration: producerConfiguration)
        var messages: [(key: [UInt8], value: [UInt8])] = []
        messages.reserveCapacity(cookies)
        var totalBytes = 0
        var encodingSeconds = 0.0
        for cookie in 1...UInt64(cookies) {
            var batch = Edgetrail_V1_CookieBatch()
            batch.cookie = cookie
            batch.cnf = "bench"
            batch.node = "bench-node"
            batch.final = true
            batch.records = SyntheticSessions.records(cookie: cookie, at: base + cookie * 1000)
            let encodeStarted = DispatchTime.now().uptimeNanoseconds
            let value: [UInt8] = try batch.serializedBytes()
            encodingSeconds += Double(DispatchTime.now().uptimeNanoseconds - encodeStarted) / 1e9
            totalBytes += value.count
            messages.append((Array(Cookie(cookie).hex.utf8), value))
        }
        let rawStarted = Date()
        var acknowledged = 0
        for (index, message) in messages.enumerated() {
            try producer.send(topic: rawTopic, key: message.key, value: message.value, id: UInt64(index + 1))
            if index % 1000 == 0 { acknowledged += producer.poll().filter { $0.error == nil }.count }
        }
        while acknowledged < messages.count {
            acknowledged += producer.poll(timeoutMilliseconds: 10).filter { $0.error == nil }.count
        }
        let rawElapsed = Date().timeIntervalSince(rawStarted)
        let rawRate = Double(records) / rawElapsed
        say(
            String(
                format: "  raw librdkafka, same %d messages (avg %d B, %@ compression): %.2f s, %@ records/s",
                messages.count, totalBytes / max(messages.count, 1), configuration.kafka.compression, rawElapsed,
                grouped(rawRate)))
        say(String(format: "  pipeline / raw ceiling: %.2f", pipelineRate / rawRate))
        // What no pipeline of these records can avoid: encoding each record once.
        say(
            String(
                format: "  encoding the same batches alone (SwiftProtobuf, one core): %@ records/s = %.2f of the raw ceiling",
                grouped(Double(records) / encodingSeconds), Double(records) / encodingSeconds / rawRate))
        say("  targets: >= 200,000 records/s, >= 0.80 of the raw ceiling, peak RSS <= 150 MB")
        try? FileManager.default.removeItem(atPath: workDirectory)
    }
}

func grouped(_ value: Double) -> String {
    let formatter = NumberFormatter()
    formatter.numberStyle = .decimal
    formatter.maximumFractionDigits = 0
    return formatter.string(from: NSNumber(value: value)) ?? String(Int(value))
}
