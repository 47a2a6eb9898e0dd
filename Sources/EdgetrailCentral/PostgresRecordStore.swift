import CLibPQ
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailProto
import Foundation
import SwiftProtobuf

/// The store for scale: PostgreSQL through libpq. Same tables and semantics as the SQLite store.
public final class PostgresRecordStore: RecordStore, @unchecked Sendable {
    private let connection: OpaquePointer
    private let lock = NSLock()

    public init(url: String) throws {
        guard let connection = PQconnectdb(url) else { throw StoreError("cannot allocate a PostgreSQL connection") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(connection)
            throw StoreError(
                "cannot connect to PostgreSQL at \(url): \(message); is it up ('edgetrail infra up --with-postgres')?")
        }
        self.connection = connection
        try execute(
            """
            CREATE TABLE IF NOT EXISTS records (
                cookie BIGINT NOT NULL,
                identity BYTEA NOT NULL,
                at_ns BIGINT NOT NULL,
                body BYTEA NOT NULL,
                PRIMARY KEY (cookie, identity)
            );
            CREATE TABLE IF NOT EXISTS cookies (
                cookie BIGINT PRIMARY KEY,
                cnf TEXT NOT NULL,
                node TEXT NOT NULL,
                first_ns BIGINT NOT NULL,
                last_ns BIGINT NOT NULL,
                error BOOLEAN NOT NULL,
                records BIGINT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS cookies_by_last ON cookies (last_ns);
            CREATE TABLE IF NOT EXISTS cookie_services (
                service TEXT NOT NULL,
                cookie BIGINT NOT NULL,
                PRIMARY KEY (service, cookie)
            );
            CREATE INDEX IF NOT EXISTS cookie_services_by_cookie ON cookie_services (cookie);
            """)
    }

    deinit {
        PQfinish(connection)
    }

    /// A query parameter: text, or raw bytes (bytea).
    enum Parameter {
        case text(String)
        case bytes(Data)
    }

