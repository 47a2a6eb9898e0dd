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

    @Test("every field of every kind of record is written so that SwiftProtobuf reads back the same record")
    func handWrittenEncodingReadsBack() throws {
        var span = Edgetrail_V1_Record()
        span.cookie = 0xfeed_0000_0000_0001
        span.cnf = "edgesecurity"
        span.node = "edge-1"
        span.service = "http-proxy"
        span.acceptedAtNs = 1_700_000_000_123_456_789
        span.span.traceID = Data((0..<16).map { UInt8($0) })
        span.span.spanID = Data([1, 2, 3, 4, 5, 6, 7, 8])
        span.span.parentSpanID = Data([8, 7, 6, 5, 4, 3, 2, 1])
        span.span.operation = "HTTP GET — ünïcode"
        span.span.startNs = 1
        span.span.endNs = .max
        span.span.status = .error
        span.span.statusMessage = "upstream refused"
        span.span.kind = .server
        span.span.tags = ["http.url": "/x?y", "empty": "", "long": String(repeating: "v", count: 200)]
        var log = Edgetrail_V1_SpanLog()
        log.atNs = 42
        log.name = "exception"
        log.fields = ["exception.type": "ValueError", "exception.message": ""]
        span.span.logs = [log, Edgetrail_V1_SpanLog()]
        span.span.baggage = ["edgetrail.cookie": "feed000000000001"]

        var flow = Edgetrail_V1_Record()
        flow.cookie = 7
        flow.flow.phase = .end
        flow.flow.tuple.srcIp = Data([10, 200, 0, 2])
        flow.flow.tuple.dstIp = Data([10, 201, 0, 2])
        flow.flow.tuple.srcPort = 40_000
        flow.flow.tuple.dstPort = 80
        flow.flow.tuple.protocol = 6
        flow.flow.action = .redirect
        flow.flow.ruleID = 3
        flow.flow.packetsIn = 10
        flow.flow.packetsOut = 11
        flow.flow.bytesIn = 1_000_000
        flow.flow.bytesOut = 12
        flow.flow.drops = 1
        flow.flow.startNs = 5
        flow.flow.endNs = 6
        flow.flow.endReason = .rst
        flow.flow.lostEvents = 2
        var flowWithoutTuple = Edgetrail_V1_Record()
        flowWithoutTuple.flow.phase = .start

        var hash = Edgetrail_V1_Record()
        hash.cookie = 9
        hash.snapshot.key = "cookie:0000000000000009:policy-mgr:check"
        hash.snapshot.hashFields.fields = ["rule": Data("allow-all".utf8), "empty": Data(), "binary": Data([0, 0xFF])]
        hash.snapshot.event = "hset"
        hash.snapshot.atNs = 77
        hash.snapshot.source = "redis+unix:///run/redis.sock?db=0"
        hash.snapshot.fullSize = 99_999
        var emptyString = Edgetrail_V1_Record()
        emptyString.snapshot.stringValue = Data()  // set, though empty: not the same as no value
        var emptyHash = Edgetrail_V1_Record()
        emptyHash.snapshot.hashFields = Edgetrail_V1_HashFields()
        var deleted = Edgetrail_V1_Record()
        deleted.snapshot.deleted = true
        deleted.snapshot.unsupportedType = "list"
        let withoutKind = Edgetrail_V1_Record()

        for record in [span, flow, flowWithoutTuple, hash, emptyString, emptyHash, deleted, withoutKind] {
            let decoded = try Edgetrail_V1_Record(serializedBytes: RecordWire.encode(record))
            #expect(decoded == record)
            #expect(decoded.kind == record.kind, "which kind, even when its message is empty")
        }
        #expect(try Edgetrail_V1_Record(serializedBytes: RecordWire.encode(emptyString)).snapshot.value == .stringValue(Data()))
    }

    @Test("a record carrying fields this build does not know keeps them when encoded again")
    func unknownFieldsKept() throws {
        var record = Edgetrail_V1_Record()
        record.cookie = 1
        record.span.operation = "op"
        // Field 99 (varint 5), as a newer build might write it.
        let bytes = try record.serializedBytes() as [UInt8] + [0x98, 0x06, 0x05]
        let newer = try Edgetrail_V1_Record(serializedBytes: bytes)
        #expect(!newer.unknownFields.data.isEmpty)
        let again = try Edgetrail_V1_Record(serializedBytes: RecordWire.encode(newer))
        #expect(again == newer)
    }
}
