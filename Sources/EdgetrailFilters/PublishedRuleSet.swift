import EdgetrailCore
import Foundation

/// A rule set published centrally for edge collectors (`edgetrail filters publish`): one version
/// of the named set, the rule files' text, and which collectors it is for. Written to the topic
/// `edgetrail.filters` as JSON, keyed by the name: a control message people read with any Kafka
/// tool, not telemetry, so it is text rather than protobuf.
public struct PublishedRuleSet: Codable, Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        public var name: String
        public var text: String

        public init(name: String, text: String) {
            self.name = name
            self.text = text
        }
    }

    public var name: String
    /// 1, 2, …: each publish of the name takes the next.
    public var version: Int
    public var selector: RuleSetSelector
    public var files: [File]
    public var author: String
    public var publishedAtNs: UInt64

    public init(name: String, version: Int, selector: RuleSetSelector, files: [File], author: String, publishedAtNs: UInt64) {
        self.name = name
        self.version = version
        self.selector = selector
        self.files = files
        self.author = author
        self.publishedAtNs = publishedAtNs
    }

    /// Parses and checks the files (their diagnostics name each file as `NAME@vVERSION/FILE`, so a
    /// refusal says which publish it was).
    public func ruleFiles() throws(DiagnosticsError) -> [RuleFile] {
        var parsed: [RuleFile] = []
        var problems: [Diagnostic] = []
        for file in files {
            do {
                parsed.append(try RuleFile.parse(file.text, fileName: "\(name)@v\(version)/\(file.name)"))
            } catch {
                problems += error.diagnostics
            }
        }
        guard problems.isEmpty else { throw DiagnosticsError(problems) }
        return parsed
    }

    /// The topic's messages as rule sets, the newest version of each name (a reader keeps the
    /// newest whatever the broker compacted); messages that are not rule sets are skipped.
    public static func newest(_ values: [[UInt8]]) -> [String: PublishedRuleSet] {
        var newest: [String: PublishedRuleSet] = [:]
        let decoder = JSONDecoder()
        for value in values {
            guard let set = try? decoder.decode(PublishedRuleSet.self, from: Data(value)) else { continue }
            if (newest[set.name]?.version ?? 0) < set.version { newest[set.name] = set }
        }
        return newest
    }

    /// Why `name` cannot name a rule set (the same rule as names in pipeline files), or nil.
    public static func nameProblem(_ name: String) -> String? {
        let valid = !name.isEmpty && name.count <= 63 && name.first!.isLetter
            && name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "_" }
        return valid ? nil : "is not a rule set name: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter"
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}

/// Which collectors a rule set is for: shell-style globs (`*`, `?`) on the collector's node name
/// and CNF; an empty or absent glob matches every one.
public struct RuleSetSelector: Codable, Sendable, Equatable, CustomStringConvertible {
    public var node: String
    public var cnf: String

    public init(node: String = "*", cnf: String = "*") {
        self.node = node
        self.cnf = cnf
    }

    /// `node=GLOB,cnf=GLOB` (either part may be left out).
    public init(parsing text: String) throws(SelectorError) {
        self.init()
        for part in text.split(separator: ",", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count == 2, !pieces[1].isEmpty else {
                throw SelectorError("'\(part)' is not KEY=GLOB; write --selector node=edge-*,cnf=edgesecurity")
            }
            switch pieces[0] {
            case "node": node = pieces[1]
            case "cnf": cnf = pieces[1]
            default: throw SelectorError("unknown selector key '\(pieces[0])'; the keys are node and cnf")
            }
        }
    }

    public func matches(node: String, cnf: String) -> Bool {
        Self.glob(self.node, node) && Self.glob(self.cnf, cnf)
    }

    public var description: String { "node=\(node.isEmpty ? "*" : node),cnf=\(cnf.isEmpty ? "*" : cnf)" }

    /// Shell-style matching of `pattern` (`*` any run, `?` one character) against all of `text`.
    static func glob(_ pattern: String, _ text: String) -> Bool {
        if pattern.isEmpty { return true }
        let p = Array(pattern)
        let t = Array(text)
        var (i, j) = (0, 0)
        var star: (p: Int, t: Int)?
        while j < t.count {
            if i < p.count, p[i] == "?" || p[i] == t[j] {
                i += 1
                j += 1
            } else if i < p.count, p[i] == "*" {
                star = (i, j)
                i += 1
            } else if let last = star {
                i = last.p + 1
                j = last.t + 1
                star = (last.p, last.t + 1)
            } else {
                return false
            }
        }
        while i < p.count, p[i] == "*" { i += 1 }
        return i == p.count
    }
}

