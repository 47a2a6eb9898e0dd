import EdgetrailCore
import EdgetrailProto
import Foundation

/// One session reconstructed end to end: the span tree, the flows and the Redis snapshots, in
/// time order. This is the JSON contract of `GET /v1/cookies/{cookie}` and
/// `edgetrail trace --format json`; other tools read it, so fields are only ever added.
///
/// Times are Unix nanoseconds as JSON integers (larger than 2^53: parse them as 64-bit).
public struct CookieTimeline: Codable, Sendable, Equatable {
    public var cookie: String
    public var cnf: String
    public var spans: [Span]
    public var flows: [Flow]
    public var snapshots: [Snapshot]
    public var timeline: [Entry]

    public struct Span: Codable, Sendable, Equatable {
        public var traceId: String
        public var spanId: String
        /// Empty for a root span.
        public var parentSpanId: String
        public var service: String
        public var operation: String
        public var startNs: UInt64
        public var endNs: UInt64
        /// "ok", "error" or "unset".
        public var status: String
        public var tags: [String: String]
        public var logs: [Log]
    }

    public struct Log: Codable, Sendable, Equatable {
        public var atNs: UInt64
        public var name: String
        public var fields: [String: String]
    }

    /// A connection, from its flow-start and flow-end events merged.
    public struct Flow: Codable, Sendable, Equatable {
        public var src: String
        public var dst: String
        public var sport: UInt32
        public var dport: UInt32
        /// "tcp", "udp" or the protocol number.
        public var proto: String
        /// "redirect", "copy", "deny", "ratelimit", "pass".
        public var action: String
        public var packetsIn: UInt64
        public var packetsOut: UInt64
        public var bytesIn: UInt64
        public var bytesOut: UInt64
        public var startNs: UInt64
        /// 0 while the flow has not ended.
        public var endNs: UInt64
    }

    public struct Snapshot: Codable, Sendable, Equatable {
        public var key: String
        /// A string's value, or a hash as a JSON object of its fields; null when deleted or
        /// of a type not captured.
        public var value: SnapshotValue?
        public var atNs: UInt64
        /// Set when the collector cut the value to its limit: the value's full size in bytes.
        public var fullSize: UInt64?
        /// The Redis type of a value not captured (list, set, zset, stream).
        public var unsupportedType: String?
    }

    public enum SnapshotValue: Codable, Sendable, Equatable {
        case string(String)
        case hash([String: String])

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .string(text)
            } else {
                self = .hash(try container.decode([String: String].self))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let text): try container.encode(text)
            case .hash(let fields): try container.encode(fields)
            }
        }
    }

    /// One moment of the session. `ref` names what happened: a span's `spanId`, or
    /// `flows[i]` / `snapshots[i]` (indexes into the arrays above).
    public struct Entry: Codable, Sendable, Equatable {
        public var atNs: UInt64
        /// "span-start", "span-end", "flow-start", "flow-end" or "snapshot".
        public var kind: String
        public var ref: String
    }
}

