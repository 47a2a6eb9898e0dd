import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailPortal
import EdgetrailProto
import EdgetrailTestRecords
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// The tracing pages read a real central (its HTTP API over a SQLite store holding the records).
@Suite("Portal: tracing pages over central")
struct PortalTracingTests {
    static let cookie: UInt64 = 0x00c0_ffee_0000_0001

    /// One session: a request span with a child call that failed, a redirected flow and a
    /// snapshot, plus a span tag that is markup.
    static func records() -> [Edgetrail_V1_Record] {
        [
            TestRecords.span(
                cookie: cookie, id: 1, operation: "event request_received", service: "http-proxy", startNs: 1_000_000_000,
                endNs: 1_010_000_000, tags: ["http.url": "/<script>alert(1)</script>"]),
            TestRecords.span(
                cookie: cookie, id: 2, parent: 1, operation: "policy_mgr.check", service: "http-proxy.handlers",
                startNs: 1_002_000_000, endNs: 1_004_000_000),
            TestRecords.span(
                cookie: cookie, id: 3, parent: 2, operation: "PolicyManager/Check", service: "policy-mgr", startNs: 1_002_500_000,
                endNs: 1_003_500_000, status: .error),
            TestRecords.flow(cookie: cookie, phase: .start, startNs: 999_000_000),
            TestRecords.flow(cookie: cookie, phase: .end, startNs: 999_000_000, endNs: 1_011_000_000, bytesIn: 500, bytesOut: 9000),
            TestRecords.snapshot(cookie: cookie, key: "cookie:00c0ffee00000001:http-proxy:verdict", value: "allow", atNs: 1_005_000_000),
        ]
    }

    /// Runs `body` with a portal whose central is a real central over a store holding `records`.
    func withCentral(_ records: [Edgetrail_V1_Record], _ body: @escaping @Sendable (PortalFixture, any TestClientProtocol) async throws -> Void)
        async throws
    {
        let directory = NSTemporaryDirectory() + "edgetrail-portal-central-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteRecordStore(path: directory + "/central.sqlite")
        _ = try store.store(TestRecords.batch(cookie: Self.cookie, records))
        let central = Central(
            configuration: CentralConfiguration(brokers: "unused:1", store: "sqlite:unused"), logger: Logger(label: "test.central"),
            store: store)
        try await Application(router: central.router()).test(.live) { centralClient in
            let fixture = try PortalFixture(central: "http://127.0.0.1:\(centralClient.port!)")
            defer { fixture.cleanUp() }
            try await fixture.app().test(.router) { client in
                try await body(fixture, client)
            }
        }
    }

    @Test("a cookie's waterfall: spans under their parents, the flow and the snapshot on the same axis, a span tag <script> shown as text")
    func waterfall() async throws {
        try await withCentral(Self.records()) { _, client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let page = try await admin.get(client, "/tracing/sessions/00c0ffee00000001")
            #expect(page.status == .ok)
            let text = String(buffer: page.body)
            #expect(text.contains("3 spans, 1 flows, 1 snapshots"))
            // The tag is escaped; no script element reaches the browser.
            #expect(text.contains("/&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(!text.contains("<script>"))
            // Tree order and depth: the call under the event, the server span under the call.
            let event = try #require(text.range(of: "event request_received"))
            let call = try #require(text.range(of: "policy_mgr.check"))
            let server = try #require(text.range(of: "PolicyManager/Check"))
            #expect(event.lowerBound < call.lowerBound && call.lowerBound < server.lowerBound)
            #expect(text.contains("padding-left:28px\">PolicyManager/Check"))
            #expect(text.contains("class=\"row span error\""))
            // The axis starts at the flow's start (999 ms) and ends at its end (1011 ms): 12 ms.
            #expect(text.contains("12.00 ms"))
            #expect(text.contains("class=\"row flow ok\""))
            #expect(text.contains("tcp 10.200.0.2:41000 → 10.201.0.2:80"))
            #expect(text.contains("<dt>bytes in/out</dt><dd>500 / 9000</dd>"))
            // The snapshot is a mark at (1005 - 999) / 12 = 50% of the axis.
            #expect(text.contains("class=\"mark\" style=\"left:50.000%\""))
            #expect(text.contains("<dt>value</dt><dd>allow</dd>"))
        }
    }

    @Test("searching by CNF, μsrv and errors lists the cookie with a link to its waterfall; a bad time says how to write one")
    func search() async throws {
        try await withCentral(Self.records()) { _, client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let found = String(buffer: try await admin.get(client, "/tracing?cnf=edgesecurity&service=policy-mgr&error=true").body)
            #expect(found.contains("href=\"/tracing/sessions/00c0ffee00000001\""))
            #expect(found.contains("1 sessions, newest first"))
            let other = String(buffer: try await admin.get(client, "/tracing?cnf=another").body)
            #expect(!other.contains("00c0ffee00000001"))
            let bad = String(buffer: try await admin.get(client, "/tracing?since=yesterday").body)
            #expect(bad.contains("From: &#39;yesterday&#39; is not a time; write it as 2026-12-04T17:30:00 (UTC)"))
            let api = try await admin.get(client, "/api/v1/sessions?cnf=edgesecurity")
            #expect(String(buffer: api.body).contains(#""cookie":"00c0ffee00000001""#))
            let missing = try await admin.get(client, "/api/v1/sessions/00000000000000ff")
            #expect(missing.status == .notFound)
            #expect(String(buffer: missing.body).contains("no records for cookie 00000000000000ff"))
        }
    }

    @Test("the service graph counts the calls between μsrvs with their error rate and p99")
    func serviceGraph() async throws {
        try await withCentral(Self.records()) { _, client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let page = String(buffer: try await admin.get(client, "/tracing/graph?cnf=edgesecurity").body)
            #expect(page.contains("<svg id=\"service-graph\""))
            #expect(page.contains("<tr><td>http-proxy</td><td>http-proxy.handlers</td><td>1</td><td>0.0%</td><td>2.00 ms</td></tr>"))
            #expect(page.contains("<tr><td>http-proxy.handlers</td><td>policy-mgr</td><td>1</td><td>100.0%</td><td>1.00 ms</td></tr>"))
        }
    }

    @Test("central down: the tracing page says where it looked and what to start")
    func centralDown() async throws {
        let fixture = try PortalFixture(central: "http://127.0.0.1:9")
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let page = String(buffer: try await admin.get(client, "/tracing").body)
            #expect(page.contains("cannot reach central at http://127.0.0.1:9"))
            #expect(page.contains("is &#39;edgetrail central&#39; running?"))
            let api = try await admin.get(client, "/api/v1/sessions/00c0ffee00000001")
            #expect(api.status == .badGateway)
        }
    }
}
