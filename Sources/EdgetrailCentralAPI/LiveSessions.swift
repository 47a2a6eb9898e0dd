import EdgetrailCore
import EdgetrailProto
import Foundation

/// One stored batch as the live trace log shows it: `GET /v1/live` sends these as server-sent
/// events (`event: sessions`, data `{"sessions": [...], "lost": N}`), several per event, at most
/// five events a second, so a reader keeps up with thousands of sessions a second.
public struct LiveSession: Codable, Sendable, Equatable {
    public var cookie: String
    public var cnf: String
    public var node: String
    /// The services whose spans the batch holds, sorted.
    public var services: [String]
    public var spans: Int
    public var flows: Int
    public var snapshots: Int
    /// A span in the batch ended in error.
    public var error: Bool
    /// The cookie's last batch (the session ended at the collector).
    public var final: Bool
    /// The batch's first record (Unix ns).
    public var firstNs: UInt64

    public init(_ batch: Edgetrail_V1_CookieBatch) {
        cookie = Cookie(batch.cookie).hex
        node = batch.node
        var services = Set<String>()
        var spans = 0
        var flows = 0
        var snapshots = 0
        var error = false
        var first = UInt64.max
        var cnf = ""
        for record in batch.records {
            switch record.kind {
            case .span(let span):
                spans += 1
                services.insert(record.service)
                if span.status == .error { error = true }
                if cnf.isEmpty, !record.cnf.isEmpty { cnf = record.cnf }
                first = min(first, span.startNs)
            case .flow(let flow):
                flows += 1
                first = min(first, flow.startNs)
            case .snapshot(let snapshot):
                snapshots += 1
                first = min(first, snapshot.atNs)
            case nil:
                continue
            }
        }
        self.cnf = cnf.isEmpty ? batch.cnf : cnf
        self.services = services.sorted()
        self.spans = spans
        self.flows = flows
        self.snapshots = snapshots
        self.error = error
        self.final = batch.final
        self.firstNs = first == .max ? 0 : first
    }
}

/// What one `sessions` event carries.
public struct LiveSessions: Codable, Sendable, Equatable {
    public var sessions: [LiveSession]
    /// Sessions this reader missed because it fell behind (since its previous event).
    public var lost: Int

    public init(sessions: [LiveSession], lost: Int) {
        self.sessions = sessions
        self.lost = lost
    }
}