    /// Runs one statement; returns the result (the caller clears it) after checking it succeeded.
    @discardableResult
    private func execute(_ sql: String, _ parameters: [Parameter] = [], binaryResult: Bool = false) throws
        -> OpaquePointer
    {
        var buffers: [Data] = parameters.map { parameter in
            switch parameter {
            case .text(let text): Data(text.utf8) + Data([0])
            case .bytes(let bytes): bytes
            }
        }
        let lengths: [Int32] = parameters.enumerated().map { index, parameter in
            if case .bytes = parameter { return Int32(buffers[index].count) }
            return 0
        }
        let formats: [Int32] = parameters.map { parameter in
            if case .bytes = parameter { return 1 }
            return 0
        }
        // Statements without parameters (the schema: several at once) go through the simple protocol.
        let result: OpaquePointer? = parameters.isEmpty && !binaryResult ? PQexec(connection, sql) : buffers.withUnsafeMutableBufferPointers { pointers in
            var values: [UnsafePointer<CChar>?] = pointers.map { $0 }
            return PQexecParams(
                connection, sql, Int32(parameters.count), nil, &values, lengths, formats, binaryResult ? 1 : 0)
        }
        guard let result else { throw StoreError("PostgreSQL: \(String(cString: PQerrorMessage(connection)))") }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let message = String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQclear(result)
            throw StoreError("PostgreSQL: \(message)")
        }
        return result
    }

    private func run(_ sql: String, _ parameters: [Parameter] = []) throws -> Int {
        let result = try execute(sql, parameters)
        defer { PQclear(result) }
        return Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    public func store(_ batch: Edgetrail_V1_CookieBatch) throws -> StoreResult {
        let cookie = String(Int64(bitPattern: batch.cookie))
        let rows = try batch.records.map { record in
            (RecordIdentity.key(record), RecordIdentity.time(record), try record.serializedData(), record)
        }
        lock.lock()
        defer { lock.unlock() }
        _ = try run("BEGIN")
        do {
            var result = StoreResult(inserted: 0, duplicates: 0)
            var first = UInt64.max
            var last: UInt64 = 0
            var error = false
            var services = Set<String>()
            for (identity, at, body, record) in rows {
                let inserted = try run(
                    "INSERT INTO records (cookie, identity, at_ns, body) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [.text(cookie), .bytes(identity), .text(String(Int64(bitPattern: at))), .bytes(body)])
                guard inserted > 0 else {
                    result.duplicates += 1
                    continue
                }
                result.inserted += 1
                first = min(first, at)
                last = max(last, RecordIdentity.endTime(record))
                error = error || RecordIdentity.isError(record)
                if !record.service.isEmpty { services.insert(record.service) }
            }
            if result.inserted > 0 {
                let cnf = batch.cnf.isEmpty ? (batch.records.first?.cnf ?? "") : batch.cnf
                let node = batch.node.isEmpty ? (batch.records.first?.node ?? "") : batch.node
                _ = try run(
                    """
                    INSERT INTO cookies (cookie, cnf, node, first_ns, last_ns, error, records)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (cookie) DO UPDATE SET
                        cnf = CASE WHEN cookies.cnf = '' THEN EXCLUDED.cnf ELSE cookies.cnf END,
                        node = CASE WHEN cookies.node = '' THEN EXCLUDED.node ELSE cookies.node END,
                        first_ns = LEAST(cookies.first_ns, EXCLUDED.first_ns),
                        last_ns = GREATEST(cookies.last_ns, EXCLUDED.last_ns),
                        error = cookies.error OR EXCLUDED.error,
                        records = cookies.records + EXCLUDED.records
                    """,
                    [
                        .text(cookie), .text(cnf), .text(node), .text(String(Int64(bitPattern: first))),
                        .text(String(Int64(bitPattern: last))), .text(error ? "true" : "false"),
                        .text(String(result.inserted)),
                    ])
                for service in services {
                    _ = try run(
                        "INSERT INTO cookie_services (service, cookie) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        [.text(service), .text(cookie)])
                }
            }
            _ = try run("COMMIT")
            return result
        } catch {
            _ = try? run("ROLLBACK")
            throw error
        }
    }

    public func records(cookie: UInt64) throws -> [Edgetrail_V1_Record] {
        lock.lock()
        defer { lock.unlock() }
        let result = try execute(
            "SELECT body FROM records WHERE cookie = $1 ORDER BY at_ns", [.text(String(Int64(bitPattern: cookie)))],
            binaryResult: true)
        defer { PQclear(result) }
        return try (0..<PQntuples(result)).map { row in
            try Edgetrail_V1_Record(serializedBytes: bytes(result, row, 0))
        }
    }

    public func cookies(_ query: CookieQuery) throws -> [CookieSummary] {
        var conditions: [String] = []
        var parameters: [Parameter] = []
        func add(_ condition: String, _ value: String) {
            parameters.append(.text(value))
            conditions.append(condition.replacingOccurrences(of: "?", with: "$\(parameters.count)"))
        }
        if let cnf = query.cnf { add("c.cnf = ?", cnf) }
        if let service = query.service { add("c.cookie IN (SELECT cookie FROM cookie_services WHERE service = ?)", service) }
        if let since = query.sinceNs { add("c.last_ns >= ?", String(Int64(bitPattern: since))) }
        if let until = query.untilNs { add("c.first_ns <= ?", String(Int64(bitPattern: until))) }
        if query.errorOnly { conditions.append("c.error") }
        parameters.append(.text(String(query.limit)))
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        lock.lock()
        defer { lock.unlock() }
        let result = try execute(
            """
            SELECT c.cookie, c.cnf, c.node, c.first_ns, c.last_ns, c.error, c.records FROM cookies c
            \(whereClause) ORDER BY c.last_ns DESC LIMIT $\(parameters.count)
            """, parameters, binaryResult: true)
        defer { PQclear(result) }
        return (0..<PQntuples(result)).map { row in
            CookieSummary(
                cookie: Cookie(UInt64(bitPattern: int64(result, row, 0))).hex,
                cnf: String(decoding: bytes(result, row, 1), as: UTF8.self),
                node: String(decoding: bytes(result, row, 2), as: UTF8.self),
                firstNs: UInt64(bitPattern: int64(result, row, 3)), lastNs: UInt64(bitPattern: int64(result, row, 4)),
                error: bytes(result, row, 5).first == 1, records: Int(int64(result, row, 6)))
        }
    }

    public func cookieCount() throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        let result = try execute("SELECT COUNT(*) FROM cookies", binaryResult: true)
        defer { PQclear(result) }
        return Int(int64(result, 0, 0))
    }

    public func expire(endedBefore cutoff: UInt64, limit: Int) throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        _ = try run("BEGIN")
        do {
            let result = try execute(
                """
                DELETE FROM cookies WHERE cookie IN (
                    SELECT cookie FROM cookies WHERE last_ns < $1 ORDER BY last_ns LIMIT $2 FOR UPDATE SKIP LOCKED
                ) RETURNING cookie
                """, [.text(String(Int64(clamping: cutoff))), .text(String(limit))], binaryResult: true)
            let cookies = (0..<PQntuples(result)).map { int64(result, $0, 0) }
            PQclear(result)
            if !cookies.isEmpty {
                let array = "{" + cookies.map(String.init).joined(separator: ",") + "}"
                _ = try run("DELETE FROM records WHERE cookie = ANY($1::bigint[])", [.text(array)])
                _ = try run("DELETE FROM cookie_services WHERE cookie = ANY($1::bigint[])", [.text(array)])
            }
            _ = try run("COMMIT")
            return cookies.count
        } catch {
            _ = try? run("ROLLBACK")
            throw error
        }
    }

    private func bytes(_ result: OpaquePointer, _ row: Int32, _ column: Int32) -> Data {
        let length = Int(PQgetlength(result, row, column))
        guard let value = PQgetvalue(result, row, column), length > 0 else { return Data() }
        return Data(bytes: value, count: length)
    }

    private func int64(_ result: OpaquePointer, _ row: Int32, _ column: Int32) -> Int64 {
        bytes(result, row, column).reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }
}

extension Array where Element == Data {
    /// Pointers to each element's bytes, valid inside `body`.
    fileprivate mutating func withUnsafeMutableBufferPointers<Result>(
        _ body: ([UnsafePointer<CChar>?]) -> Result
    ) -> Result {
        func recurse(_ index: Int, _ pointers: [UnsafePointer<CChar>?]) -> Result {
            if index == count { return body(pointers) }
            return self[index].withUnsafeBytes { raw in
                recurse(index + 1, pointers + [raw.baseAddress?.assumingMemoryBound(to: CChar.self)])
            }
        }
        return recurse(0, [])
    }
}
