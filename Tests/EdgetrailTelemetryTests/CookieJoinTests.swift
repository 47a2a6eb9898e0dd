import EdgetrailProto
import EdgetrailTelemetry
import EdgetrailTestRecords
import Foundation
import Testing

private let ms: UInt64 = 1_000_000
private let s: UInt64 = 1_000_000_000

private func span(_ cookie: UInt64, _ operation: String, root: Bool = false) -> Edgetrail_V1_Record {
    TestRecords.span(
        cookie: cookie, trace: nil, id: UInt8(truncatingIfNeeded: operation.utf8.reduce(0) { $0 &+ Int($1) }), parent: root ? nil : 0xEE,
        operation: operation, service: "", startNs: 0, endNs: 0)
}

private func flow(_ cookie: UInt64, _ phase: Edgetrail_V1_FlowPhase, port: UInt32 = 41000) -> Edgetrail_V1_Record {
    TestRecords.flow(cookie: cookie, phase: phase, sourcePort: port, action: .pass, startNs: 0)
}

private func snapshot(_ cookie: UInt64, _ key: String) -> Edgetrail_V1_Record {
    TestRecords.snapshot(cookie: cookie, key: key, value: "", atNs: 0)
}

private func configuration() -> CookieJoinConfiguration {
    var configuration = CookieJoinConfiguration(cnf: "edgesecurity", node: "edge-1")
    configuration.idleTimeoutNanoseconds = 30 * s
    configuration.settleNanoseconds = 500 * ms
    configuration.graceNanoseconds = 10 * s
    return configuration
}

@Suite("Cookie join")
struct CookieJoinTests {
    @Test("a session's spans, flows and snapshots go out together once the root span ended and flows closed")
    func sessionEndReleasesOneBatch() {
        var join = CookieJoin(configuration: configuration())
        var out: [JoinedBatch] = []
        out += join.add(flow(7, .start), now: 0)
        out += join.add(span(7, "policy_check"), now: 1 * ms)
        out += join.add(snapshot(7, "cookie:0000000000000007:http-proxy:session"), now: 2 * ms)
        out += join.add(span(7, "request", root: true), now: 3 * ms)
        out += join.tick(now: 100 * ms)
        #expect(out.isEmpty, "the flow is still open")
        out += join.add(flow(7, .end), now: 200 * ms)
        out += join.tick(now: 600 * ms)
        #expect(out.isEmpty, "waits for stragglers until 500 ms after the last record")
        out += join.tick(now: 701 * ms)
        #expect(out.count == 1)
        let batch = out[0].batch
        #expect(out[0].reason == .sessionEnded)
        #expect(batch.cookie == 7 && batch.seq == 0 && batch.final)
        #expect(batch.cnf == "edgesecurity" && batch.node == "edge-1")
        #expect(batch.records.count == 5)
        #expect(join.openRecords == 0)
    }

    @Test("a cookie that goes quiet is released after the idle timeout even if the session never ended")
    func idleTimeout() {
        var join = CookieJoin(configuration: configuration())
        _ = join.add(span(9, "child"), now: 0)
        _ = join.add(flow(9, .start), now: 1 * s)
        #expect(join.tick(now: 30 * s).isEmpty)
        let out = join.tick(now: 31 * s)
        #expect(out.map(\.reason) == [.idleTimeout])
        #expect(out.first?.batch.records.count == 2)
    }

    @Test("records arriving within the grace period go out as the next batch, seq + 1")
    func lateRecordsGetNextSeq() {
        var join = CookieJoin(configuration: configuration())
        _ = join.add(span(3, "root", root: true), now: 0)
        let first = join.tick(now: 1 * s)
        #expect(first.map(\.batch.seq) == [0])
        _ = join.add(flow(3, .end), now: 2 * s)
        _ = join.add(span(3, "late child"), now: 3 * s)
        #expect(join.tick(now: 5 * s).isEmpty)
        let late = join.tick(now: 11 * s)
        #expect(late.map(\.reason) == [.late])
        #expect(late.first?.batch.seq == 1)
        #expect(late.first?.batch.records.count == 2)
        #expect(join.trackedCookies == 0)
    }

    @Test("many cookies are kept apart and each goes out with only its own records")
    func cookiesAreKeptApart() {
        var join = CookieJoin(configuration: configuration())
        for cookie in 1...100 as ClosedRange<UInt64> {
            for index in 0..<5 { _ = join.add(span(cookie, "op\(index)"), now: cookie * ms) }
            _ = join.add(span(cookie, "root", root: true), now: cookie * ms)
        }
        #expect(join.openRecords == 600)
        let out = join.tick(now: 2 * s)
        #expect(out.count == 100)
        #expect(Set(out.map(\.batch.cookie)) == Set(1...100))
        #expect(out.allSatisfy { batch in batch.batch.records.allSatisfy { $0.cookie == batch.batch.cookie } })
        #expect(out.allSatisfy { $0.batch.records.count == 6 })
    }

