import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailProto
import EdgetrailInfra
import EdgetrailTestRecords
import EdgetrailTesting
import Foundation
import Testing

private func span(_ cookie: UInt64, _ id: UInt8, start: UInt64, error: Bool = false, service: String) -> Edgetrail_V1_Record {
    TestRecords.span(
        cookie: cookie, trace: UInt8(truncatingIfNeeded: cookie), id: id, operation: "op\(id)", service: service,
        startNs: start, endNs: start + 100, status: error ? .error : .ok)
}

private func batch(_ cookie: UInt64, cnf: String, _ records: [Edgetrail_V1_Record]) -> Edgetrail_V1_CookieBatch {
    TestRecords.batch(cookie: cookie, final: false, cnf: cnf, records)
}

/// The behaviour both stores must share.
private func exercise(_ store: any RecordStore) throws {
    let first = batch(1, cnf: "edgesecurity", [span(1, 1, start: 1_000, service: "http-proxy"), span(1, 2, start: 1_500, service: "policy-mgr")])
    #expect(try store.store(first) == StoreResult(inserted: 2, duplicates: 0))
    // A redelivered batch changes nothing; a late batch with one known and one new record adds one.
    #expect(try store.store(first) == StoreResult(inserted: 0, duplicates: 2))
    let late = batch(1, cnf: "edgesecurity", [span(1, 2, start: 1_500, service: "policy-mgr"), span(1, 3, start: 2_000, error: true, service: "anti-virus")])
    #expect(try store.store(late) == StoreResult(inserted: 1, duplicates: 1))
    _ = try store.store(batch(2, cnf: "edgesecurity", [span(2, 1, start: 5_000, service: "http-proxy")]))
    _ = try store.store(batch(3, cnf: "other", [span(3, 1, start: 9_000, service: "http-proxy")]))
    _ = try store.store(batch(UInt64.max, cnf: "edgesecurity", [span(UInt64.max, 1, start: 7_000, service: "http-proxy")]))

    let records = try store.records(cookie: 1)
    #expect(records.map(\.span.operation) == ["op1", "op2", "op3"])
    #expect(try store.records(cookie: 42).isEmpty)
    #expect(try store.records(cookie: UInt64.max).count == 1)
    #expect(try store.cookieCount() == 4)

    var query = CookieQuery()
    #expect(try store.cookies(query).map(\.cookie) == ["0000000000000003", "ffffffffffffffff", "0000000000000002", "0000000000000001"])
    let one = try #require(try store.cookies(query).last)
    #expect(one == CookieSummary(cookie: "0000000000000001", cnf: "edgesecurity", node: "edge-1", firstNs: 1_000, lastNs: 2_100, error: true, records: 3))
    query.cnf = "edgesecurity"
    #expect(try store.cookies(query).count == 3)
    query.errorOnly = true
    #expect(try store.cookies(query).map(\.cookie) == ["0000000000000001"])
    query = CookieQuery()
    query.service = "anti-virus"
    #expect(try store.cookies(query).map(\.cookie) == ["0000000000000001"])
    query = CookieQuery()
    query.sinceNs = 5_000
    query.untilNs = 8_000
    #expect(try store.cookies(query).map(\.cookie) == ["ffffffffffffffff", "0000000000000002"])
    query = CookieQuery()
    query.limit = 1
    #expect(try store.cookies(query).count == 1)
}

/// Retention, on a store holding what `exercise` stored: sessions whose last record is older
/// than the cutoff go, with their records and their services; newer ones stay.
private func expire(_ store: any RecordStore) throws {
    // Last records: cookie 1 at 2,100, cookie 2 at 5,100, cookie max at 7,100, cookie 3 at 9,100.
    #expect(try store.expire(endedBefore: 5_500, limit: 1) == 1)
    #expect(try store.records(cookie: 1).isEmpty)
    var query = CookieQuery()
    query.service = "anti-virus"
    #expect(try store.cookies(query).isEmpty)
    #expect(try store.expire(endedBefore: 5_500, limit: 10) == 1)
    #expect(try store.expire(endedBefore: 5_500, limit: 10) == 0)
    #expect(try store.cookies(CookieQuery()).map(\.cookie) == ["0000000000000003", "ffffffffffffffff"])
    #expect(try store.records(cookie: 3).count == 1)
    // A batch for an expired cookie that arrives later is a new session.
    _ = try store.store(batch(2, cnf: "edgesecurity", [span(2, 9, start: 20_000, service: "http-proxy")]))
    #expect(try store.records(cookie: 2).map(\.span.operation) == ["op9"])
}

@Suite("Central record stores", .serialized)
struct RecordStoreTests {
    @Test("SQLite: each record is stored once, read back per cookie, and cookies are listed by the query")
    func sqlite() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("central-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        try exercise(try SQLiteRecordStore(path: path))
        // Reopened, it still has everything.
        #expect(try SQLiteRecordStore(path: path).cookieCount() == 4)
        try expire(try SQLiteRecordStore(path: path))
    }

    @Test("PostgreSQL: the same behaviour against a real server")
    func postgres() async throws {
        guard TestInfra.isRoot else {
            print("SKIPPED: PostgreSQL runs as the postgres user, which needs root to switch to")
            return
        }
        try await TestInfra.with([.postgres]) { services in
            let store = try PostgresRecordStore(url: services.postgresURL)
            try exercise(store)
            try expire(store)
        }
    }

    @Test("an unknown store URL or an unreachable database is a clear error")
    func badStores() {
        #expect { _ = try RecordStores.open("mysql://x") } throws: { "\($0)".contains("use sqlite:PATH or postgres://") }
        #expect {
            _ = try RecordStores.open("postgres://postgres@127.0.0.1:\(EdgetrailTestingPorts.free())/edgetrail?connect_timeout=2")
        } throws: { "\($0)".contains("cannot connect to PostgreSQL") }
    }
}
