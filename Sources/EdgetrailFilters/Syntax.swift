import EdgetrailCore

/// What a rule applies to.
public enum RecordKind: String, Sendable, CaseIterable {
    case span, flow, snapshot, cookie
}

/// A position in a rule file.
public struct RulePosition: Sendable, Hashable {
    public var line: Int
    public var column: Int
    public var length: Int
}

/// A field reference: `span.service`, `span.tags["http.url"]`.
public struct FieldReference: Sendable, Hashable, CustomStringConvertible {
    public var kind: RecordKind
    public var name: String
    /// The key of a map field (`tags["k"]`).
    public var key: String?
    public var position: RulePosition

    public var description: String {
        key.map { "\(kind.rawValue).\(name)[\"\($0)\"]" } ?? "\(kind.rawValue).\(name)"
    }
}

/// A binary operator, by its spelling in rules.
public enum BinaryOperator: String, Sendable, CaseIterable {
    case and, or
    case plus = "+", minus = "-"
    case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case equal = "==", notEqual = "!="
    /// `text ~ /regex/`
    case matches = "~"
    /// `address in 10.0.0.0/8`
    case within = "in"

    /// The comparisons, longest spelling first (so `<=` is not read as `<`).
    static let comparisons: [BinaryOperator] = [.equal, .notEqual, .lessOrEqual, .greaterOrEqual, .less, .greater, .matches]
}

/// An aggregate over a cookie's records: `any(K where C)`, `all(…)`, `count(…)`.
public enum Aggregate: String, Sendable, CaseIterable {
    case any, all, count
}

/// An expression of the condition language.
public indirect enum Expression: Sendable {
    case field(FieldReference)
    case number(Double, RulePosition)
    case string(String, RulePosition)
    case regex(String, RulePosition)
    case network(IPPrefix, RulePosition)
    case boolean(Bool, RulePosition)
    case binary(BinaryOperator, Expression, Expression, RulePosition)
    case not(Expression, RulePosition)
    /// `any(K where C)`, `all(K where C)`, `count(K where C)` over a cookie's records.
    case aggregate(Aggregate, RecordKind, Expression?, RulePosition)

    public var position: RulePosition {
        switch self {
        case .field(let field): field.position
        case .number(_, let position), .string(_, let position), .regex(_, let position),
            .network(_, let position), .boolean(_, let position), .binary(_, _, _, let position),
            .not(_, let position), .aggregate(_, _, _, let position):
            position
        }
    }
}

/// One statement of a rule file.
public struct Statement: Sendable {
    public enum Action: Sendable {
        /// `drop <kind> [where C]`
        case drop(RecordKind)
        /// `keep cookie where C`
        case keep
        /// `sample N% cookies [where C]`
        case sample(percent: Double)
        /// `redact <field> [matching /re/] [with "text"]`
        case redact(FieldReference, pattern: String?, replacement: String)
    }

    public var action: Action
    public var condition: Expression?
    public var position: RulePosition
    /// The statement's text, for names, messages and `--explain`.
    public var text: String

    /// True for rules decided when the join closes a cookie.
    public var isCookieLevel: Bool {
        switch action {
        case .drop(let kind): kind == .cookie
        case .keep, .sample: true
        case .redact: false
        }
    }
}
