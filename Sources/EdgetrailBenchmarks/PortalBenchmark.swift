import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailPortal
import EdgetrailProto
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// The portal's two targets: a cookie's waterfall page with 1,000 spans rendered server-side in
/// ≤ 50 ms, and a live trace log that keeps up with 1,000 sessions/s (events batched).
public enum PortalBenchmark {
    public struct Settings: Sendable {
        public var spans = 1000
        public var renders = 60
        public var sessionsPerSecond = 1000
        public var seconds = 10.0
        public init() {}
    }

    public static func run(_ settings: Settings, print: @escaping @Sendable (String) -> Void) async throws {
        waterfall(settings, print: print)
        try await liveLog(settings, print: print)
    }

    /// A session like the demo's, made deep: chains of calls under one request, with its flow
    /// and snapshots.
    static func timeline(spans: Int) -> CookieTimeline {
        let cookie: UInt64 = 0x00be_0000_0000_0001
        var records: [Edgetrail_V1_Record] = []
        let services = ["http-proxy", "http-proxy.handlers", "policy-mgr", "content-inspect", "content-inspect.handlers", "anti-virus"]
        for index in 0..<spans {
            var record = Edgetrail_V1_Record()
            record.cookie = cookie
            record.service = services[index % services.count]
            record.cnf = "edgesecurity"
            record.span.traceID = Data(repeating: 7, count: 16)
            record.span.spanID = Data(withUnsafeBytes(of: UInt64(index + 1).bigEndian) { Array($0) })
            if index > 0 {
                // Each span's parent is one of the ten before it: a tree both deep and wide.
                let parent = UInt64(max(1, index - Int.random(in: 0...9)))
                record.span.parentSpanID = Data(withUnsafeBytes(of: parent.bigEndian) { Array($0) })
            }
            record.span.operation = "operation \(index % 37)"
            record.span.startNs = 1_000_000_000 + UInt64(index) * 10_000
            record.span.endNs = record.span.startNs + 50_000 + UInt64(index % 13) * 1_000
            record.span.status = index % 97 == 0 ? .error : .ok
            record.span.tags = ["http.url": "/downloads/file-\(index).pdf", "edgetrail.cookie": Cookie(cookie).hex, "component": "<proxy>"]
            records.append(record)
        }
        for index in 0..<20 {
            var record = Edgetrail_V1_Record()
            record.cookie = cookie
            record.snapshot.key = "cookie:\(Cookie(cookie).hex):http-proxy:state\(index)"
            record.snapshot.atNs = 1_000_000_000 + UInt64(index) * 400_000
            record.snapshot.stringValue = Data("value \(index)".utf8)
            records.append(record)
        }
        var flow = Edgetrail_V1_Record()
        flow.cookie = cookie
        flow.flow.phase = .end
        flow.flow.tuple.srcIp = Data([10, 200, 0, 2])
        flow.flow.tuple.dstIp = Data([10, 201, 0, 2])
        flow.flow.tuple.srcPort = 41000
        flow.flow.tuple.dstPort = 80
        flow.flow.tuple.protocol = 6
        flow.flow.action = .redirect
        flow.flow.startNs = 999_000_000
        flow.flow.endNs = 1_000_000_000 + UInt64(spans) * 10_000 + 100_000
        records.append(flow)
        return CookieTimeline(cookie: Cookie(cookie), records: records)
    }

    static func waterfall(_ settings: Settings, print: @Sendable (String) -> Void) {
        let timeline = timeline(spans: settings.spans)
        let user = PortalUser(name: "bench", role: .viewer)
        var renders: [Double] = []
        var encodes: [Double] = []
        var size = 0
        let encoder = JSONEncoder()
        for round in 0..<(settings.renders + 5) {
            let start = ContinuousClock.now
            let page = Portal.renderWaterfallPage(timeline, user: user)
            let rendered = ContinuousClock.now - start
            let encodeStart = ContinuousClock.now
            _ = try? encoder.encode(timeline)
            let encoded = ContinuousClock.now - encodeStart
            guard round >= 5 else { continue }  // warm-up
            size = page.utf8.count
            renders.append(milliseconds(rendered))
            encodes.append(milliseconds(encoded))
        }
        print("waterfall page, \(settings.spans) spans + 1 flow + 20 snapshots (\(size / 1024) KiB of HTML), \(settings.renders) renders:")
        print("  render (layout + HTML)   p50 \(format(percentile(renders, 0.5))) ms  p99 \(format(percentile(renders, 0.99))) ms  (target ≤ 50 ms: \(percentile(renders, 0.99) <= 50 ? "met" : "NOT MET"))")
        print("  baseline: the same timeline as JSON (the API's answer)  p50 \(format(percentile(encodes, 0.5))) ms  p99 \(format(percentile(encodes, 0.99))) ms")
    }

