import EdgetrailCore
import EdgetrailProto

/// How long the join holds a cookie's records and how much it may hold.
public struct CookieJoinConfiguration: Sendable, Hashable {
    /// The CNF and node stamped on every batch.
    public var cnf: String
    public var node: String
    /// A cookie with no new record for this long is closed (its batch goes out, `final`).
    public var idleTimeoutNanoseconds: UInt64 = 30_000_000_000
    /// Once a session looks ended (a root span finished and every flow closed), the join still
    /// waits this long after the cookie's last record, so stragglers join the same batch.
    public var settleNanoseconds: UInt64 = 500_000_000
    /// After a cookie is closed, records for it within this period go out as the next batch
    /// (`seq` + 1); after it, the cookie is forgotten.
    public var graceNanoseconds: UInt64 = 10_000_000_000
    /// Records held across all cookies; past it the cookie idle the longest is released early.
    public var maxOpenRecords: Int = 1_000_000
    /// Records held for one cookie; past it they go out as a non-final batch.
    public var maxRecordsPerCookie: Int = 10_000
    /// The largest encoded batch: a cookie's records that together exceed it go out as several
    /// batches (consecutive `seq`, only the last `final`), each under it. The collector sets it
    /// from the Kafka message limit, so no batch is ever too large for the broker.
    public var maxBatchBytes: Int = 1_000_000
    /// Whether released batches carry the records decoded (`batch.records`) besides their bytes
    /// (`encodedRecords`). A collector turns it off: a held record's bytes take a fifth of the
    /// memory of the decoded message, and it decodes a batch again only when cookie rules or a
    /// capture need it.
    public var keepsDecodedRecords = true

    public init(cnf: String, node: String) {
        self.cnf = cnf
        self.node = node
    }
}

/// Why the join released a batch.
public enum JoinRelease: String, Sendable, CaseIterable {
    /// Root span finished and every flow closed.
    case sessionEnded = "session_ended"
    case idleTimeout = "idle_timeout"
    /// Records that arrived within the grace period after the cookie closed.
    case late
    /// The cookie reached `maxRecordsPerCookie`.
    case cookieFull = "cookie_full"
    /// Released early to keep the join within `maxOpenRecords`.
    case evicted
    /// The collector is shutting down.
    case shutdown
}

/// A batch the join released, and why.
public struct JoinedBatch: Sendable {
    public var batch: Edgetrail_V1_CookieBatch
    public var reason: JoinRelease
    /// For each record, the origin tag it was added with (e.g. its intake journal entry).
    public var origins: [UInt64]
    /// For each record, its protobuf bytes (as handed to `add`, or encoded on release).
    public var encodedRecords: [[UInt8]]

    /// The batch's protobuf bytes after `prefix`, framing the records' bytes as they are.
    public func serializedBytes(prefix: [UInt8] = []) -> [UInt8] {
        RecordWire.batchBytes(batch, encoded: encodedRecords, prefix: prefix)
    }
}

/// Holds records per cookie until the session ends or goes idle, then releases them together as
/// a `CookieBatch`. Pure logic: time is passed in, nothing is done in the background.
public struct CookieJoin: Sendable {
    public let configuration: CookieJoinConfiguration

    private struct Open {
        /// The records decoded, when the join keeps them (`keepsDecodedRecords`).
        var records: [Edgetrail_V1_Record] = []
        var origins: [UInt64] = []
        /// The CNF the first held span names, if any.
        var spanCNF: String?
        /// Each record's bytes; empty when not handed in (encoded on release).
        var encoded: [[UInt8]] = []
        var seq: UInt32 = 0
        var lastSeen: UInt64
        var rootSpanSeen = false
        var openFlows = Set<[UInt8]>()
        /// Set once the cookie closed; records after it are late.
        var closedAt: UInt64?

        var looksEnded: Bool { rootSpanSeen && openFlows.isEmpty }
    }

    private var cookies: [UInt64: Open] = [:]
    private var deadlines = DeadlineHeap()
    /// Records held now, over all cookies.
    public private(set) var openRecords = 0

