import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailProto

import EdgetrailTestRecords
import Foundation
import Testing

private func span(
    _ id: UInt8, parent: UInt8? = nil, _ operation: String, start: UInt64, end: UInt64, error: Bool = false,
    service: String = "http-proxy"
) -> Edgetrail_V1_Record {
    var record = TestRecords.span(
        cookie: 0xA1, trace: 9, id: id, parent: parent, operation: operation, service: service, startNs: start,
        endNs: end, status: error ? .error : .ok)
    record.cnf = "edgesecurity"
    return record
}

private func flow(_ phase: Edgetrail_V1_FlowPhase, start: UInt64, end: UInt64 = 0, bytesOut: UInt64 = 0)
    -> Edgetrail_V1_Record
{
    var record = TestRecords.flow(cookie: 0xA1, phase: phase, startNs: start, bytesOut: bytesOut)
    // As recorded, whatever the phase (the timeline must not trust an end time on a start).
    record.flow.endNs = end
    return record
}

private func snapshot(_ key: String, _ value: String, at: UInt64) -> Edgetrail_V1_Record {
    TestRecords.snapshot(cookie: 0xA1, key: key, value: value, atNs: at)
}

@Suite("Cookie timeline")
struct CookieTimelineTests {
    let records = [
        snapshot("cookie:00000000000000a1:anti-virus:verdict", "clean", at: 9_000),
        span(2, parent: 1, "policy_check", start: 2_000, end: 3_000, service: "policy-mgr"),
        flow(.start, start: 500),
        span(1, "request", start: 1_000, end: 10_000),
        span(3, parent: 2, "lookup", start: 2_100, end: 2_500, error: true, service: "policy-mgr"),
        flow(.end, start: 500, end: 11_000, bytesOut: 5120),
        span(2, parent: 1, "policy_check", start: 2_000, end: 3_000, service: "policy-mgr"),  // redelivered
    ]

