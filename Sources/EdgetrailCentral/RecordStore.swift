import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailProto
import Foundation

/// What storing one batch did: records new to the store, and records it already had.
public struct StoreResult: Sendable, Hashable {
    public var inserted: Int
    public var duplicates: Int

    public init(inserted: Int, duplicates: Int) {
        self.inserted = inserted
        self.duplicates = duplicates
    }
}

/// Where central keeps records per cookie. Storing is idempotent: a record already stored
/// (same identity, see `RecordIdentity`) is not stored again, so a redelivered batch changes
/// nothing.
public protocol RecordStore: Sendable {
    func store(_ batch: Edgetrail_V1_CookieBatch) throws -> StoreResult
    /// Every stored record of the cookie, in no particular order.
    func records(cookie: UInt64) throws -> [Edgetrail_V1_Record]
    func cookies(_ query: CookieQuery) throws -> [CookieSummary]
    /// How many cookies the store holds.
    func cookieCount() throws -> Int
    /// Deletes up to `limit` sessions whose last record is older than `cutoff` (Unix ns), oldest
    /// first, with their records, in one short transaction; returns how many it deleted.
    func expire(endedBefore cutoff: UInt64, limit: Int) throws -> Int
}

/// A store could not be opened or used.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What makes two records the same record, whichever batch or redelivery they came in.
public enum RecordIdentity {
    /// span: trace id + span id; flow event: 5-tuple + phase + start time; snapshot: key + time +
    /// event. Prefixed by the kind.
    public static func key(_ record: Edgetrail_V1_Record) -> Data {
        var key = Data()
        switch record.kind {
        case .span(let span):
            key.append(1)
            key.append(span.traceID)
            key.append(span.spanID)
        case .flow(let flow):
            key.append(2)
            key.append(flow.tuple.srcIp)
            key.append(flow.tuple.dstIp)
            append(UInt64(flow.tuple.srcPort) << 32 | UInt64(flow.tuple.dstPort), to: &key)
            append(UInt64(flow.tuple.protocol) << 8 | UInt64(flow.phase.rawValue), to: &key)
            append(flow.startNs, to: &key)
            append(flow.endNs, to: &key)
        case .snapshot(let snapshot):
            key.append(3)
            append(snapshot.atNs, to: &key)
            key.append(Data(snapshot.event.utf8))
            key.append(0)
            key.append(Data(snapshot.key.utf8))
        case nil:
            key.append(0)
            key.append((try? record.serializedData()) ?? Data())
        }
        return key
    }

    /// When the record happened: a span's start, a flow event's start (or end), a snapshot's time.
    public static func time(_ record: Edgetrail_V1_Record) -> UInt64 {
        switch record.kind {
        case .span(let span): span.startNs
        case .flow(let flow): flow.phase == .end && flow.endNs != 0 ? flow.endNs : flow.startNs
        case .snapshot(let snapshot): snapshot.atNs
        case nil: record.acceptedAtNs
        }
    }

    /// When the record's activity ended (a span's end; otherwise its time).
    public static func endTime(_ record: Edgetrail_V1_Record) -> UInt64 {
        if case .span(let span) = record.kind { return max(span.endNs, span.startNs) }
        return time(record)
    }

    public static func isError(_ record: Edgetrail_V1_Record) -> Bool {
        if case .span(let span) = record.kind { return span.status == .error }
        return false
    }

    private static func append(_ value: UInt64, to data: inout Data) {
        withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) }
    }
}

/// Opens the store a `--store` argument names: `sqlite:PATH` or `postgres://…`.
public enum RecordStores {
    public static func open(_ url: String) throws -> any RecordStore {
        if url.hasPrefix("sqlite:") {
            return try SQLiteRecordStore(path: String(url.dropFirst("sqlite:".count)))
        }
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return try PostgresRecordStore(url: url)
        }
        throw StoreError("unknown store '\(url)'; use sqlite:PATH or postgres://USER@HOST:PORT/DATABASE")
    }
}
