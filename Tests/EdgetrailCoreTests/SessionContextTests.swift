import EdgetrailCore
import Foundation
import Testing

@Suite("Session context in call metadata")
struct SessionContextTests {
    private let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    private let parent = "00f067aa0ba902b7"

    @Test("a W3C traceparent reads into its ids and sampled flag, and writes back the same")
    func traceParentRoundTrip() throws {
        let header = "00-\(trace)-\(parent)-01"
        let parsed = try #require(TraceParent(header: header))
        #expect(parsed.sampled)
        #expect(parsed.traceID.count == 16 && parsed.traceID.first == 0x4b)
        #expect(parsed.parentID.last == 0xb7)
        #expect(parsed.header == header)
        #expect(TraceParent(header: "00-\(trace)-\(parent)-00")?.sampled == false)
    }

    @Test(
        "a traceparent that breaks the format is refused, not guessed at",
        arguments: [
            "00-\(String(repeating: "0", count: 32))-00f067aa0ba902b7-01",  // all-zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero parent id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // version 00 is 55 characters
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",  // short
            "",
        ])
    func traceParentRefused(_ header: String) {
        #expect(TraceParent(header: header) == nil)
    }

    @Test("a later traceparent version is read by its four fields")
    func laterVersion() {
        #expect(TraceParent(header: "cc-\(trace)-\(parent)-01-what-comes-later")?.sampled == true)
    }

    @Test("baggage entries keep their order, drop properties and whitespace, and decode values")
    func baggageEntries() {
        let entries = Baggage.entries(" user = alice%20b ;ttl=3 , edgetrail.cookie=00000000000000a1,broken, =x")
        #expect(entries.map(\.key) == ["user", "edgetrail.cookie"])
        #expect(entries.map(\.value) == ["alice b", "00000000000000a1"])
        #expect(Baggage.cookie(in: "a=1,edgetrail.cookie=00000000000000A1") == Cookie(0xA1))
        #expect(Baggage.cookie(in: "edgetrail.cookie=42") == nil, "a cookie is 16 hex digits")
    }

    @Test("baggage past the W3C limit of 180 entries is cut there")
    func baggageBound() {
        let header = (0..<500).map { "k\($0)=v" }.joined(separator: ",")
        #expect(Baggage.entries(header).count == Baggage.maxEntries)
    }

    @Test("the cookie header wins over the baggage's; without it, the baggage's is taken")
    func cookieFromMetadata() {
        let both = SessionContext(metadata: [
            ("baggage", "edgetrail.cookie=00000000000000b2"), ("Edgetrail-Cookie", "00000000000000a1"),
        ])
        #expect(both.cookie == Cookie(0xA1))
        #expect(both.baggage.isEmpty, "the cookie is not kept twice")
        let baggageOnly = SessionContext(metadata: [("baggage", "tenant=blue,edgetrail.cookie=00000000000000b2")])
        #expect(baggageOnly.cookie == Cookie(0xB2))
        #expect(baggageOnly.baggage.map(\.key) == ["tenant"])
        #expect(SessionContext(metadata: [("edgetrail-cookie", "not a cookie")]).cookie == nil)
    }

    @Test("a call's metadata carries the cookie twice, the trace with the caller's span as parent, and the rest of the baggage")
    func outgoingMetadata() throws {
        let incoming = SessionContext(metadata: [
            ("edgetrail-cookie", "00000000000000a1"), ("traceparent", "00-\(trace)-\(parent)-01"),
            ("baggage", "tenant=blue green"),
        ])
        let caller: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let outgoing = incoming.metadata(parentSpanID: caller)
        #expect(outgoing.map(\.name) == ["edgetrail-cookie", "traceparent", "baggage"])
        #expect(outgoing[0].value == "00000000000000a1")
        #expect(outgoing[1].value == "00-\(trace)-0102030405060708-01")
        #expect(outgoing[2].value == "edgetrail.cookie=00000000000000a1,tenant=blue%20green")
        // What the callee reads is what the caller had, one span further down.
        let read = SessionContext(metadata: outgoing)
        #expect(read.cookie == incoming.cookie)
        #expect(read.baggage.map(\.value) == ["blue green"])
        #expect(read.traceParent?.traceID == incoming.traceParent?.traceID)
        #expect(read.traceParent?.parentID == caller)
    }
}
