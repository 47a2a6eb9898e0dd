import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailProto
import EdgetrailTelemetry
import Foundation
import Hummingbird
import Logging

/// `edgetrail bench central`: fills a SQLite store with synthetic cookies, then times
/// `GET /v1/cookies/{cookie}` for random cookies through the real HTTP API.
public enum CentralBenchmark {
    public static func run(
        cookies: Int, requests: Int, storePath: String, port: Int, print say: @escaping @Sendable (String) -> Void
    ) async throws {
        let store: SQLiteRecordStore
        let existing = FileManager.default.fileExists(atPath: storePath) ? (try SQLiteRecordStore(path: storePath)) : nil
        if let existing, try existing.cookieCount() >= cookies {
            store = existing
            say("central benchmark: reusing \(storePath) with \(try store.cookieCount()) cookies")
        } else {
            if let existing { store = existing } else { store = try SQLiteRecordStore(path: storePath) }
            let have = try store.cookieCount()
            say("central benchmark: loading \(cookies - have) cookies x 11 records into \(storePath)")
            let started = Date()
            let base = UInt64(Date().timeIntervalSince1970 * 1e9)
            var cookie = UInt64(have + 1)
            while cookie <= UInt64(cookies) {
                var batches: [Edgetrail_V1_CookieBatch] = []
                for _ in 0..<5000 where cookie <= UInt64(cookies) {
                    var batch = Edgetrail_V1_CookieBatch()
                    batch.cookie = cookie
                    batch.cnf = "bench"
                    batch.node = "bench-node"
                    batch.records = SyntheticSessions.records(cookie: cookie, at: base + cookie * 1000)
                    batches.append(batch)
                    cookie += 1
                }
                _ = try store.store(contentsOf: batches)
                if cookie % 100_000 < 5000 || cookie > UInt64(cookies) {
                    say(
                        String(
                            format: "  loaded %d cookies (%.0f s)", min(Int(cookie - 1), cookies),
                            Date().timeIntervalSince(started)))
                }
            }
        }

        var configuration = CentralConfiguration(brokers: "unused:1", store: "sqlite:\(storePath)")
        configuration.port = port
        var logger = Logger(label: "bench")
        // Stopping the server at the end of the run is not news.
        logger.logLevel = .critical
        let central = try Central(configuration: configuration, logger: logger, store: store)
        let app = Application(
            router: central.router(), configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        let total = try store.cookieCount()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            // Wait for the listener.
            var ready = false
            for _ in 0..<100 where !ready {
                ready = (try? await HTTPGet.fetch("http://127.0.0.1:\(port)/healthz")) != nil
                if !ready { try await Task.sleep(for: .milliseconds(50)) }
            }
            // Warm-up, then the measured requests: random cookies over the whole store.
            var latencies: [Double] = []
            latencies.reserveCapacity(requests)
            for index in 0..<(requests + 100) {
                let cookie = Cookie(UInt64.random(in: 1...UInt64(total)))
                let url = "http://127.0.0.1:\(port)/v1/cookies/\(cookie.hex)"
                let started = DispatchTime.now().uptimeNanoseconds
                let answer = try await HTTPGet.fetch(url)
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
                guard answer.status == 200, answer.body.count > 100 else {
                    throw StoreError("GET \(url) failed")
                }
                if index >= 100 { latencies.append(elapsed) }
            }
            latencies.sort()
            func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            say(
                String(
                    format: "  GET /v1/cookies/{cookie}, %d random cookies of %d: p50 %.2f ms, p99 %.2f ms, max %.2f ms (target p99 <= 10 ms)",
                    requests, total, percentile(0.5), percentile(0.99), latencies.last ?? 0))
            group.cancelAll()
        }
    }
}
