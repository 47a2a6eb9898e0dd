import EdgetrailProto
import EdgetrailTelemetry
import Foundation
import SwiftProtobuf
import Testing

@Suite("Records encoded once and framed into batches")
struct RecordWireTests {
    private func records(_ cookie: UInt64) -> [Edgetrail_V1_Record] {
        var root = Edgetrail_V1_Record()
        root.cookie = cookie
        root.service = "http-proxy"
        root.span.spanID = Data([1, 2, 3, 4, 5, 6, 7, 8])
        root.span.operation = "request"
        root.span.tags = ["http.url": "/login?user=alice", "http.method": "POST"]
        var snapshot = Edgetrail_V1_Record()
        snapshot.cookie = cookie
        snapshot.snapshot.key = "cookie:\(cookie):state"
        snapshot.snapshot.stringValue = Data(repeating: 0x41, count: 300)  // length needs a 2-byte varint
        var empty = Edgetrail_V1_Record()
        empty.cookie = cookie
        return [root, snapshot, empty]
    }

    @Test("a batch framed from the records' own bytes decodes to the same batch SwiftProtobuf would write")
    func framedBatchDecodesEqual() throws {
        var join = CookieJoin(configuration: CookieJoinConfiguration(cnf: "edgesecurity", node: "edge-1"))
        let input = records(0xfeed)
        for record in input {
            _ = join.add(record, encoded: RecordWire.encode(record), origin: 7, now: 1)
        }
        let released = try #require(join.drain().first)
        let prefix = Array("000000000000feed".utf8)
        let bytes = released.serializedBytes(prefix: prefix)
        #expect(Array(bytes.prefix(16)) == prefix)
        let decoded = try Edgetrail_V1_CookieBatch(serializedBytes: Array(bytes.dropFirst(16)))
        #expect(decoded == released.batch)
        #expect(decoded.records == input)
        #expect(decoded.cnf == "edgesecurity")
        #expect(decoded.final)
    }

    @Test("a record added without bytes (e.g. redacted after intake) is encoded as it is when released")
    func changedRecordEncodedOnRelease() throws {
        var join = CookieJoin(configuration: CookieJoinConfiguration(cnf: "c", node: "n"))
        var input = records(1)
        let stale = RecordWire.encode(input[0])
        input[0].span.tags["http.url"] = "/login?…"
        _ = join.add(input[0], origin: 1, now: 1)  // no bytes: they would be the unredacted ones
        _ = join.add(input[1], encoded: RecordWire.encode(input[1]), origin: 1, now: 1)
        let released = try #require(join.drain().first)
        #expect(released.encodedRecords[0] != stale)
        let decoded = try Edgetrail_V1_CookieBatch(serializedBytes: released.serializedBytes())
        #expect(decoded.records[0].span.tags["http.url"] == "/login?…")
        #expect(decoded.records == Array(input.prefix(2)))
    }

    @Test("the intake journal's container of encoded records reads back as a CookieBatch")
    func containerReadsBack() throws {
        let input = records(42)
        let container = RecordWire.container(input.map(RecordWire.encode))
        let decoded = try Edgetrail_V1_CookieBatch(serializedBytes: container)
        #expect(decoded.records == input)
    }
}