extension CookieTimeline {
    /// Builds the timeline from a cookie's stored records (any order, duplicates allowed).
    public init(cookie: Cookie, records: [Edgetrail_V1_Record]) {
        self.cookie = cookie.hex
        // A span's CNF is its own; a flow's or snapshot's is the collector's setting.
        let named = records.filter { !$0.cnf.isEmpty }
        self.cnf = (named.first { if case .span = $0.kind { true } else { false } } ?? named.first)?.cnf ?? ""
        var spans: [Span] = []
        var seenSpans = Set<Data>()
        var flowIndex: [[UInt8]: Int] = [:]
        var flows: [Flow] = []
        var snapshots: [Snapshot] = []
        for record in records {
            switch record.kind {
            case .span(let span):
                guard seenSpans.insert(span.traceID + span.spanID).inserted else { continue }
                spans.append(
                    Span(
                        traceId: span.traceID.hexString, spanId: span.spanID.hexString,
                        parentSpanId: span.parentSpanID.hexString, service: record.service,
                        operation: span.operation, startNs: span.startNs, endNs: span.endNs,
                        status: span.status.ruleName,
                        tags: span.tags,
                        logs: span.logs.map { Log(atNs: $0.atNs, name: $0.name, fields: $0.fields) }))
            case .flow(let event):
                let key = event.tuple.flowKey
                let index = flowIndex[key] ?? {
                    flows.append(Flow(event))
                    flowIndex[key] = flows.count - 1
                    return flows.count - 1
                }()
                flows[index].merge(event)
            case .snapshot(let snapshot):
                let value: SnapshotValue?
                if snapshot.deleted {
                    value = nil
                } else {
                    switch snapshot.value {
                    case .stringValue(let bytes): value = .string(String(decoding: bytes, as: UTF8.self))
                    case .hashFields(let hash):
                        value = .hash(hash.fields.mapValues { String(decoding: $0, as: UTF8.self) })
                    case nil: value = nil
                    }
                }
                snapshots.append(
                    Snapshot(
                        key: snapshot.key, value: value, atNs: snapshot.atNs,
                        fullSize: snapshot.fullSize > 0 ? snapshot.fullSize : nil,
                        unsupportedType: snapshot.unsupportedType.isEmpty ? nil : snapshot.unsupportedType))
            case nil:
                continue
            }
        }
        spans.sort { ($0.startNs, $0.spanId) < ($1.startNs, $1.spanId) }
        flows.sort { $0.startNs < $1.startNs }
        snapshots.sort { ($0.atNs, $0.key) < ($1.atNs, $1.key) }
        var entries: [Entry] = []
        for span in spans {
            entries.append(Entry(atNs: span.startNs, kind: "span-start", ref: span.spanId))
            entries.append(Entry(atNs: span.endNs, kind: "span-end", ref: span.spanId))
        }
        for (index, flow) in flows.enumerated() {
            entries.append(Entry(atNs: flow.startNs, kind: "flow-start", ref: "flows[\(index)]"))
            if flow.endNs > 0 { entries.append(Entry(atNs: flow.endNs, kind: "flow-end", ref: "flows[\(index)]")) }
        }
        for (index, snapshot) in snapshots.enumerated() {
            entries.append(Entry(atNs: snapshot.atNs, kind: "snapshot", ref: "snapshots[\(index)]"))
        }
        let order = ["span-start": 0, "flow-start": 1, "snapshot": 2, "flow-end": 3, "span-end": 4]
        entries.sort { ($0.atNs, order[$0.kind]!) < ($1.atNs, order[$1.kind]!) }
        self.spans = spans
        self.flows = flows
        self.snapshots = snapshots
        self.timeline = entries
    }
}

extension CookieTimeline.Flow {
    init(_ event: Edgetrail_V1_FlowEvent) {
        let tuple = event.tuple
        src = IPPrefix.format([UInt8](tuple.srcIp))
        dst = IPPrefix.format([UInt8](tuple.dstIp))
        sport = tuple.srcPort
        dport = tuple.dstPort
        proto = tuple.protocolRuleName
        action = event.action.ruleName
        packetsIn = 0
        packetsOut = 0
        bytesIn = 0
        bytesOut = 0
        startNs = event.startNs
        endNs = 0
    }

    /// Takes the latest counters; the end event closes the flow.
    mutating func merge(_ event: Edgetrail_V1_FlowEvent) {
        if event.startNs != 0 { startNs = startNs == 0 ? event.startNs : min(startNs, event.startNs) }
        packetsIn = max(packetsIn, event.packetsIn)
        packetsOut = max(packetsOut, event.packetsOut)
        bytesIn = max(bytesIn, event.bytesIn)
        bytesOut = max(bytesOut, event.bytesOut)
        if event.phase == .end { endNs = max(endNs, event.endNs) }
    }
}
