import EdgetrailProto
import EdgetrailTelemetry
import EdgetrailTestRecords
import Foundation
import Testing

private let s: UInt64 = 1_000_000_000

private func span(trace: UInt8, id: UInt8, cookie: UInt64 = 0) -> Edgetrail_V1_Record {
    TestRecords.span(cookie: cookie, trace: trace, id: id, operation: "op\(id)", service: "", startNs: 0, endNs: 0)
}

private func configuration(hold: UInt64 = 10 * s, maxSpans: Int = 100, maxBytes: Int = 1 << 20) -> TraceHoldConfiguration {
    var configuration = TraceHoldConfiguration()
    configuration.holdNanoseconds = hold
    configuration.maxSpans = maxSpans
    configuration.maxBytes = maxBytes
    return configuration
}

@Suite("Trace hold: cookie-less spans wait for their trace's cookie")
struct TraceHoldTests {
    @Test("children that arrive before their root get the root's cookie when it comes")
    func childrenBeforeRoot() {
        var hold = TraceHold(configuration: configuration())
        #expect(hold.shouldHold(span(trace: 1, id: 2)))
        _ = hold.hold(span(trace: 1, id: 2), bytes: 100, origin: 11, now: 0)
        _ = hold.hold(span(trace: 1, id: 3), bytes: 100, origin: 12, now: 1 * s)
        _ = hold.hold(span(trace: 9, id: 4), bytes: 100, origin: 13, now: 1 * s)
        #expect(hold.heldSpans == 3 && hold.heldTraces == 2)
        let out = hold.attach(cookie: 0xA1, trace: Data(repeating: 1, count: 16))
        #expect(out.map(\.record.span.operation) == ["op2", "op3"])
        #expect(out.allSatisfy { $0.record.cookie == 0xA1 && $0.reason == .attached })
        #expect(out.map(\.origin) == [11, 12], "each keeps its journal entry")
        #expect(hold.heldSpans == 1 && hold.heldBytes == 100 && hold.heldTraces == 1)
        #expect(hold.attach(cookie: 0xA1, trace: Data(repeating: 1, count: 16)).isEmpty, "nothing held twice")
    }

    @Test("a span whose trace brings no cookie within the hold time is let go, oldest first, still without one")
    func expiry() {
        var hold = TraceHold(configuration: configuration(hold: 5 * s))
        _ = hold.hold(span(trace: 1, id: 1), bytes: 10, origin: 1, now: 0)
        _ = hold.hold(span(trace: 2, id: 2), bytes: 10, origin: 2, now: 2 * s)
        #expect(hold.tick(now: 4 * s).isEmpty)
        let first = hold.tick(now: 5 * s)
        #expect(first.map(\.record.span.operation) == ["op1"] && first[0].reason == .expired && first[0].record.cookie == 0)
        #expect(hold.tick(now: 7 * s).map(\.origin) == [2])
        #expect(hold.heldSpans == 0 && hold.heldBytes == 0 && hold.heldTraces == 0)
    }

    @Test("an attached span does not expire later, and the ones around it still do")
    func attachedDoNotExpire() {
        var hold = TraceHold(configuration: configuration(hold: 5 * s))
        _ = hold.hold(span(trace: 1, id: 1), bytes: 10, origin: 1, now: 0)
        _ = hold.hold(span(trace: 2, id: 2), bytes: 10, origin: 2, now: 1 * s)
        _ = hold.hold(span(trace: 3, id: 3), bytes: 10, origin: 3, now: 2 * s)
        _ = hold.attach(cookie: 7, trace: Data(repeating: 2, count: 16))
        #expect(hold.tick(now: 10 * s).map(\.origin) == [1, 3])
    }

    @Test("past its span or byte bound the hold lets the oldest go early, counted as full")
    func bounds() {
        var bySpans = TraceHold(configuration: configuration(maxSpans: 2))
        _ = bySpans.hold(span(trace: 1, id: 1), bytes: 10, origin: 1, now: 0)
        _ = bySpans.hold(span(trace: 2, id: 2), bytes: 10, origin: 2, now: 0)
        let early = bySpans.hold(span(trace: 3, id: 3), bytes: 10, origin: 3, now: 0)
        #expect(early.map(\.origin) == [1] && early[0].reason == .full)
        #expect(bySpans.heldSpans == 2)
        var byBytes = TraceHold(configuration: configuration(maxBytes: 1000))
        _ = byBytes.hold(span(trace: 1, id: 1), bytes: 600, origin: 1, now: 0)
        #expect(byBytes.hold(span(trace: 2, id: 2), bytes: 600, origin: 2, now: 0).map(\.origin) == [1])
        #expect(byBytes.heldBytes == 600)
    }

    @Test("only cookie-less spans with a trace id are held, and nothing when the hold time is 0")
    func whatIsHeld() {
        let hold = TraceHold(configuration: configuration())
        #expect(!hold.shouldHold(span(trace: 1, id: 1, cookie: 5)))
        var noTrace = span(trace: 1, id: 1)
        noTrace.span.traceID = Data()
        #expect(!hold.shouldHold(noTrace))
        var snapshot = Edgetrail_V1_Record()
        snapshot.snapshot.key = "cookie:0000000000000000:x"
        #expect(!hold.shouldHold(snapshot))
        #expect(!TraceHold(configuration: configuration(hold: 0)).shouldHold(span(trace: 1, id: 1)))
    }

    @Test("many traces held and let go keep the hold's memory bounded")
    func churn() {
        var hold = TraceHold(configuration: configuration(hold: 1 * s, maxSpans: 50))
        var out = 0
        for index in 0..<20_000 {
            let trace = UInt8(truncatingIfNeeded: index)
            out += hold.hold(span(trace: trace, id: 1), bytes: 10, origin: UInt64(index), now: UInt64(index) * 1_000_000).count
            if index % 3 == 0 { out += hold.attach(cookie: 9, trace: Data(repeating: trace, count: 16)).count }
            out += hold.tick(now: UInt64(index) * 1_000_000).count
        }
        #expect(out + hold.heldSpans == 20_000, "every span held is let go exactly once")
        #expect(hold.heldSpans <= 50)
    }
}
