/// A CNF's μsrvs and the calls between them, derived from stored spans (central's
/// `GET /v1/graph?cnf=&limit=`, the portal's service graph): a span whose parent
/// belongs to another service is a call from the parent's service to its own. Each edge counts
/// its calls, how many ended in error, and the 99th percentile of their durations.
public struct ServiceGraph: Sendable, Equatable, Codable {
    public struct Edge: Sendable, Equatable, Codable {
        public var from: String
        public var to: String
        public var calls: Int
        public var errors: Int
        public var p99Ns: UInt64
        public var errorRate: Double { calls == 0 ? 0 : Double(errors) / Double(calls) }

        public init(from: String, to: String, calls: Int, errors: Int, p99Ns: UInt64) {
            self.from = from
            self.to = to
            self.calls = calls
            self.errors = errors
            self.p99Ns = p99Ns
        }
    }

    public var services: [String]
    public var edges: [Edge]
    /// How many sessions the figures come from.
    public var sessions: Int

    public init(_ timelines: [CookieTimeline]) {
        var durations: [String: [UInt64]] = [:]
        var errors: [String: Int] = [:]
        var services = Set<String>()
        for timeline in timelines {
            let byID = Dictionary(timeline.spans.map { ($0.spanId, $0) }, uniquingKeysWith: { first, _ in first })
            for span in timeline.spans {
                services.insert(span.service)
                guard let parent = byID[span.parentSpanId], parent.service != span.service else { continue }
                let key = parent.service + "\u{0}" + span.service
                durations[key, default: []].append(span.endNs >= span.startNs ? span.endNs - span.startNs : 0)
                if span.status == "error" { errors[key, default: 0] += 1 }
            }
        }
        self.services = services.sorted()
        self.sessions = timelines.count
        edges = durations.map { key, values in
            let parts = key.split(separator: "\u{0}", maxSplits: 1).map(String.init)
            let sorted = values.sorted()
            // Nearest-rank percentile.
            let rank = max(0, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)
            return Edge(from: parts[0], to: parts[1], calls: values.count, errors: errors[key] ?? 0, p99Ns: sorted[rank])
        }.sorted { ($0.from, $0.to) < ($1.from, $1.to) }
    }
}
