import EdgetrailCore
import EdgetrailProto
import EdgetrailTelemetry
import Foundation
import SwiftProtobuf

/// What rules would have done to a capture: `edgetrail filters test`.
public struct DryRun: Sendable {
    public struct RuleCount: Sendable {
        public var name: String
        public var text: String
        public var matches: Int
    }

    public var rules: [RuleCount] = []
    public var cookies = 0
    public var cookiesKept = 0
    public var records = 0
    public var recordsKept = 0
    public var bytes = 0
    public var bytesKept = 0
    /// From the first to the last batch of the capture.
    public var seconds: Double = 0
    /// For `--explain`: what happened to one cookie, line by line.
    public var explanation: [String] = []
    /// Matches abandoned at the regular-expression time bound during the run.
    public var regexTimeBounds = 0

    /// Replays `batches` through the rules of `files`.
    public static func run(files: [RuleFile], batches: [Edgetrail_V1_CookieBatch], explain: Cookie? = nil) -> DryRun {
        var stage = FilterStage(rules: RuleCompiler.compile(files, version: "dry-run"))
        var result = DryRun()
        let timeBoundsBefore = RegexBudget.exceededCount
        var seen = Set<UInt64>()
        var kept = Set<UInt64>()
        let texts = Dictionary(
            files.flatMap { file in file.statements.map { ("\(file.fileName):\($0.position.line)", $0.text) } },
            uniquingKeysWith: { first, _ in first })
        var first = UInt64.max
        var last: UInt64 = 0
        for batch in batches {
            first = min(first, batch.createdAtNs)
            last = max(last, batch.createdAtNs)
            seen.insert(batch.cookie)
            let explaining = explain?.rawValue == batch.cookie
            var admitted = batch
            admitted.records = []
            for original in batch.records {
                var record = original
                let size = (try? original.serializedBytes() as [UInt8])?.count ?? 0
                result.records += 1
                result.bytes += size
                // The match table costs a pass over every rule: read it only to explain a cookie.
                let before = explaining ? stage.matches : [:]
                let keep = stage.admit(&record)
                if explaining {
                    let fired = stage.matches.filter { before[$0.key] != $0.value }.keys.sorted()
                    let what = Self.describe(original)
                    if !keep {
                        result.explanation.append("  \(what): dropped by \(fired.last.map { "\($0) '\(texts[$0] ?? "")'" } ?? "a rule")")
                    } else if !fired.isEmpty {
                        result.explanation.append("  \(what): kept, redacted by \(fired.map { "\($0) '\(texts[$0] ?? "")'" }.joined(separator: ", "))")
                    }
                }
                if keep { admitted.records.append(record) }
            }
            let before = explaining ? stage.matches : [:]
            let keepCookie = stage.keep(admitted)
            if explaining {
                let decider = stage.matches.filter { before[$0.key] != $0.value }.keys.first
                let verdict = keepCookie ? "kept" : "dropped"
                result.explanation.append(
                    "  batch seq \(batch.seq) (\(batch.records.count) records, \(admitted.records.count) after record rules): "
                        + (decider.map { "\(verdict) by \($0) '\(texts[$0] ?? "")'" }
                            ?? "no cookie rule decided: \(verdict)"))
            }
            if keepCookie {
                kept.insert(batch.cookie)
                result.recordsKept += admitted.records.count
                result.bytesKept += admitted.records.reduce(0) { $0 + ((try? $1.serializedBytes() as [UInt8])?.count ?? 0) }
            }
        }
        result.cookies = seen.count
        result.cookiesKept = kept.count
        result.seconds = last > first ? Double(last - first) / 1e9 : 0
        let matches = stage.matches
        for file in files {
            for statement in file.statements {
                let name = "\(file.fileName):\(statement.position.line)"
                result.rules.append(RuleCount(name: name, text: statement.text, matches: matches[name] ?? 0))
            }
        }
        result.regexTimeBounds = RegexBudget.exceededCount - timeBoundsBefore
        return result
    }

    static func describe(_ record: Edgetrail_V1_Record) -> String {
        switch record.kind {
        case .span(let span): "span \(span.operation) [\(record.service)]"
        case .flow(let flow): "flow \(IPPrefix.format([UInt8](flow.tuple.dstIp))):\(flow.tuple.dstPort)"
        case .snapshot(let snapshot): "snapshot \(snapshot.key)"
        case nil: "record"
        }
    }

    /// The report `edgetrail filters test` prints.
    public func report() -> String {
        var lines: [String] = []
        lines.append("rule matches:")
        for rule in rules {
            lines.append(String(format: "  %8d  %@  %@", rule.matches, rule.name, rule.text))
        }
        func share(_ part: Int, _ whole: Int) -> String {
            whole == 0 ? "-" : String(format: "%.1f%%", Double(part) / Double(whole) * 100)
        }
        lines.append("cookies: \(cookiesKept) of \(cookies) kept (\(share(cookiesKept, cookies)))")
        lines.append("records: \(recordsKept) of \(records) kept (\(share(recordsKept, records))), \(records - recordsKept) dropped")
        lines.append("bytes:   \(bytesKept) of \(bytes) kept (\(share(bytesKept, bytes))), \(bytes - bytesKept) dropped")
        if seconds > 0 {
            lines.append(
                String(
                    format: "to Kafka at the capture's rate: %.0f B/s kept (%.0f B/s without rules) over %.1f s",
                    Double(bytesKept) / seconds, Double(bytes) / seconds, seconds))
        } else {
            lines.append("to Kafka at the capture's rate: the capture spans no time (one moment); no rate")
        }
        if regexTimeBounds > 0 {
            lines.append(
                "regex time bound: \(regexTimeBounds) matches ran past \(RegexBudget.budgetMilliseconds) ms and were abandoned "
                    + "(conditions: no match; redactions: the whole value); simplify the pattern")
        }
        if !explanation.isEmpty {
            lines.append("explain:")
            lines += explanation
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