    @Test("past the memory bound the cookie idle the longest is released early, and counted as evicted")
    func evictionKeepsMemoryBounded() {
        var config = configuration()
        config.maxOpenRecords = 10
        var join = CookieJoin(configuration: config)
        var out: [JoinedBatch] = []
        for index in 0..<12 { out += join.add(span(UInt64(index % 4 + 1), "op\(index)"), now: UInt64(index) * ms) }
        #expect(join.openRecords <= 10)
        #expect(out.allSatisfy { $0.reason == .evicted })
        #expect(out.first?.batch.cookie == 4, "cookie 4 was seen least recently when the bound was passed")
        let total = out.reduce(0) { $0 + $1.batch.records.count } + join.openRecords
        #expect(total == 12, "eviction releases records, it never loses them")
    }

    @Test("a cookie with too many records sends them in several batches with rising seq")
    func perCookieLimit() {
        var config = configuration()
        config.maxRecordsPerCookie = 4
        var join = CookieJoin(configuration: config)
        var out: [JoinedBatch] = []
        for index in 0..<10 { out += join.add(span(5, "op\(index)"), now: UInt64(index) * ms) }
        #expect(out.map(\.batch.seq) == [0, 1])
        #expect(out.allSatisfy { !$0.batch.final && $0.reason == .cookieFull })
        out += join.drain()
        #expect(out.map(\.batch.seq) == [0, 1, 2])
        #expect(out.reduce(0) { $0 + $1.batch.records.count } == 10)
    }

    @Test("a cookie's records larger together than a Kafka message go out as several batches under it, in order, only the last final")
    func batchesSplitUnderTheMessageLimit() throws {
        var config = configuration()
        config.maxBatchBytes = 10_000
        var join = CookieJoin(configuration: config)
        for index in 0..<30 {
            var record = span(9, "op\(index)")
            record.span.tags["payload"] = String(repeating: "x", count: 1_000)
            _ = join.add(record, origin: UInt64(index), now: UInt64(index) * ms)
        }
        _ = join.add(span(9, "request", root: true), now: 30 * ms)
        let out = join.tick(now: 1 * s)
        #expect(out.count >= 4, "31 records of ~1 KB do not fit in 10 KB")
        #expect(out.map(\.batch.seq) == Array(0..<UInt32(out.count)))
        #expect(out.map(\.batch.final) == Array(repeating: false, count: out.count - 1) + [true])
        #expect(out.allSatisfy { $0.reason == .sessionEnded && $0.batch.cookie == 9 })
        for piece in out {
            #expect(piece.serializedBytes().count <= 10_000)
            #expect(try Edgetrail_V1_CookieBatch(serializedBytes: piece.serializedBytes()).records == piece.batch.records)
        }
        #expect(out.flatMap(\.batch.records).map(\.span.operation) == (0..<30).map { "op\($0)" } + ["request"])
        #expect(out.flatMap(\.origins) == (0..<30).map(UInt64.init) + [0], "each record keeps its origin")
        // A late record after the split continues the sequence.
        let late = join.add(span(9, "straggler"), now: 2 * s) + join.tick(now: 20 * s)
        #expect(late.map(\.batch.seq) == [UInt32(out.count)])
    }

    @Test("the largest record the join can ship alone is what a batch holds besides its header")
    func largestRecord() {
        var config = configuration()
        config.maxBatchBytes = 10_000
        let join = CookieJoin(configuration: config)
        #expect(join.largestRecordBytes > 9_900 && join.largestRecordBytes < 10_000)
        var join2 = CookieJoin(configuration: config)
        var record = span(3, "big", root: true)
        record.span.tags["payload"] = ""
        let empty = RecordWire.encode(record).count
        // The largest payload that keeps the record within the bound (length prefixes grow with it).
        var filler = join.largestRecordBytes - empty
        repeat {
            record.span.tags["payload"] = String(repeating: "y", count: filler)
            filler -= 1
        } while RecordWire.encode(record).count > join.largestRecordBytes
        #expect(RecordWire.encode(record).count >= join.largestRecordBytes - 1)
        _ = join2.add(record, now: 0)
        let out = join2.drain()
        #expect(out.count == 1 && out[0].serializedBytes().count <= 10_000)
    }

    @Test("drain releases everything held, for shutdown")
    func drain() {
        var join = CookieJoin(configuration: configuration())
        _ = join.add(span(1, "a"), now: 0)
        _ = join.add(span(2, "b"), now: 0)
        let out = join.drain()
        #expect(out.map(\.batch.cookie) == [1, 2])
        #expect(out.allSatisfy { $0.reason == .shutdown && $0.batch.final })
        #expect(join.openRecords == 0 && join.trackedCookies == 0)
    }
}