public struct SelectorError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A collector's answer to a rule set, on `edgetrail.filters.status`, keyed by node and name.
public struct RuleSetStatus: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        case applied
        case refused
    }

    public var node: String
    public var cnf: String
    public var name: String
    public var version: Int
    public var outcome: Outcome
    /// For a refusal: each problem as `FILE:LINE:COLUMN: message`, or the reason.
    public var errors: [String]
    public var atNs: UInt64

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    /// Each node's last answer among `reports` (the highest version, then the latest).
    public static func lastPerNode(_ reports: [RuleSetStatus]) -> [String: RuleSetStatus] {
        var last: [String: RuleSetStatus] = [:]
        for report in reports where (last[report.node].map { ($0.version, $0.atNs) < (report.version, report.atNs) } ?? true) {
            last[report.node] = report
        }
        return last
    }

    public init(node: String, cnf: String, name: String, version: Int, outcome: Outcome, errors: [String] = [], atNs: UInt64) {
        self.node = node
        self.cnf = cnf
        self.name = name
        self.version = version
        self.outcome = outcome
        self.errors = errors
        self.atNs = atNs
    }
}

/// The check a collector adds to lint: rules about a kind of record the collector has no source
/// for can never apply there (a flow rule on a collector without `sources.flows`), which is a
/// mistake in the rollout's selector or the rules, not something to accept silently.
public enum RuleReach {
    /// One problem per statement that needs a missing source, at the statement.
    public static func problems(_ files: [RuleFile], sources: Set<RecordKind>) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        for file in files {
            for statement in file.statements {
                var kinds = Set<RecordKind>()
                switch statement.action {
                case .drop(let kind) where kind != .cookie: kinds.insert(kind)
                case .redact(let field, _, _): kinds.insert(field.kind)
                default: break
                }
                if let condition = statement.condition { collect(condition, into: &kinds) }
                for kind in kinds.subtracting(sources).subtracting([.cookie]).sorted(by: { $0.rawValue < $1.rawValue }) {
                    problems.append(
                        Diagnostic(
                            "this collector has no \(kind.rawValue) source (\(sourceSetting[kind] ?? "")), so '\(statement.text)' can never apply here",
                            at: SourceLocation(file: file.fileName, line: statement.position.line, column: statement.position.column)))
                }
            }
        }
        return problems
    }

    static let sourceSetting: [RecordKind: String] = [.span: "sources.otlp", .flow: "sources.flows", .snapshot: "sources.snapshots"]

    private static func collect(_ expression: Expression, into kinds: inout Set<RecordKind>) {
        switch expression {
        case .field(let field): kinds.insert(field.kind)
        case .binary(_, let left, let right, _):
            collect(left, into: &kinds)
            collect(right, into: &kinds)
        case .not(let inner, _): collect(inner, into: &kinds)
        case .aggregate(_, let kind, let condition, _):
            // any/all/count over a kind with no source are simply empty: only the condition's
            // fields say what the rule reads.
            _ = kind
            if let condition { collect(condition, into: &kinds) }
        case .number, .string, .regex, .network, .boolean: break
        }
    }
}

/// Each node's last report on a rule set, as `filters status` prints it.
public struct RolloutSummary: Sendable {
    public var lines: [String] = []
    /// A node refused the newest version.
    public var refusedNewest = false

    public init(newest: Int, reports: [RuleSetStatus]) {
        let last = RuleSetStatus.lastPerNode(reports)
        if last.isEmpty { lines.append("no collector has answered yet") }
        for node in last.keys.sorted() {
            let report = last[node]!
            let when = Self.time(report.atNs)
            switch (report.version == newest, report.outcome) {
            case (true, .applied):
                lines.append("\(node): version \(report.version) applied at \(when)")
            case (true, .refused):
                refusedNewest = true
                lines.append("\(node): version \(report.version) REFUSED at \(when); its rules in force stay")
                for error in report.errors { lines.append("    \(error)") }
            case (false, let outcome):
                lines.append("\(node): has not answered version \(newest) (last: version \(report.version) \(outcome.rawValue) at \(when))")
            }
        }
    }
}

extension RolloutSummary {
    /// Unix nanoseconds as an ISO 8601 time.
    public static func time(_ ns: UInt64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(ns) / 1e9))
    }
}
