import EdgetrailProto

/// What a record-level rule decided for one record.
public enum RecordVerdict: Sendable, Equatable {
    /// Keep the record (possibly redacted in place).
    case keep
    case drop
}

/// The kinds of record a record rule can be about.
public enum RecordKindTag: Sendable, Hashable {
    case span, flow, snapshot

    public init?(_ record: Edgetrail_V1_Record) {
        switch record.kind {
        case .span: self = .span
        case .flow: self = .flow
        case .snapshot: self = .snapshot
        case nil: return nil
        }
    }
}

/// A value a record field must have for a rule to be able to match.
public enum GuardKey: Hashable, Sendable {
    case string(String)
    case number(Double)
}

/// A record field rules can be indexed by (the catalog, `Fields`, names each field's guard).
/// The stage reads these straight off the record with the payload bound once, not through the
/// catalog's readers: a closure call and a payload copy per guard cost more than the 100 rules
/// they stand for (the 300 ns/record target).
public enum GuardField: Hashable, Sendable {
    /// `record.service` (span.service, snapshot.service).
    case service
    case spanOperation
    /// The status's rule name ("ok", "error", "unset").
    case spanStatus
    /// The keys of `span.tags`: a guard on it means "has this tag".
    case spanTagKeys
    case flowSourcePort
    case flowDestinationPort
    /// The protocol's rule name ("tcp", "udp", or the number).
    case flowProtocol
    /// The action's rule name ("redirect", "copy", …).
    case flowAction
    case snapshotKey
    case snapshotSource
}

/// What lets the stage skip a rule without running it: the rule can only match a record whose
/// `field` has the value `key` (e.g. `drop span where span.service == "x" and …` needs the
/// service "x"; `redact span.tags["k"]` needs a tag "k"). Rules guarded by the same field share
/// one read and one table look-up per record, so a hundred such rules cost about one.
public struct RuleGuard: Sendable, Hashable {
    public var field: GuardField
    public var key: GuardKey

    public init(field: GuardField, key: GuardKey) {
        self.field = field
        self.key = key
    }
}

/// A rule applied to each record as it arrives: may drop it or redact it in place.
/// Returns whether the rule matched (for its counter) and the verdict.
public protocol RecordRule: Sendable {
    var name: String { get }
    /// The only kind of record the rule can match; the stage skips it for the others.
    var recordKind: RecordKindTag { get }
    /// When set, the rule cannot match a record whose guard field lacks the guard's value.
    var ruleGuard: RuleGuard? { get }
    func apply(to record: inout Edgetrail_V1_Record) -> (matched: Bool, verdict: RecordVerdict)
}

extension RecordRule {
    public var ruleGuard: RuleGuard? { nil }
}

/// What a cookie-level rule decided for a whole cookie.
public enum CookieVerdict: Sendable, Equatable {
    case keep
    case drop
    /// The rule does not decide this cookie; the next rule is asked.
    case undecided
}

/// A rule asked when the join closes a cookie, with all of the cookie's records.
public protocol CookieRule: Sendable {
    var name: String { get }
    func decide(_ batch: Edgetrail_V1_CookieBatch) -> CookieVerdict
}

/// A complete, validated set of rules; swapped atomically between cookies.
public struct FilterRules: Sendable {
    /// Names the rule set in logs and metrics (e.g. a content hash of the rule files).
    public var version: String
    public var recordRules: [any RecordRule]
    public var cookieRules: [any CookieRule]

    public init(version: String, recordRules: [any RecordRule] = [], cookieRules: [any CookieRule] = []) {
        self.version = version
        self.recordRules = recordRules
        self.cookieRules = cookieRules
    }

    /// No rules: every record and cookie is kept.
    public static let passThrough = FilterRules(version: "none")
}

/// The record rules of one kind, with the tables that pick, per record, the few that can match.
/// A class: the stage reads it once per record without copying its arrays.
final class RuleIndex: Sendable {
    /// Rules of this kind in file order, and each one's position in `FilterRules.recordRules`.
    let rules: [any RecordRule]
    let positions: [Int]
    /// Rules that must always run (no guard), as indexes into `rules`, ascending.
    let unguarded: [Int]
    /// Per guarded field, which rules each of its values lets through, and the UTF-8 lengths of
    /// its string values as a bit mask (bit n: length n, bit 63: 63 or more): a value of another
    /// length is passed over without hashing it.
    let guards: [(field: GuardField, table: [GuardKey: [Int]], lengths: UInt64)]

    init(_ entries: [(position: Int, rule: any RecordRule)]) {
        var unguarded: [Int] = []
        var guards: [(field: GuardField, table: [GuardKey: [Int]], lengths: UInt64)] = []
        for (local, entry) in entries.enumerated() {
            guard let ruleGuard = entry.rule.ruleGuard else {
                unguarded.append(local)
                continue
            }
            let slot = guards.firstIndex { $0.field == ruleGuard.field } ?? guards.count
            if slot == guards.count { guards.append((ruleGuard.field, [:], 0)) }
            guards[slot].table[ruleGuard.key, default: []].append(local)
            if case .string(let value) = ruleGuard.key { guards[slot].lengths |= Self.lengthBit(value) }
        }
        self.rules = entries.map(\.rule)
        self.positions = entries.map(\.position)
        self.unguarded = unguarded
        self.guards = guards
    }

