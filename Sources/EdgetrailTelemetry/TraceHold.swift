import EdgetrailProto
import Foundation

/// How long and how much the collector holds spans that arrived without a cookie.
public struct TraceHoldConfiguration: Sendable, Hashable {
    /// A cookie-less span waits this long for a span of its trace that brings the cookie;
    /// 0 holds nothing.
    public var holdNanoseconds: UInt64 = 10_000_000_000
    /// Spans held at most, over all traces; past it the oldest is let go early.
    public var maxSpans: Int = 10_000
    /// Encoded bytes held at most, over all traces; past it the oldest is let go early.
    public var maxBytes: Int = 64 << 20

    public init() {}
}

/// Why a held span was let go.
public enum TraceHoldRelease: String, Sendable, CaseIterable {
    /// A span of its trace brought the cookie; the held span now carries it.
    case attached
    /// No span of its trace brought a cookie within the hold time.
    case expired
    /// Let go early to keep the hold within its bounds.
    case full
}

/// A span the hold let go: with its trace's cookie when `attached`, with cookie 0 otherwise.
public struct HeldSpan: Sendable {
    public var record: Edgetrail_V1_Record
    /// The tag it was held with (its intake journal entry).
    public var origin: UInt64
    public var reason: TraceHoldRelease
}

/// Holds spans that arrived without a cookie, by trace id, until a span of the same trace brings
/// one. OpenTelemetry SDKs export a child span when it ends, so children usually arrive before
/// their root, and only the root (the request's entry point) carries the session cookie.
/// Pure logic, like the cookie join: time is passed in, nothing happens in the background.
public struct TraceHold: Sendable {
    public let configuration: TraceHoldConfiguration

    private struct Entry {
        var record: Edgetrail_V1_Record
        var origin: UInt64
        var bytes: Int
        var heldAt: UInt64
        var sequence: UInt64
    }

    private var byTrace: [Data: [Entry]] = [:]
    /// (sequence, trace) in arrival order; entries already let go are skipped when met.
    private var order: [(UInt64, Data)] = []
    private var orderHead = 0
    private var nextSequence: UInt64 = 0
    private var released = Set<UInt64>()
    public private(set) var heldSpans = 0
    public private(set) var heldBytes = 0

    public init(configuration: TraceHoldConfiguration) {
        self.configuration = configuration
    }

    /// Traces with spans held.
    public var heldTraces: Int { byTrace.count }

    /// Whether `record` is a span to hold: no cookie (0) and a trace it can be found by.
    public func shouldHold(_ record: Edgetrail_V1_Record) -> Bool {
        guard configuration.holdNanoseconds > 0, record.cookie == 0, case .span(let span) = record.kind else { return false }
        return !span.traceID.isEmpty
    }

    /// Holds a cookie-less span; returns the spans let go early to stay within the bounds.
    public mutating func hold(_ record: Edgetrail_V1_Record, bytes: Int, origin: UInt64, now: UInt64) -> [HeldSpan] {
        let trace = record.span.traceID
        let sequence = nextSequence
        nextSequence += 1
        byTrace[trace, default: []].append(
            Entry(record: record, origin: origin, bytes: bytes, heldAt: now, sequence: sequence))
        order.append((sequence, trace))
        heldSpans += 1
        heldBytes += bytes
        var out: [HeldSpan] = []
        while heldSpans > configuration.maxSpans || heldBytes > configuration.maxBytes, let oldest = popOldest() {
            out.append(HeldSpan(record: oldest.record, origin: oldest.origin, reason: .full))
        }
        return out
    }

    /// A span with `cookie` of trace `trace` came: the trace's held spans get the cookie and go.
    public mutating func attach(cookie: UInt64, trace: Data) -> [HeldSpan] {
        guard cookie != 0, let entries = byTrace.removeValue(forKey: trace) else { return [] }
        return entries.map { entry in
            forget(entry)
            var record = entry.record
            record.cookie = cookie
            return HeldSpan(record: record, origin: entry.origin, reason: .attached)
        }
    }

    /// Lets go of every span held for the hold time by `now`, oldest first.
    public mutating func tick(now: UInt64) -> [HeldSpan] {
        var out: [HeldSpan] = []
        while let (sequence, trace) = peekOldest(),
            let entry = byTrace[trace]?.first(where: { $0.sequence == sequence }),
            now &- entry.heldAt >= configuration.holdNanoseconds
        {
            _ = popOldest()
            out.append(HeldSpan(record: entry.record, origin: entry.origin, reason: .expired))
        }
        return out
    }

    // MARK: Internals

    private mutating func peekOldest() -> (UInt64, Data)? {
        while orderHead < order.count {
            let (sequence, trace) = order[orderHead]
            if released.remove(sequence) == nil { return (sequence, trace) }
            orderHead += 1
            compact()
        }
        return nil
    }

    private mutating func popOldest() -> Entry? {
        guard let (sequence, trace) = peekOldest(), var entries = byTrace[trace],
            let index = entries.firstIndex(where: { $0.sequence == sequence })
        else { return nil }
        let entry = entries.remove(at: index)
        byTrace[trace] = entries.isEmpty ? nil : entries
        orderHead += 1
        compact()
        heldSpans -= 1
        heldBytes -= entry.bytes
        return entry
    }

    /// Takes an entry out of the counts; its place in `order` is skipped when reached.
    private mutating func forget(_ entry: Entry) {
        released.insert(entry.sequence)
        heldSpans -= 1
        heldBytes -= entry.bytes
    }

    private mutating func compact() {
        if orderHead > 1024, orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            orderHead = 0
        }
    }
}