    public init(configuration: CookieJoinConfiguration) {
        self.configuration = configuration
        var header = Edgetrail_V1_CookieBatch()
        header.cookie = .max
        header.seq = .max
        header.final = true
        header.cnf = configuration.cnf
        header.node = configuration.node
        header.createdAtNs = .max
        let headerBytes = ((try? header.serializedBytes()) as [UInt8]?)?.count ?? 64
        // One tag byte and up to five length bytes frame each record.
        largestRecordBytes = max(0, configuration.maxBatchBytes - headerBytes - 6)
    }

    /// Cookies with records held or inside their grace period.
    public var trackedCookies: Int { cookies.count }

    /// The largest record (encoded) that fits in a batch on its own. Larger ones must be refused
    /// before they reach the join: they would make a batch over `maxBatchBytes`.
    public let largestRecordBytes: Int

    /// Takes one record at time `now`; returns any batches that must go out because of it.
    /// `origin` is handed back with the record when its batch is released; `encoded`, the
    /// record's protobuf bytes if the caller has them, is reused when the batch is encoded.
    public mutating func add(
        _ record: Edgetrail_V1_Record, encoded: [UInt8] = [], origin: UInt64 = 0, now: UInt64
    ) -> [JoinedBatch] {
        var released: [JoinedBatch] = []
        let cookie = record.cookie
        // Taken out of the table while it changes: a copy left behind in the table would make
        // every append copy the cookie's whole record list (copy on write), a cost growing with
        // each record the cookie holds.
        var state: Open
        var previousDeadline: UInt64?
        if cookies[cookie] != nil {
            state = cookies.removeValue(forKey: cookie)!
            previousDeadline = deadline(of: state)
        } else {
            state = Open(lastSeen: now)
        }
        state.lastSeen = now
        switch record.kind {
        case .span(let span):
            if span.parentSpanID.isEmpty { state.rootSpanSeen = true }
        case .flow(let flow):
            let key = flow.tuple.flowKey
            if flow.phase == .end { state.openFlows.remove(key) } else { state.openFlows.insert(key) }
        default:
            break
        }
        if state.spanCNF == nil, case .span = record.kind, !record.cnf.isEmpty { state.spanCNF = record.cnf }
        if configuration.keepsDecodedRecords {
            state.records.append(record)
            state.encoded.append(encoded)
        } else {
            state.encoded.append(encoded.isEmpty ? RecordWire.encode(record) : encoded)
        }
        state.origins.append(origin)
        openRecords += 1
        if state.origins.count >= configuration.maxRecordsPerCookie {
            released += release(&state, cookie: cookie, final: false, reason: .cookieFull)
        }
        cookies[cookie] = state
        // The heap may hold a later deadline than the cookie now has (the session just looked
        // ended); entries that are too late are re-checked on pop, but one too early is needed.
        let due = deadline(of: state)
        if previousDeadline.map({ due < $0 }) ?? true { deadlines.push(due, cookie) }
        while openRecords > configuration.maxOpenRecords, let victim = oldestOpenCookie(excluding: cookie) {
            released += closeCookie(victim, reason: .evicted, now: now)
        }
        return released
    }

    /// Releases every cookie whose time has come at `now` (session ended and settled, idle, or
    /// grace period over). Call it regularly, e.g. every 100 ms.
    public mutating func tick(now: UInt64) -> [JoinedBatch] {
        var released: [JoinedBatch] = []
        while let (due, cookie) = deadlines.peek(), due <= now {
            deadlines.pop()
            guard let state = cookies[cookie] else { continue }
            let actual = deadline(of: state)
            if actual > now {
                deadlines.push(actual, cookie)
                continue
            }
            if state.closedAt != nil {
                // Grace over: late records (if any) go out, then the cookie is forgotten.
                var closing = state
                if !closing.origins.isEmpty {
                    released += release(&closing, cookie: cookie, final: true, reason: .late)
                }
                cookies[cookie] = nil
                continue
            }
            released += closeCookie(cookie, reason: state.looksEnded ? .sessionEnded : .idleTimeout, now: now)
        }
        return released
    }

