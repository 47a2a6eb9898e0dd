import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailTestRecords
import Testing

@testable import EdgetrailPortal

@Suite("Login limits")
struct LoginThrottleTests {
    @Test("five failures for one name within the window lock it for fifteen minutes, from any address")
    func userLock() {
        var throttle = LoginThrottle()
        for attempt in 0..<4 {
            #expect(throttle.failed(user: "admin", address: "10.0.0.\(attempt)", now: Double(attempt)) == nil)
        }
        #expect(throttle.failed(user: "ADMIN", address: "10.0.0.9", now: 10) == .userLocked(untilSeconds: 910))
        #expect(throttle.refusal(user: "admin", address: "10.9.9.9", now: 909) == .userLocked(untilSeconds: 910))
        #expect(throttle.refusal(user: "admin", address: "10.9.9.9", now: 910) == nil)
        #expect(throttle.refusal(user: "someone-else", address: "10.0.0.9", now: 20) == nil)
    }

    @Test("failures older than the window are forgotten")
    func window() {
        var throttle = LoginThrottle()
        for attempt in 0..<4 { throttle.failed(user: "admin", address: "a", now: Double(attempt)) }
        #expect(throttle.failed(user: "admin", address: "a", now: 901) == nil)
    }

    @Test("twenty failures from one address across many names lock the address")
    func addressLock() {
        var throttle = LoginThrottle()
        for index in 0..<19 { #expect(throttle.failed(user: "user\(index)", address: "192.0.2.7", now: 5) == nil) }
        #expect(throttle.failed(user: "user19", address: "192.0.2.7", now: 5) == .addressLocked(untilSeconds: 905))
        #expect(throttle.refusal(user: "fresh", address: "192.0.2.7", now: 6) == .addressLocked(untilSeconds: 905))
        #expect(throttle.refusal(user: "fresh", address: "192.0.2.8", now: 6) == nil)
    }

    @Test("a successful login clears the name's failures")
    func success() {
        var throttle = LoginThrottle()
        for attempt in 0..<4 { throttle.failed(user: "admin", address: "a", now: Double(attempt)) }
        throttle.succeeded(user: "admin")
        #expect(throttle.failed(user: "admin", address: "a", now: 5) == nil)
    }
}

@Suite("Password hashes")
struct PasswordHasherTests {
    @Test("a hash is PBKDF2-SHA256 with its rounds and a salt of its own; only the password verifies it")
    func verify() {
        let hasher = PasswordHasher(rounds: PasswordHasher.minimumRounds)
        let first = hasher.hash("correct horse battery")
        let second = hasher.hash("correct horse battery")
        #expect(first.hasPrefix("pbkdf2-sha256$210000$"))
        #expect(first != second)
        #expect(PasswordHasher.verify("correct horse battery", against: first))
        #expect(!PasswordHasher.verify("correct horse battery!", against: first))
        #expect(!PasswordHasher.verify("correct horse battery", against: "pbkdf2-sha256$1$AAAA$AAAA"))
        #expect(!PasswordHasher.verify("", against: "garbage"))
    }

    @Test("fewer rounds than the minimum are raised to it")
    func minimum() {
        #expect(PasswordHasher(rounds: 1000).rounds == PasswordHasher.minimumRounds)
    }
}

@Suite("Metrics text")
struct PrometheusTextTests {
    @Test("samples with and without labels are read, sums are per name and label match")
    func parse() {
        let samples = PrometheusText.parse(
            """
            # HELP edgetrail_collector_records_in_total Records accepted, by source.
            # TYPE edgetrail_collector_records_in_total counter
            edgetrail_collector_records_in_total{source="otlp"} 120
            edgetrail_collector_records_in_total{source="flows",node="a \\"b\\""} 30
            edgetrail_collector_spool_bytes 4096
            broken line
            """)
        #expect(samples.count == 3)
        #expect(samples.sum("edgetrail_collector_records_in_total") == 150)
        #expect(samples.sum("edgetrail_collector_records_in_total", where: ["source": "otlp"]) == 120)
        #expect(samples[1].labels["node"] == "a \"b\"")
        #expect(samples.sum("edgetrail_collector_spool_bytes") == 4096)
    }
}

@Suite("Waterfall layout")
struct WaterfallTests {
    @Test("a span whose parent is not in the session is a root; a deep chain keeps its depth without recursion")
    func deepChain() {
        var records = [TestRecords.span(cookie: 1, id: 1, parent: 200, startNs: 1000, endNs: 2000)]
        for id in 2...150 {
            records.append(TestRecords.span(cookie: 1, id: UInt8(id), parent: UInt8(id - 1), startNs: UInt64(1000 + id), endNs: 2000))
        }
        let waterfall = Waterfall(CookieTimeline(cookie: Cookie(1), records: records))
        #expect(waterfall.rows.count == 150)
        #expect(waterfall.rows.first?.depth == 0)
        #expect(waterfall.rows.last?.depth == 149)
        #expect(waterfall.rows.allSatisfy { $0.left >= 0 && $0.left + $0.width <= 100.0001 })
    }

    @Test("an open flow runs to the end of the axis")
    func openFlow() {
        let records = [
            TestRecords.span(cookie: 1, id: 1, startNs: 1_000, endNs: 5_000),
            TestRecords.flow(cookie: 1, phase: .start, startNs: 2_000),
        ]
        let waterfall = Waterfall(CookieTimeline(cookie: Cookie(1), records: records))
        let flow = waterfall.rows.first { $0.kind == .flow }!
        #expect(flow.left == 25)
        #expect(flow.width == 75)
        #expect(flow.fields.contains { $0.0 == "ended" && $0.1.hasPrefix("no") })
    }
}