    /// Central's live feed over HTTP (server-sent events) to a reader that decodes it as the
    /// portal does, at a steady offered rate: what it delivers, in how many events, how late.
    static func liveLog(_ settings: Settings, print: @escaping @Sendable (String) -> Void) async throws {
        let directory = NSTemporaryDirectory() + "edgetrail-bench-live-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteRecordStore(path: directory + "/central.sqlite")
        var configuration = CentralConfiguration(brokers: "unused:1", store: "sqlite:unused")
        configuration.port = 0
        let central = Central(configuration: configuration, logger: Logger(label: "bench.central"), store: store)
        var logger = Logger(label: "bench.http")
        logger.logLevel = .warning
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: central.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { portContinuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            let serviceGroup = ServiceGroup(services: [app], logger: logger)
            group.addTask { try await serviceGroup.run() }
            var ports = portStream.makeAsyncIterator()
            let port = await ports.next() ?? 0
            let client = CentralClient(base: "http://127.0.0.1:\(port)")
            let sent = Counter()
            let reader = Task { () -> (sessions: Int, events: Int, lost: Int, lagMs: [Double]) in
                var sessions = 0
                var events = 0
                var lost = 0
                var lags: [Double] = []
                do {
                    for try await event in client.live(cnf: "edgesecurity") {
                        events += 1
                        sessions += event.sessions.count
                        lost += event.lost
                        let now = Double(DispatchTime.now().uptimeNanoseconds)
                        // The oldest of an event waited longest: that is the log's lag.
                        if let oldest = event.sessions.first { lags.append((now - Double(oldest.firstNs)) / 1e6) }
                        if sessions + lost >= sent.value, sent.done { break }
                    }
                } catch {}
                return (sessions, events, lost, lags)
            }
            // Subscribed once the feed has a reader.
            while central.live.readerCount == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let start = ContinuousClock.now
            let total = Int(Double(settings.sessionsPerSecond) * settings.seconds)
            var batch = Edgetrail_V1_CookieBatch()
            batch.cnf = "edgesecurity"
            batch.node = "edge-1"
            batch.final = true
            var span = Edgetrail_V1_Record()
            span.service = "http-proxy"
            span.cnf = "edgesecurity"
            span.span.operation = "HTTP GET"
            batch.records = Array(repeating: span, count: 12)
            for index in 0..<total {
                // Paced: session `index` is published at index / rate seconds.
                let due = start + .nanoseconds(Int64(Double(index) / Double(settings.sessionsPerSecond) * 1e9))
                if ContinuousClock.now < due { try await Task.sleep(until: due) }
                batch.cookie = UInt64(index + 1)
                // firstNs carries the publish time, so the reader can tell how late it sees it.
                for position in batch.records.indices { batch.records[position].span.startNs = DispatchTime.now().uptimeNanoseconds }
                central.live.publish(batch)
                sent.add()
            }
            let offeredSeconds = Double((ContinuousClock.now - start).components.seconds) + Double((ContinuousClock.now - start).components.attoseconds) / 1e18
            sent.finish()
            let waited = Task {
                try? await Task.sleep(for: .seconds(10))
                reader.cancel()
            }
            let result = await reader.value
            waited.cancel()
            print("live trace log, \(total) sessions offered at \(settings.sessionsPerSecond)/s over \(format(offeredSeconds)) s (central's feed → HTTP event stream → a reader decoding it):")
            print("  delivered \(result.sessions) sessions (\(format(Double(result.sessions) / offeredSeconds))/s) in \(result.events) events (\(format(Double(result.events) / offeredSeconds))/s, \(result.events > 0 ? result.sessions / result.events : 0) sessions each), lost \(result.lost)")
            print("  lag from publish to the reader: p50 \(format(percentile(result.lagMs, 0.5))) ms, p99 \(format(percentile(result.lagMs, 0.99))) ms (the oldest session of each event; events are batched, at most 5 a second)")
            print("  (target: keeps up with 1,000 sessions/s: \(result.lost == 0 && result.sessions == total ? "met" : "NOT MET"))")
            await serviceGroup.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        private var finished = false
        func add() { lock.withLock { count += 1 } }
        func finish() { lock.withLock { finished = true } }
        var value: Int { lock.withLock { count } }
        var done: Bool { lock.withLock { finished } }
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))]
    }

    static func format(_ value: Double) -> String { String(format: "%.2f", value) }
}