    /// Releases everything held (on shutdown).
    public mutating func drain() -> [JoinedBatch] {
        var released: [JoinedBatch] = []
        for cookie in cookies.keys.sorted() {
            guard var state = cookies[cookie], !state.origins.isEmpty else { continue }
            released += release(&state, cookie: cookie, final: true, reason: .shutdown)
        }
        cookies.removeAll()
        deadlines = DeadlineHeap()
        return released
    }

    // MARK: Internals

    private mutating func closeCookie(_ cookie: UInt64, reason: JoinRelease, now: UInt64) -> [JoinedBatch] {
        var state = cookies.removeValue(forKey: cookie)!
        let batches = release(&state, cookie: cookie, final: true, reason: reason)
        state.closedAt = now
        state.lastSeen = now
        cookies[cookie] = state
        deadlines.push(deadline(of: state), cookie)
        return batches
    }

    /// The cookie's held records as one batch, or as several in order when together they exceed
    /// `maxBatchBytes`; each takes the next `seq`, and only the last is `final` (if `final`).
    private mutating func release(
        _ state: inout Open, cookie: UInt64, final: Bool, reason: JoinRelease
    ) -> [JoinedBatch] {
        var encoded = state.encoded
        for index in encoded.indices where encoded[index].isEmpty {
            encoded[index] = RecordWire.encode(state.records[index])
        }
        let budget = largestRecordBytes
        var pieces: [Range<Int>] = []
        var start = 0
        var size = 0
        for (index, bytes) in encoded.enumerated() {
            let framed = bytes.count + 6
            if index > start, size + framed > budget {
                pieces.append(start..<index)
                start = index
                size = 0
            }
            size += framed
        }
        pieces.append(start..<encoded.count)
        // The CNF the spans name wins over the collector's own setting: one node runs many CNFs.
        let cnf = state.spanCNF ?? configuration.cnf
        var released: [JoinedBatch] = []
        for (number, piece) in pieces.enumerated() {
            var batch = Edgetrail_V1_CookieBatch()
            batch.cookie = cookie
            batch.seq = state.seq
            batch.final = final && number == pieces.count - 1
            batch.cnf = cnf
            batch.node = configuration.node
            batch.createdAtNs = state.lastSeen
            if configuration.keepsDecodedRecords { batch.records = Array(state.records[piece]) }
            state.seq += 1
            released.append(
                JoinedBatch(
                    batch: batch, reason: reason, origins: Array(state.origins[piece]),
                    encodedRecords: Array(encoded[piece])))
        }
        openRecords -= state.origins.count
        state.spanCNF = nil
        state.records.removeAll(keepingCapacity: false)
        state.origins.removeAll(keepingCapacity: false)
        state.encoded.removeAll(keepingCapacity: false)
        return released
    }

    private func deadline(of state: Open) -> UInt64 {
        if let closedAt = state.closedAt { return closedAt &+ configuration.graceNanoseconds }
        let wait = state.looksEnded ? configuration.settleNanoseconds : configuration.idleTimeoutNanoseconds
        return state.lastSeen &+ wait
    }

    /// The open (not closed) cookie seen least recently, other than `excluding`.
    private func oldestOpenCookie(excluding: UInt64) -> UInt64? {
        var best: (UInt64, UInt64)?
        for (cookie, state) in cookies where cookie != excluding && state.closedAt == nil && !state.origins.isEmpty {
            if best == nil || state.lastSeen < best!.1 { best = (cookie, state.lastSeen) }
        }
        return best?.0
    }
}

/// A min-heap of (deadline, cookie). Entries may be stale; the join re-checks on pop.
struct DeadlineHeap: Sendable {
    private var items: [(UInt64, UInt64)] = []

    func peek() -> (UInt64, UInt64)? { items.first }

    mutating func push(_ deadline: UInt64, _ cookie: UInt64) {
        items.append((deadline, cookie))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].0 < items[parent].0 else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !items.isEmpty else { return }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count, items[left].0 < items[smallest].0 { smallest = left }
            if right < items.count, items[right].0 < items[smallest].0 { smallest = right }
            if smallest == parent { return }
            items.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
