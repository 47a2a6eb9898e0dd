import EdgetrailCore
import EdgetrailProto
import Foundation
import SwiftProtobuf
import Testing

@Suite("Telemetry schema")
struct TelemetrySchemaTests {
    @Test("a CookieBatch with a span, a flow event and a snapshot survives encoding")
    func batchRoundTrip() throws {
        let cookie = Cookie(0x0123_4567_89AB_CDEF)
        var span = Edgetrail_V1_Record()
        span.cookie = cookie.rawValue
        span.cnf = "edgesecurity"
        span.service = "policy-mgr"
        span.span.traceID = Data(repeating: 7, count: 16)
        span.span.spanID = Data(repeating: 1, count: 8)
        span.span.operation = "policy_check"
        span.span.startNs = 1_700_000_000_000_000_000
        span.span.endNs = 1_700_000_000_004_000_000
        span.span.status = .error
        span.span.tags = ["http.url": "/a?b"]
        span.span.baggage = ["edgetrail.cookie": cookie.hex]
        var flow = Edgetrail_V1_Record()
        flow.cookie = cookie.rawValue
        flow.flow.phase = .end
        flow.flow.tuple.srcIp = Data([10, 200, 0, 2])
        flow.flow.tuple.dstIp = Data([10, 201, 0, 2])
        flow.flow.tuple.dstPort = 80
        flow.flow.tuple.protocol = 6
        flow.flow.action = .redirect
        flow.flow.bytesIn = 512
        flow.flow.endReason = .fin
        var snapshot = Edgetrail_V1_Record()
        snapshot.cookie = cookie.rawValue
        snapshot.snapshot.key = cookie.redisKeyPrefix + "anti-virus:verdict"
        snapshot.snapshot.hashFields.fields = ["infected": Data("yes".utf8)]
        var batch = Edgetrail_V1_CookieBatch()
        batch.cookie = cookie.rawValue
        batch.seq = 2
        batch.final = true
        batch.records = [span, flow, snapshot]

        let decoded = try Edgetrail_V1_CookieBatch(serializedBytes: try batch.serializedBytes() as [UInt8])
        #expect(decoded == batch)
        #expect(decoded.records.map { record -> String in
            switch record.kind {
            case .span: "span"
            case .flow: "flow"
            case .snapshot: "snapshot"
            case nil: "none"
            }
        } == ["span", "flow", "snapshot"])
    }

    @Test("the cookie is a fixed64 on the wire: 8 bytes, whatever its value")
    func cookieIsFixed64() throws {
        var small = Edgetrail_V1_CookieBatch()
        small.cookie = 1
        var large = Edgetrail_V1_CookieBatch()
        large.cookie = UInt64.max
        let smallBytes: [UInt8] = try small.serializedBytes()
        let largeBytes: [UInt8] = try large.serializedBytes()
        #expect(smallBytes.count == 9)  // tag + 8 bytes
        #expect(largeBytes.count == 9)
        #expect(smallBytes.first == 0x09)  // field 1, wire type 1 (64-bit)
    }

    @Test("the Datapath Manager's service descriptor lists the calls the design names")
    func datapathServiceMethods() {
        let methods = Edgetrail_V1_DatapathManager.Method.descriptors.map(\.method)
        #expect(Set(methods) == ["ApplyRules", "ListRules", "BindFlow", "Stats", "StreamEvents"])
    }
}
