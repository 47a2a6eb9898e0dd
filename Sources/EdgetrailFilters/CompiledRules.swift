import EdgetrailCore
import EdgetrailProto
import Foundation

extension RecordKind {
    /// The record kind tag the collector's filter stage indexes rules by (cookie rules have none).
    var tag: RecordKindTag {
        switch self {
        case .span: .span
        case .flow: .flow
        case .snapshot, .cookie: .snapshot
        }
    }
}

struct CompiledDropRule: RecordRule {
    let name: String
    let kind: RecordKind
    let condition: Evaluator?
    let ruleGuard: RuleGuard?

    var recordKind: RecordKindTag { kind.tag }

    func apply(to record: inout Edgetrail_V1_Record) -> (matched: Bool, verdict: RecordVerdict) {
        guard Fields.kind(of: record) == kind else { return (false, .keep) }
        let matched = condition?(EvaluationContext(record: record)).boolean ?? true
        return (matched, matched ? .drop : .keep)
    }
}

struct CompiledRedactRule: RecordRule, @unchecked Sendable {
    let name: String
    let field: FieldReference
    let regex: BoundedRegex?
    let replacement: String
    let ruleGuard: RuleGuard?
    /// Text every match contains (UTF-8); a value without it is left alone without running the regex.
    let requiredLiteral: [UInt8]?
    /// For a pattern `L.*$` (a literal, then the rest of the line): L. On a one-line ASCII value
    /// the redaction replaces from L's first occurrence to the end, without the regex.
    var tailLiteral: [UInt8]? = nil

    var recordKind: RecordKindTag { field.kind.tag }

    private func redact(_ text: String) -> String? {
        guard let regex else { return replacement }
        if let tail = tailLiteral {
            switch RegexLiterals.tailCut(text, tail) {
            case .noMatch:
                return nil
            case .from(let offset):
                var text = text
                return text.withUTF8 { String(decoding: $0[..<offset], as: UTF8.self) } + replacement
            case .needsRegex:
                break
            }
        }
        if let literal = requiredLiteral, !RegexLiterals.contains(text, literal) { return nil }
        // One matching pass; the replacement is literal text, put in from the last match back.
        // Out of time, the whole value is replaced: a redaction fails closed.
        guard let found = regex.allMatches(text) else { return replacement }
        guard !found.isEmpty else { return nil }
        // Usually every match range falls on character boundaries: splice the string.
        var spliced = ""
        var position = text.startIndex
        for match in found {
            guard let range = Range(match.range, in: text), range.lowerBound >= position else {
                return redactUnits(text, found)
            }
            spliced += text[position..<range.lowerBound]
            spliced += replacement
            position = range.upperBound
        }
        spliced += text[position...]
        return spliced
    }

    /// Match ranges count UTF-16 code units; splice in those units when a match ends inside a
    /// character (e.g. before a combining accent).
    private func redactUnits(_ text: String, _ found: [NSTextCheckingResult]) -> String {
        let units = Array(text.utf16)
        var result: [UInt16] = []
        result.reserveCapacity(units.count)
        var cursor = 0
        for match in found where match.range.location >= cursor && match.range.upperBound <= units.count {
            result += units[cursor..<match.range.location]
            result += replacement.utf16
            cursor = match.range.upperBound
        }
        result += units[cursor...]
        return String(decoding: result, as: UTF16.self)
    }

    func apply(to record: inout Edgetrail_V1_Record) -> (matched: Bool, verdict: RecordVerdict) {
        switch (field.kind, record.kind) {
        case (.span, .span):
            switch field.name {
            case "tags":
                guard let key = field.key, let value = record.span.tags[key], let redacted = redact(value) else {
                    return (false, .keep)
                }
                record.span.tags[key] = redacted
            case "operation":
                guard let redacted = redact(record.span.operation) else { return (false, .keep) }
                record.span.operation = redacted
            case "service":
                guard let redacted = redact(record.service) else { return (false, .keep) }
                record.service = redacted
            default:
                return (false, .keep)
            }
            return (true, .keep)
        case (.snapshot, .snapshot):
            switch field.name {
            case "value":
                switch record.snapshot.value {
                case .stringValue(let bytes):
                    guard let redacted = redact(String(decoding: bytes, as: UTF8.self)) else { return (false, .keep) }
                    record.snapshot.stringValue = Data(redacted.utf8)
                case .hashFields(var hash):
                    var matched = false
                    for (name, bytes) in hash.fields {
                        if let redacted = redact(String(decoding: bytes, as: UTF8.self)) {
                            hash.fields[name] = Data(redacted.utf8)
                            matched = true
                        }
                    }
                    guard matched else { return (false, .keep) }
                    record.snapshot.hashFields = hash
                case nil:
                    return (false, .keep)
                }
            case "key":
                guard let redacted = redact(record.snapshot.key) else { return (false, .keep) }
                record.snapshot.key = redacted
            default:
                return (false, .keep)
            }
            return (true, .keep)
        default:
            return (false, .keep)
        }
    }
}

struct CompiledCookieRule: CookieRule {
    let name: String
    let condition: Evaluator?
    let verdict: CookieVerdict

    func decide(_ batch: Edgetrail_V1_CookieBatch) -> CookieVerdict {
        let matched = condition?(EvaluationContext(batch: batch)).boolean ?? true
        return matched ? verdict : .undecided
    }
}

/// Deterministic per cookie: every edge node keeps the same cookies.
struct CompiledSampleRule: CookieRule {
    let name: String
    let condition: Evaluator?
    let percent: Double

    static func bucket(_ cookie: UInt64) -> Double {
        // splitmix64: a fixed mix, so the choice does not depend on the process or the node.
        var value = cookie &+ 0x9E37_79B9_7F4A_7C15
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        value ^= value >> 31
        return Double(value % 10_000) / 100
    }

    func decide(_ batch: Edgetrail_V1_CookieBatch) -> CookieVerdict {
        guard condition?(EvaluationContext(batch: batch)).boolean ?? true else { return .undecided }
        return Self.bucket(batch.cookie) < percent ? .keep : .drop
    }
}