    @Test("spans, merged flows and snapshots come out in time order, each once")
    func reconstruction() {
        let timeline = CookieTimeline(cookie: Cookie(0xA1), records: records)
        #expect(timeline.cookie == "00000000000000a1" && timeline.cnf == "edgesecurity")
        #expect(timeline.spans.map(\.operation) == ["request", "policy_check", "lookup"])
        #expect(timeline.spans[1].parentSpanId == timeline.spans[0].spanId)
        #expect(timeline.spans[2].status == "error")
        #expect(timeline.flows.count == 1)
        #expect(timeline.flows[0].startNs == 500 && timeline.flows[0].endNs == 11_000)
        #expect(timeline.flows[0].bytesOut == 5120 && timeline.flows[0].proto == "tcp")
        #expect(timeline.flows[0].src == "10.200.0.2" && timeline.flows[0].action == "redirect")
        #expect(timeline.snapshots.map(\.value) == [.string("clean")])
        #expect(timeline.timeline.map(\.kind) == [
            "flow-start", "span-start", "span-start", "span-start", "span-end", "span-end", "snapshot", "span-end",
            "flow-end",
        ])
        #expect(timeline.timeline.map(\.atNs) == timeline.timeline.map(\.atNs).sorted())
    }

    @Test("the JSON has the contract's field names and survives a round trip")
    func jsonContract() throws {
        let timeline = CookieTimeline(cookie: Cookie(0xA1), records: records)
        let data = try JSONEncoder().encode(timeline)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["cookie", "cnf", "spans", "flows", "snapshots", "timeline"])
        let firstSpan = try #require((object["spans"] as? [[String: Any]])?.first)
        #expect(Set(firstSpan.keys) == [
            "traceId", "spanId", "parentSpanId", "service", "operation", "startNs", "endNs", "status", "tags", "logs",
        ])
        let firstFlow = try #require((object["flows"] as? [[String: Any]])?.first)
        #expect(Set(firstFlow.keys) == [
            "src", "dst", "sport", "dport", "proto", "action", "packetsIn", "packetsOut", "bytesIn", "bytesOut",
            "startNs", "endNs",
        ])
        #expect(try JSONDecoder().decode(CookieTimeline.self, from: data) == timeline)
    }

    @Test("the text form indents the span tree, shows durations, and interleaves flows and snapshots")
    func text() {
        let text = CookieTimeline(cookie: Cookie(0xA1), records: records).renderText()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines[0] == "cookie 00000000000000a1  cnf edgesecurity  3 spans, 1 flows, 1 snapshots")
        #expect(lines[1].hasSuffix("flow start  tcp 10.200.0.2:41000 -> 10.201.0.2:80 redirect"))
        #expect(lines[2].hasSuffix("  request [http-proxy] 0.009 ms"))
        #expect(lines[3].hasSuffix("    policy_check [policy-mgr] 0.001 ms"))
        #expect(lines[4].hasSuffix("      lookup [policy-mgr] 0.000 ms  ERROR"))
        #expect(lines[5].hasSuffix("snapshot    cookie:00000000000000a1:anti-virus:verdict = clean"))
        #expect(lines[6].contains("flow end") && lines[6].contains("out 5120 B"))
        #expect(lines[1].hasPrefix("+    0.000 ms"))
    }

    @Test("the text form writes control characters as escapes and cuts long values, so a value cannot rewrite the terminal")
    func controlBytes() {
        var snapshot = Edgetrail_V1_Record()
        snapshot.cookie = 0xA1
        snapshot.snapshot.key = "cookie:00000000000000a1:x:\u{1B}[2J"
        snapshot.snapshot.stringValue = Data("ok\u{1B}]0;owned\u{07}\r\nfake line\tend\u{9B}".utf8)
        snapshot.snapshot.atNs = 5
        var long = Edgetrail_V1_Record()
        long.cookie = 0xA1
        long.snapshot.key = "cookie:00000000000000a1:x:long"
        long.snapshot.stringValue = Data(String(repeating: "y", count: 2000).utf8)
        long.snapshot.atNs = 6
        let text = CookieTimeline(cookie: Cookie(0xA1), records: [snapshot, long]).renderText()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[1].hasSuffix(#"snapshot    cookie:00000000000000a1:x:\x1b[2J = ok\x1b]0;owned\x07\r\nfake line\tend\x9b"#))
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
        #expect(lines[2].hasSuffix(String(repeating: "y", count: 512) + "… (2000 characters)"))
    }

    @Test("a value the collector cut says its full size, a value of another type says its type, and only a removed key says deleted")
    func cutUnsupportedDeleted() throws {
        func record(_ key: String, at: UInt64, _ change: (inout Edgetrail_V1_Snapshot) -> Void) -> Edgetrail_V1_Record {
            var record = Edgetrail_V1_Record()
            record.cookie = 0xA1
            record.snapshot.key = key
            record.snapshot.atNs = at
            change(&record.snapshot)
            return record
        }
        let records = [
            record("cookie:00000000000000a1:x:body", at: 1) {
                $0.stringValue = Data("abc".utf8)
                $0.fullSize = 20_971_520
            },
            record("cookie:00000000000000a1:x:queue", at: 2) { $0.unsupportedType = "list" },
            record("cookie:00000000000000a1:x:gone", at: 3) { $0.deleted = true },
        ]
        let timeline = CookieTimeline(cookie: Cookie(0xA1), records: records)
        #expect(timeline.snapshots.map(\.fullSize) == [20_971_520, nil, nil])
        #expect(timeline.snapshots.map(\.unsupportedType) == [nil, "list", nil])
        let lines = timeline.renderText().split(separator: "\n").map(String.init)
        #expect(lines[1].hasSuffix("x:body = abc (cut by the collector: the value has 20971520 bytes)"))
        #expect(lines[2].hasSuffix("x:queue = (a Redis list: its value is not captured)"))
        #expect(lines[3].hasSuffix("x:gone = (deleted)"))
        let json = String(decoding: try JSONEncoder().encode(timeline), as: UTF8.self)
        #expect(json.contains(#""fullSize":20971520"#) && json.contains(#""unsupportedType":"list""#))
    }
}
