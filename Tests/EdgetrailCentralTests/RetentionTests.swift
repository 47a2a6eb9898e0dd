import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailProto
import EdgetrailTestRecords
import Foundation
import Logging
import Testing

@Suite("Central's retention")
struct RetentionTests {
    @Test("--retain takes days, hours, minutes, seconds and weeks; anything else is refused")
    func parse() {
        #expect(Central.retention("7d") == 7 * 86_400 * 1_000_000_000)
        #expect(Central.retention("12h") == 12 * 3_600 * 1_000_000_000)
        #expect(Central.retention("30m") == 1_800 * 1_000_000_000)
        #expect(Central.retention("2w") == 14 * 86_400 * 1_000_000_000)
        for bad in ["7", "d", "-1d", "1.5d", "0d", "7days", "1000000w", ""] { #expect(Central.retention(bad) == nil, "\(bad)") }
    }

    @Test("old sessions are deleted in small transactions while batches are stored and queries answered")
    func background() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("retention-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try SQLiteRecordStore(path: path)
        let hour: UInt64 = 3_600_000_000_000
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        // 3,000 sessions two hours old, in bulk.
        let old = (1...3_000).map { cookie in
            TestRecords.batch(
                cookie: UInt64(cookie),
                [TestRecords.span(cookie: UInt64(cookie), id: 1, startNs: now - 2 * hour, endNs: now - 2 * hour + 1_000)])
        }
        _ = try store.store(contentsOf: old)
        var configuration = CentralConfiguration(brokers: "unused:1", store: "sqlite:unused")
        configuration.retainNanoseconds = hour
        let central = Central(configuration: configuration, logger: Logger(label: "test.central"), store: store)

        // While the sweep runs: new sessions stored and listings answered, on other threads.
        async let swept = Task.detached { central.expireOldSessions(now: now) }.value
        async let stored = Task.detached { () throws -> Int in
            var count = 0
            for cookie in 10_001...10_400 {
                let batch = TestRecords.batch(
                    cookie: UInt64(cookie), [TestRecords.span(cookie: UInt64(cookie), id: 1, startNs: now, endNs: now + 1_000)])
                count += try store.store(batch).inserted
            }
            return count
        }.value
        async let answered = Task.detached { () throws -> Int in
            var answers = 0
            for _ in 0..<50 {
                _ = try store.cookies(CookieQuery())
                answers += 1
            }
            return answers
        }.value
        let (deleted, inserted, answers) = try await (swept, stored, answered)
        #expect(deleted == 3_000)
        #expect(inserted == 400)
        #expect(answers == 50)
        #expect(try store.cookieCount() == 400)
        #expect(try store.records(cookie: 1).isEmpty)
        #expect(try store.records(cookie: 10_001).count == 1)
        #expect(central.counters.expired == 3_000)
        #expect(central.metrics.render().contains("edgetrail_central_sessions_expired_total 3000"))
        // Nothing older than the retention is left to delete.
        #expect(central.expireOldSessions(now: now) == 0)
    }
}
