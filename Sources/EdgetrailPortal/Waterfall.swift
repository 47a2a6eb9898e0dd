import EdgetrailCentralAPI
import Foundation

/// A session's reconstruction laid out on one time axis: the span tree (each span under its
/// parent), then the flows and the Redis snapshots, each placed by its own times. Pure layout:
/// positions are percentages of the session's span from its first to its last moment.
public struct Waterfall: Sendable {
    public enum Kind: String, Sendable {
        case span, flow, snapshot
    }

    public struct Row: Sendable {
        public var kind: Kind
        public var label: String
        /// The span's service; the flow's action; the snapshot's μsrv.
        public var detail: String
        /// Nesting in the span tree (0 for roots, flows and snapshots).
        public var depth: Int
        public var startNs: UInt64
        /// For a snapshot, its moment; for a flow that has not ended, the axis's end.
        public var endNs: UInt64
        /// "error" for a failed span or a denied flow, else "ok".
        public var status: String
        /// Everything known about the item, in order, for its details.
        public var fields: [(String, String)]
        public var left = 0.0
        public var width = 0.0
    }

    public var cookie: String
    public var cnf: String
    public var originNs: UInt64
    public var endNs: UInt64
    public var rows: [Row]

    public var durationNs: UInt64 { endNs - originNs }

    public init(_ timeline: CookieTimeline) {
        cookie = timeline.cookie
        cnf = timeline.cnf
        let starts = timeline.spans.map(\.startNs) + timeline.flows.map(\.startNs) + timeline.snapshots.map(\.atNs)
        let ends = timeline.spans.map(\.endNs) + timeline.flows.map(\.endNs) + timeline.snapshots.map(\.atNs)
        originNs = starts.filter { $0 > 0 }.min() ?? 0
        endNs = max(ends.max() ?? originNs, originNs)
        rows = []
        rows += Self.spanRows(timeline.spans)
        for flow in timeline.flows {
            let ended = flow.endNs > 0
            rows.append(
                Row(
                    kind: .flow, label: "\(flow.proto) \(flow.src):\(flow.sport) → \(flow.dst):\(flow.dport)",
                    detail: flow.action, depth: 0, startNs: flow.startNs, endNs: ended ? flow.endNs : endNs,
                    status: flow.action == "deny" ? "error" : "ok",
                    fields: [
                        ("action", flow.action), ("packets in/out", "\(flow.packetsIn) / \(flow.packetsOut)"),
                        ("bytes in/out", "\(flow.bytesIn) / \(flow.bytesOut)"),
                        ("ended", ended ? "yes" : "no (still open when last seen)"),
                    ]))
        }
        for snapshot in timeline.snapshots {
            // Keys are cookie:<hex>:<μsrv>:<what>; show the μsrv and what.
            let parts = snapshot.key.split(separator: ":", maxSplits: 3).map(String.init)
            let owner = parts.count >= 3 ? parts[2] : ""
            let what = parts.count == 4 ? parts[3] : snapshot.key
            var fields: [(String, String)] = [("key", snapshot.key)]
            switch snapshot.value {
            case .string(let text): fields.append(("value", text))
            case .hash(let hash): fields += hash.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            case nil: fields.append(("value", snapshot.unsupportedType.map { "(a \($0), not captured)" } ?? "(deleted)"))
            }
            if let full = snapshot.fullSize { fields.append(("cut", "the value was \(full) bytes; it was cut to the collector's limit")) }
            rows.append(
                Row(
                    kind: .snapshot, label: what, detail: owner, depth: 0, startNs: snapshot.atNs, endNs: snapshot.atNs,
                    status: "ok", fields: fields))
        }
        let total = Double(max(durationNs, 1))
        for index in rows.indices {
            let start = rows[index].startNs > originNs ? rows[index].startNs - originNs : 0
            let end = rows[index].endNs > originNs ? rows[index].endNs - originNs : 0
            rows[index].left = min(100, Double(start) / total * 100)
            rows[index].width = max(0, min(100 - rows[index].left, Double(end >= start ? end - start : 0) / total * 100))
        }
    }

    /// Spans in tree order: each after its parent, siblings by start. A span whose parent is not
    /// in the session is a root. Iterative, so a deep chain cannot exhaust the stack.
    static func spanRows(_ spans: [CookieTimeline.Span]) -> [Row] {
        let ids = Set(spans.map(\.spanId))
        var children: [String: [Int]] = [:]
        var roots: [Int] = []
        for (index, span) in spans.enumerated() {
            if span.parentSpanId.isEmpty || !ids.contains(span.parentSpanId) || span.parentSpanId == span.spanId {
                roots.append(index)
            } else {
                children[span.parentSpanId, default: []].append(index)
            }
        }
        let byStart = { (a: Int, b: Int) in (spans[a].startNs, spans[a].spanId) < (spans[b].startNs, spans[b].spanId) }
        var rows: [Row] = []
        rows.reserveCapacity(spans.count)
        var stack: [(Int, Int)] = roots.sorted(by: byStart).reversed().map { ($0, 0) }
        var placed = Set<Int>()
        while let (index, depth) = stack.popLast() {
            guard placed.insert(index).inserted else { continue }
            let span = spans[index]
            var fields: [(String, String)] = [
                ("service", span.service), ("status", span.status),
                ("duration", Self.duration(span.endNs >= span.startNs ? span.endNs - span.startNs : 0)),
                ("trace", span.traceId), ("span", span.spanId),
            ]
            if !span.parentSpanId.isEmpty { fields.append(("parent", span.parentSpanId)) }
            fields += span.tags.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            for log in span.logs {
                let text = log.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                fields.append(("log \(log.name)", text))
            }
            rows.append(
                Row(
                    kind: .span, label: span.operation, detail: span.service, depth: depth, startNs: span.startNs,
                    endNs: max(span.endNs, span.startNs), status: span.status == "error" ? "error" : "ok", fields: fields))
            for child in (children[span.spanId] ?? []).sorted(by: byStart).reversed() { stack.append((child, depth + 1)) }
        }
        return rows
    }

    /// "1.23 ms", "850 µs", "2.5 s".
    public static func duration(_ ns: UInt64) -> String {
        let value = Double(ns)
        if value >= 1e9 { return HTML.format(value / 1e9, decimals: 2) + " s" }
        if value >= 1e6 { return HTML.format(value / 1e6, decimals: 2) + " ms" }
        return HTML.format(value / 1e3, decimals: 0) + " µs"
    }
}
