import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailProto
import EdgetrailTestRecords
import Foundation
import Testing

@Suite("Central's live feed")
struct LiveFeedTests {
    static func batch(_ cookie: UInt64, cnf: String = "edgesecurity", error: Bool = false) -> Edgetrail_V1_CookieBatch {
        TestRecords.batch(
            cookie: cookie, cnf: cnf,
            [
                TestRecords.span(cookie: cookie, id: 1, service: "http-proxy", startNs: 5_000),
                TestRecords.span(cookie: cookie, id: 2, parent: 1, service: "policy-mgr", startNs: 6_000, status: error ? .error : .ok),
                TestRecords.flow(cookie: cookie, startNs: 4_000),
            ])
    }

    @Test("a reader gets what is stored after it subscribed, several sessions to an event, only its CNF")
    func batched() async throws {
        let feed = LiveFeed()
        let events = feed.subscribe(cnf: "edgesecurity", interval: .milliseconds(300))
        var iterator = events.makeAsyncIterator()
        feed.publish(Self.batch(1))
        let first = try #require(await iterator.next())
        // Published while the reader waits out its interval: they arrive together.
        for cookie in 2...50 { feed.publish(Self.batch(UInt64(cookie), error: cookie == 7)) }
        feed.publish(Self.batch(99, cnf: "other"))
        let second = try #require(await iterator.next())
        #expect(first.sessions.map(\.cookie) == ["0000000000000001"])
        #expect(second.sessions.count == 49)
        #expect(second.lost == 0)
        let session = try #require(second.sessions.first { $0.cookie == "0000000000000007" })
        #expect(session.error)
        #expect(session.services == ["http-proxy", "policy-mgr"])
        #expect(session.spans == 2 && session.flows == 1 && session.snapshots == 0)
        #expect(session.firstNs == 4_000)
        #expect(!second.sessions.contains { $0.cnf == "other" })
    }

    @Test("a reader that falls behind loses the oldest and is told how many; ingest never waits for it")
    func behind() async throws {
        let feed = LiveFeed(queueLimit: 100)
        let events = feed.subscribe(cnf: nil, interval: .seconds(1))
        var iterator = events.makeAsyncIterator()
        feed.publish(Self.batch(1))
        _ = await iterator.next()
        for cookie in 0..<150 { feed.publish(Self.batch(UInt64(cookie + 10))) }
        let next = try #require(await iterator.next())
        #expect(next.sessions.count == 100)
        #expect(next.lost == 50)
        #expect(next.sessions.first?.cookie == String(format: "%016llx", 60))
    }

    @Test("a reader that goes away is forgotten")
    func unsubscribe() async throws {
        let feed = LiveFeed()
        do {
            let events = feed.subscribe(cnf: nil)
            #expect(feed.readerCount == 1)
            _ = events
        }
        for _ in 0..<50 where feed.readerCount > 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(feed.readerCount == 0)
    }
}
