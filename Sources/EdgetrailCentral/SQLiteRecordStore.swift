import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailProto
import Foundation
import GRDB
import SwiftProtobuf

/// The embedded store: one SQLite file (WAL mode, so queries run while batches are stored).
public final class SQLiteRecordStore: RecordStore {
    private let pool: DatabasePool

    public init(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // WAL with NORMAL sync: durable across process crashes, fast enough to keep up.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try pool.write { db in
                try db.execute(
                    sql: """
                        CREATE TABLE IF NOT EXISTS records (
                            cookie INTEGER NOT NULL,
                            identity BLOB NOT NULL,
                            at_ns INTEGER NOT NULL,
                            body BLOB NOT NULL,
                            PRIMARY KEY (cookie, identity)
                        ) WITHOUT ROWID;
                        CREATE TABLE IF NOT EXISTS cookies (
                            cookie INTEGER PRIMARY KEY,
                            cnf TEXT NOT NULL,
                            node TEXT NOT NULL,
                            first_ns INTEGER NOT NULL,
                            last_ns INTEGER NOT NULL,
                            error INTEGER NOT NULL,
                            records INTEGER NOT NULL
                        );
                        CREATE INDEX IF NOT EXISTS cookies_by_last ON cookies (last_ns);
                        CREATE TABLE IF NOT EXISTS cookie_services (
                            service TEXT NOT NULL,
                            cookie INTEGER NOT NULL,
                            PRIMARY KEY (service, cookie)
                        ) WITHOUT ROWID;
                        CREATE INDEX IF NOT EXISTS cookie_services_by_cookie ON cookie_services (cookie);
                        """)
            }
        } catch {
            throw StoreError("cannot open the SQLite store at \(path): \(error)")
        }
    }

    public func store(_ batch: Edgetrail_V1_CookieBatch) throws -> StoreResult {
        try store(contentsOf: [batch])
    }

    /// Stores several batches in one transaction (bulk loads, and central catching up).
    public func store(contentsOf batches: [Edgetrail_V1_CookieBatch]) throws -> StoreResult {
        let prepared = try batches.map { batch in
            (batch, try batch.records.map { record in
                (RecordIdentity.key(record), RecordIdentity.time(record), try record.serializedData(), record)
            })
        }
        return try pool.write { db in
            var total = StoreResult(inserted: 0, duplicates: 0)
            let insert = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO records (cookie, identity, at_ns, body) VALUES (?, ?, ?, ?)")
            let upsert = try db.cachedStatement(
                sql: """
                    INSERT INTO cookies (cookie, cnf, node, first_ns, last_ns, error, records)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (cookie) DO UPDATE SET
                        cnf = CASE WHEN cookies.cnf = '' THEN excluded.cnf ELSE cookies.cnf END,
                        node = CASE WHEN cookies.node = '' THEN excluded.node ELSE cookies.node END,
                        first_ns = MIN(cookies.first_ns, excluded.first_ns),
                        last_ns = MAX(cookies.last_ns, excluded.last_ns),
                        error = MAX(cookies.error, excluded.error),
                        records = cookies.records + excluded.records
                    """)
            let service = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO cookie_services (service, cookie) VALUES (?, ?)")
            for (batch, rows) in prepared {
                let cookie = Int64(bitPattern: batch.cookie)
                var inserted = 0
                var first = UInt64.max
                var last: UInt64 = 0
                var error = false
                var services = Set<String>()
                for (identity, at, body, record) in rows {
                    try insert.execute(arguments: [cookie, identity, Int64(bitPattern: at), body])
                    guard db.changesCount > 0 else {
                        total.duplicates += 1
                        continue
                    }
                    inserted += 1
                    first = min(first, at)
                    last = max(last, RecordIdentity.endTime(record))
                    error = error || RecordIdentity.isError(record)
                    if !record.service.isEmpty { services.insert(record.service) }
                }
                total.inserted += inserted
                guard inserted > 0 else { continue }
                let cnf = batch.cnf.isEmpty ? (batch.records.first?.cnf ?? "") : batch.cnf
                let node = batch.node.isEmpty ? (batch.records.first?.node ?? "") : batch.node
                try upsert.execute(arguments: [
                    cookie, cnf, node, Int64(bitPattern: first), Int64(bitPattern: last), error ? 1 : 0, inserted,
                ])
                for name in services { try service.execute(arguments: [name, cookie]) }
            }
            return total
        }
    }

    public func records(cookie: UInt64) throws -> [Edgetrail_V1_Record] {
        let bodies = try pool.read { db in
            try Data.fetchAll(
                db, sql: "SELECT body FROM records WHERE cookie = ? ORDER BY at_ns",
                arguments: [Int64(bitPattern: cookie)])
        }
        return try bodies.map { try Edgetrail_V1_Record(serializedBytes: $0) }
    }

    public func cookies(_ query: CookieQuery) throws -> [CookieSummary] {
        var conditions: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        if let cnf = query.cnf {
            conditions.append("c.cnf = ?")
            arguments.append(cnf)
        }
        if let service = query.service {
            conditions.append("c.cookie IN (SELECT cookie FROM cookie_services WHERE service = ?)")
            arguments.append(service)
        }
        if let since = query.sinceNs {
            conditions.append("c.last_ns >= ?")
            arguments.append(Int64(bitPattern: since))
        }
        if let until = query.untilNs {
            conditions.append("c.first_ns <= ?")
            arguments.append(Int64(bitPattern: until))
        }
        if query.errorOnly { conditions.append("c.error = 1") }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments.append(query.limit)
        let sql = """
            SELECT c.cookie, c.cnf, c.node, c.first_ns, c.last_ns, c.error, c.records FROM cookies c
            \(whereClause) ORDER BY c.last_ns DESC LIMIT ?
            """
        return try pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map { row in
                CookieSummary(
                    cookie: Cookie(UInt64(bitPattern: row[0] as Int64)).hex, cnf: row[1], node: row[2],
                    firstNs: UInt64(bitPattern: row[3] as Int64), lastNs: UInt64(bitPattern: row[4] as Int64),
                    error: (row[5] as Int64) != 0, records: row[6])
            }
        }
    }

    public func cookieCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM cookies") ?? 0 }
    }

    public func expire(endedBefore cutoff: UInt64, limit: Int) throws -> Int {
        try pool.write { db in
            let cookies = try Int64.fetchAll(
                db, sql: "SELECT cookie FROM cookies WHERE last_ns < ? ORDER BY last_ns LIMIT ?",
                arguments: [Int64(clamping: cutoff), limit])
            guard !cookies.isEmpty else { return 0 }
            // Integers only, so the list is safe to write into the statement.
            let list = cookies.map(String.init).joined(separator: ",")
            try db.execute(sql: "DELETE FROM records WHERE cookie IN (\(list))")
            try db.execute(sql: "DELETE FROM cookie_services WHERE cookie IN (\(list))")
            try db.execute(sql: "DELETE FROM cookies WHERE cookie IN (\(list))")
            return cookies.count
        }
    }
}
