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

/// A rule applied to each record as it arrives: may drop it or redact it in place.
/// Returns whether the rule matched (for its counter) and the verdict.
public protocol RecordRule: Sendable {
    var name: String { get }
    /// The only kind of record the rule can match; the stage skips it for the others.
    var recordKind: RecordKindTag { get }
    func apply(to record: inout Edgetrail_V1_Record) -> (matched: Bool, verdict: RecordVerdict)
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

/// The pipeline's filter stage: record-level rules in order as records arrive (the first drop
/// wins; redactions accumulate), cookie-level rules when a cookie closes (the first keep or
/// drop decides; otherwise keep). Counts matches per rule.
public struct FilterStage: Sendable {
    public private(set) var rules: FilterRules {
        didSet { index() }
    }
    /// Record rules by the kind they apply to, in file order.
    private var byKind: [RecordKindTag: [any RecordRule]] = [:]
    /// Matches per rule name since start (kept across rule swaps).
    public private(set) var matches: [String: Int] = [:]
    public private(set) var droppedRecords = 0
    public private(set) var droppedCookies = 0
    public private(set) var droppedCookieRecords = 0

    public init(rules: FilterRules = .passThrough) {
        self.rules = rules
        index()
    }

    private mutating func index() {
        byKind = Dictionary(grouping: rules.recordRules, by: \.recordKind)
    }

    /// Replaces the rules; the pipeline calls it between cookies.
    public mutating func replace(with rules: FilterRules) {
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
        guard !byKind.isEmpty, let kind = RecordKindTag(record), let relevant = byKind[kind] else { return true }
        for rule in relevant {
            let (matched, verdict) = rule.apply(to: &record)
            if matched {
                matches[rule.name, default: 0] += 1
                if verdict == .keep { modified = true }
            }
            if verdict == .drop {
                droppedRecords += 1
                return false
            }
        }
        return true
    }

    /// Applies cookie-level rules to a released batch; false when the cookie is dropped.
    public mutating func keep(_ batch: Edgetrail_V1_CookieBatch) -> Bool {
        for rule in rules.cookieRules {
            switch rule.decide(batch) {
            case .undecided:
                continue
            case .keep:
                matches[rule.name, default: 0] += 1
                return true
            case .drop:
                matches[rule.name, default: 0] += 1
                droppedCookies += 1
                droppedCookieRecords += batch.records.count
                return false
            }
        }
        return true
    }
}