    /// The rules that can match `record`, ascending (file order).
    func candidates(_ record: Edgetrail_V1_Record, _ kind: Edgetrail_V1_Record.OneOf_Kind) -> [Int] {
        var result = unguarded
        var sources = result.isEmpty ? 0 : 1
        func look(_ table: [GuardKey: [Int]], _ key: GuardKey) {
            if let hits = table[key] {
                result += hits
                sources += 1
            }
        }
        func look(_ table: [GuardKey: [Int]], _ lengths: UInt64, _ value: String) {
            if lengths & Self.lengthBit(value) != 0 { look(table, .string(value)) }
        }
        // The payload is bound once (a binding per guard would copy it each time).
        switch kind {
        case .span(let span):
            for (field, table, lengths) in guards {
                switch field {
                case .service: look(table, lengths, record.service)
                case .spanOperation: look(table, lengths, span.operation)
                case .spanStatus: look(table, .string(span.status.ruleName))
                case .spanTagKeys: for tag in span.tags.keys { look(table, lengths, tag) }
                default: break
                }
            }
        case .flow(let flow):
            for (field, table, _) in guards {
                switch field {
                case .flowSourcePort: look(table, .number(Double(flow.tuple.srcPort)))
                case .flowDestinationPort: look(table, .number(Double(flow.tuple.dstPort)))
                case .flowProtocol: look(table, .string(flow.tuple.protocolRuleName))
                case .flowAction: look(table, .string(flow.action.ruleName))
                default: break
                }
            }
        case .snapshot(let snapshot):
            for (field, table, lengths) in guards {
                switch field {
                case .service: look(table, lengths, record.service)
                case .snapshotKey: look(table, lengths, snapshot.key)
                case .snapshotSource: look(table, lengths, snapshot.source)
                default: break
                }
            }
        }
        if sources > 1 { result.sort() }
        return result
    }

    static func lengthBit(_ value: String) -> UInt64 {
        1 << UInt64(min(value.utf8.count, 63))
    }
}

/// The pipeline's filter stage: record-level rules in order as records arrive (the first drop
/// wins; redactions accumulate), cookie-level rules when a cookie closes (the first keep or
/// drop decides; otherwise keep). Counts matches per rule.
///
/// Record rules are indexed by kind and by their guards (`RuleGuard`): a record runs only the
/// rules that can match it, in file order. After a redaction the guards are read again, since
/// the redacted field may be one a later rule is guarded by.
public struct FilterStage: Sendable {
    public private(set) var rules: FilterRules {
        didSet { index() }
    }
    /// Record rules by the kind they apply to (span, flow, snapshot).
    private var indexes: [RuleIndex?] = []
    /// Matches of each record rule (by position) and cookie rule (by name) of the current rules.
    private var recordMatches: [Int] = []
    private var cookieMatches: [String: Int] = [:]
    /// Matches of earlier rule sets, folded in when the rules were replaced.
    private var earlierMatches: [String: Int] = [:]
    public private(set) var droppedRecords = 0
    public private(set) var droppedCookies = 0
    public private(set) var droppedCookieRecords = 0

    public init(rules: FilterRules = .passThrough) {
        self.rules = rules
        index()
    }

    /// Matches per rule name since start (kept across rule swaps).
    public var matches: [String: Int] {
        var result = earlierMatches
        for (position, count) in recordMatches.enumerated() where count > 0 {
            result[rules.recordRules[position].name, default: 0] += count
        }
        result.merge(cookieMatches, uniquingKeysWith: +)
        return result
    }

    private mutating func index() {
        let byKind = Dictionary(
            grouping: rules.recordRules.enumerated().map { (position: $0.offset, rule: $0.element) },
            by: \.rule.recordKind)
        indexes = [RecordKindTag.span, .flow, .snapshot].map { kind in byKind[kind].map(RuleIndex.init) }
        recordMatches = Array(repeating: 0, count: rules.recordRules.count)
        cookieMatches = [:]
    }

    /// Replaces the rules; the pipeline calls it between cookies.
    public mutating func replace(with rules: FilterRules) {
        earlierMatches = matches
        self.rules = rules
    }

    /// Applies record-level rules; false when the record is dropped.
    public mutating func admit(_ record: inout Edgetrail_V1_Record) -> Bool {
        var modified = false
        return admit(&record, modified: &modified)
    }

    /// Applies record-level rules; false when the record is dropped. `modified` is set when a
    /// rule that keeps records (a redaction) matched, so the record may have changed.
    public mutating func admit(_ record: inout Edgetrail_V1_Record, modified: inout Bool) -> Bool {
        // `record.kind` copies the payload (every field of a span): read it once per record.
        guard !rules.recordRules.isEmpty, let kind = record.kind else { return true }
        let slot: Int
        switch kind {
        case .span: slot = 0
        case .flow: slot = 1
        case .snapshot: slot = 2
        }
        guard let index = indexes[slot] else { return true }
        var candidates = index.candidates(record, kind)
        var next = 0
        while next < candidates.count {
            let local = candidates[next]
            next += 1
            let (matched, verdict) = index.rules[local].apply(to: &record)
            guard matched else { continue }
            recordMatches[index.positions[local]] += 1
            if verdict == .drop {
                droppedRecords += 1
                return false
            }
            modified = true
            if !index.guards.isEmpty, let changed = record.kind {
                candidates = index.candidates(record, changed).filter { $0 > local }
                next = 0
            }
        }
        return true
    }

    /// Applies cookie-level rules to a released batch; false when the cookie is dropped.
    /// Whether any rule decides whole cookies (and so needs a batch's records decoded).
    public var hasCookieRules: Bool { !rules.cookieRules.isEmpty }

    public mutating func keep(_ batch: Edgetrail_V1_CookieBatch) -> Bool {
        for rule in rules.cookieRules {
            switch rule.decide(batch) {
            case .undecided:
                continue
            case .keep:
                cookieMatches[rule.name, default: 0] += 1
                return true
            case .drop:
                cookieMatches[rule.name, default: 0] += 1
                droppedCookies += 1
                droppedCookieRecords += batch.records.count
                return false
            }
        }
        return true
    }
}
