import EdgetrailCore
import EdgetrailProto
import EdgetrailTelemetry
import Foundation

/// A value while a condition is evaluated.
enum Value {
    case string(String)
    case number(Double)
    case boolean(Bool)
    case address([UInt8])
    case network(IPPrefix)
    case regex(BoundedRegex)
    /// A field the record does not have (a missing tag): compares unequal to everything.
    case missing

    var boolean: Bool { if case .boolean(let value) = self { value } else { false } }
}

/// What a condition looks at: one record, or a whole cookie's batch.
struct EvaluationContext {
    var record: Edgetrail_V1_Record?
    var batch: Edgetrail_V1_CookieBatch?
}

typealias Evaluator = @Sendable (EvaluationContext) -> Value

/// Turns checked statements into the collector's filter hooks. Record rules keep file order;
/// cookie rules are ordered as the language says: every keep/drop in file order (the first that
/// matches decides), then the sample rules, then keep.
public enum RuleCompiler {
    public static func compile(_ files: [RuleFile], version: String) -> FilterRules {
        var recordRules: [any RecordRule] = []
        var deciders: [any CookieRule] = []
        var samplers: [any CookieRule] = []
        for file in files {
            for statement in file.statements {
                let name = "\(file.fileName):\(statement.position.line)"
                let condition = statement.condition.map(compile)
                switch statement.action {
                case .drop(.cookie):
                    deciders.append(CompiledCookieRule(name: name, condition: condition, verdict: .drop))
                case .keep:
                    deciders.append(CompiledCookieRule(name: name, condition: condition, verdict: .keep))
                case .sample(let percent):
                    samplers.append(CompiledSampleRule(name: name, condition: condition, percent: percent))
                case .drop(let kind):
                    recordRules.append(
                        CompiledDropRule(
                            name: name, kind: kind, condition: condition,
                            ruleGuard: statement.condition.flatMap(RuleGuards.guardOf)))
                case .redact(let field, let pattern, let replacement):
                    recordRules.append(
                        CompiledRedactRule(
                            name: name, field: field,
                            regex: pattern.flatMap(BoundedRegex.init), replacement: replacement,
                            ruleGuard: RuleGuards.presence(of: field),
                            requiredLiteral: pattern.flatMap(RegexLiterals.leading).map { Array($0.utf8) },
                            tailLiteral: pattern.flatMap(RegexLiterals.tail).map { Array($0.utf8) }))
                }
            }
        }
        return FilterRules(version: version, recordRules: recordRules, cookieRules: deciders + samplers)
    }

    /// Loads, checks and compiles rule files; the version names their content.
    public static func load(paths: [String]) throws(DiagnosticsError) -> FilterRules {
        var files: [RuleFile] = []
        var problems: [Diagnostic] = []
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for path in paths {
            do {
                files.append(try RuleFile.load(path: path))
            } catch {
                problems += error.diagnostics
            }
            for byte in (FileManager.default.contents(atPath: path) ?? Data()) {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
            }
        }
        guard problems.isEmpty else { throw DiagnosticsError(problems) }
        return compile(files, version: String(hash, radix: 16))
    }

    // MARK: Expressions to closures

    static func compile(_ expression: Expression) -> Evaluator {
        switch expression {
        case .number(let value, _): return { _ in .number(value) }
        case .string(let value, _): return { _ in .string(value) }
        case .boolean(let value, _): return { _ in .boolean(value) }
        case .network(let prefix, _):
            if prefix.length == prefix.address.count * 8 {
                let address = prefix.address
                return { _ in .address(address) }
            }
            return { _ in .network(prefix) }
        case .regex(let pattern, _):
            let regex = BoundedRegex(pattern: pattern)
            return { _ in regex.map { .regex($0) } ?? .missing }
        case .field(let field):
            return fieldReader(field)
        case .not(let inner, _):
            let evaluate = compile(inner)
            return { .boolean(!evaluate($0).boolean) }
        case .aggregate(let name, let kind, let condition, _):
            let test = condition.map(compile)
            return { context in
                guard let batch = context.batch else { return .missing }
                var matching = 0
                var total = 0
                for record in batch.records where RecordFields.kind(of: record) == kind {
                    total += 1
                    if test?(EvaluationContext(record: record, batch: batch)).boolean ?? true { matching += 1 }
                }
                switch name {
                case "any": return .boolean(matching > 0)
                case "all": return .boolean(matching == total)
                default: return .number(Double(matching))
                }
            }
        case .binary(let op, let left, let right, _):
            let lhs = compile(left)
            let rhs = compile(right)
            switch op {
            case "and": return { .boolean(lhs($0).boolean && rhs($0).boolean) }
            case "or": return { .boolean(lhs($0).boolean || rhs($0).boolean) }
            case "+", "-":
                let sign: Double = op == "+" ? 1 : -1
                return { context in
                    guard case .number(let a) = lhs(context), case .number(let b) = rhs(context) else { return .missing }
                    return .number(a + sign * b)
                }
            case "<", "<=", ">", ">=":
                // Chosen once here, not per record.
                let order: @Sendable (Double, Double) -> Bool =
                    switch op {
                    case "<": { $0 < $1 }
                    case "<=": { $0 <= $1 }
                    case ">": { $0 > $1 }
                    default: { $0 >= $1 }
                    }
                return { context in
                    guard case .number(let a) = lhs(context), case .number(let b) = rhs(context) else {
                        return .boolean(false)
                    }
                    return .boolean(order(a, b))
                }
            case "==", "!=":
                if case .string(let constant, _) = right {
                    // The common case, a field against a string literal.
                    let equal = op == "=="
                    return { context in
                        guard case .string(let value) = lhs(context) else { return .boolean(!equal) }
                        return .boolean((value == constant) == equal)
                    }
                }
                return { context in .boolean(compare(op, lhs(context), rhs(context))) }
            default:
                return { context in .boolean(compare(op, lhs(context), rhs(context))) }
            }
        }
    }

    static func compare(_ op: String, _ left: Value, _ right: Value) -> Bool {
        switch (op, left, right) {
        case ("~", .string(let text), .regex(let regex)):
            // Out of time counts as no match: the record is kept.
            return regex.matches(text) ?? false
        case ("in", .address(let address), .network(let network)):
            return network.contains(IPPrefix(address: address, length: address.count * 8))
        case ("in", .address(let address), .address(let other)):
            return address == other
        case (_, .number(let a), .number(let b)):
            switch op {
            case "==": return a == b
            case "!=": return a != b
            case "<": return a < b
            case "<=": return a <= b
            case ">": return a > b
            case ">=": return a >= b
            default: return false
            }
        case ("==", .string(let a), .string(let b)): return a == b
        case ("!=", .string(let a), .string(let b)): return a != b
        case ("==", .boolean(let a), .boolean(let b)): return a == b
        case ("!=", .boolean(let a), .boolean(let b)): return a != b
        case ("==", .address(let a), .address(let b)): return a == b
        case ("!=", .address(let a), .address(let b)): return a != b
        case ("!=", .missing, _), ("!=", _, .missing): return true
        default: return false
        }
    }

    static func fieldReader(_ field: FieldReference) -> Evaluator {
        let name = field.name
        if field.kind == .cookie {
            return { context in
                guard let batch = context.batch else { return .missing }
                return RecordFields.cookieField(name, batch)
            }
        }
        let read = RecordFields.accessor(kind: field.kind, name: name, key: field.key)
        return { context in
            guard let record = context.record else { return .missing }
            return read(record)
        }
    }
}

/// Reads the language's fields off records and batches.
enum RecordFields {
    static func kind(of record: Edgetrail_V1_Record) -> RecordKind? {
        record.kind.map(kind(of:))
    }

    static func kind(of payload: Payload) -> RecordKind {
        switch payload {
        case .span: .span
        case .flow: .flow
        case .snapshot: .snapshot
        }
    }

    typealias Payload = Edgetrail_V1_Record.OneOf_Kind
    typealias PayloadReader = @Sendable (Edgetrail_V1_Record, Payload) -> Value

    /// A reader for one field, chosen when the rule is compiled (no name lookups per record).
    static func accessor(kind: RecordKind, name: String, key: String?) -> @Sendable (Edgetrail_V1_Record) -> Value {
        let read = payloadAccessor(kind: kind, name: name, key: key)
        return { record in
            guard let payload = record.kind else { return .missing }
            return read(record, payload)
        }
    }

    /// The same, for callers that have read the record's kind already (`record.kind` costs a
    /// copy of the payload each time it is read).
    static func payloadAccessor(kind: RecordKind, name: String, key: String?) -> PayloadReader {
        switch (kind, name) {
        case (.span, "service"):
            return { record, payload in
                guard case .span = payload else { return .missing }
                return .string(record.service)
            }
        case (.span, "operation"):
            return { _, payload in
                guard case .span(let span) = payload else { return .missing }
                return .string(span.operation)
            }
        case (.span, "duration_ms"):
            return { _, payload in
                guard case .span(let span) = payload else { return .missing }
                return .number(Double(span.endNs &- span.startNs) / 1e6)
            }
        case (.span, "tags"):
            let key = key ?? ""
            return { _, payload in
                guard case .span(let span) = payload, let value = span.tags[key] else { return .missing }
                return .string(value)
            }
        case (.flow, "bytes_in"):
            return { _, payload in
                guard case .flow(let flow) = payload else { return .missing }
                return .number(Double(flow.bytesIn))
            }
        case (.flow, "bytes_out"):
            return { _, payload in
                guard case .flow(let flow) = payload else { return .missing }
                return .number(Double(flow.bytesOut))
            }
        case (.flow, "dport"):
            return { _, payload in
                guard case .flow(let flow) = payload else { return .missing }
                return .number(Double(flow.tuple.dstPort))
            }
        case (.snapshot, "key"):
            return { _, payload in
                guard case .snapshot(let snapshot) = payload else { return .missing }
                return .string(snapshot.key)
            }
        default:
            return { record, payload in
                guard RecordFields.kind(of: payload) == kind else { return .missing }
                return RecordFields.field(name, key: key, of: record, payload)
            }
        }
    }

    static func field(_ name: String, key: String?, of record: Edgetrail_V1_Record, _ payload: Payload) -> Value {
        switch payload {
        case .span(let span):
            switch name {
            case "service": return .string(record.service)
            case "operation": return .string(span.operation)
            case "duration_ms": return .number(Double(span.endNs &- span.startNs) / 1e6)
            case "status": return .string(span.status.ruleName)
            case "tags": return key.flatMap { span.tags[$0] }.map(Value.string) ?? .missing
            case "trace_id": return .string(span.traceID.hexString)
            case "span_id": return .string(span.spanID.hexString)
            case "kind": return .string(String(describing: span.kind))
            default: return .missing
            }
        case .flow(let flow):
            switch name {
            case "src": return .address([UInt8](flow.tuple.srcIp))
            case "dst": return .address([UInt8](flow.tuple.dstIp))
            case "sport": return .number(Double(flow.tuple.srcPort))
            case "dport": return .number(Double(flow.tuple.dstPort))
            case "proto": return .string(flow.tuple.protocolRuleName)
            case "action": return .string(flow.action.ruleName)
            case "packets_in": return .number(Double(flow.packetsIn))
            case "packets_out": return .number(Double(flow.packetsOut))
            case "bytes_in": return .number(Double(flow.bytesIn))
            case "bytes_out": return .number(Double(flow.bytesOut))
            case "duration_ms":
                return .number(flow.endNs > flow.startNs ? Double(flow.endNs - flow.startNs) / 1e6 : 0)
            default: return .missing
            }
        case .snapshot(let snapshot):
            switch name {
            case "key": return .string(snapshot.key)
            case "value":
                switch snapshot.value {
                case .stringValue(let bytes): return .string(String(decoding: bytes, as: UTF8.self))
                case .hashFields(let hash):
                    return .string(
                        hash.fields.keys.sorted().map { "\($0)=\(String(decoding: hash.fields[$0]!, as: UTF8.self))" }
                            .joined(separator: ","))
                case nil: return .missing
                }
            case "source": return .string(snapshot.source)
            case "service": return .string(record.service)
            default: return .missing
            }
        }
    }

    static func cookieField(_ name: String, _ batch: Edgetrail_V1_CookieBatch) -> Value {
        func count(_ kind: RecordKind) -> Double {
            Double(batch.records.filter { Self.kind(of: $0) == kind }.count)
        }
        switch name {
        case "id": return .string(Cookie(batch.cookie).hex)
        case "cnf": return .string(batch.cnf)
        case "node": return .string(batch.node)
        case "spans": return .number(count(.span))
        case "flows": return .number(count(.flow))
        case "snapshots": return .number(count(.snapshot))
        case "records": return .number(Double(batch.records.count))
        default: return .missing
        }
    }
}

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
        guard RecordFields.kind(of: record) == kind else { return (false, .keep) }
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

/// Finds, in a rule's condition, a field it needs to have one value (see `RuleGuard`).
enum RuleGuards {
    /// The first conjunct of the condition's top-level `and` chain that is `field == literal`
    /// on a field the stage can read.
    static func guardOf(_ condition: Expression) -> RuleGuard? {
        switch condition {
        case .binary(let op, let left, let right, _) where op == "and":
            return guardOf(left) ?? guardOf(right)
        case .binary(let op, .field(let field), let literal, _) where op == "==",
            .binary(let op, let literal, .field(let field), _) where op == "==":
            return equality(field, literal)
        default:
            return nil
        }
    }

    /// `redact span.tags["k"]` changes nothing on a span without the tag "k".
    static func presence(of field: FieldReference) -> RuleGuard? {
        guard field.kind == .span, field.name == "tags", let key = field.key else { return nil }
        return RuleGuard(field: .spanTagKeys, key: .string(key))
    }

    private static func equality(_ field: FieldReference, _ literal: Expression) -> RuleGuard? {
        let key: GuardKey
        switch literal {
        case .string(let value, _): key = .string(value)
        case .number(let value, _): key = .number(value)
        default: return nil
        }
        let guarded: GuardField
        switch (field.kind, field.name) {
        case (.span, "service"), (.snapshot, "service"): guarded = .service
        case (.span, "operation"): guarded = .spanOperation
        case (.span, "status"): guarded = .spanStatus
        case (.span, "tags"):
            // A missing tag equals nothing, so the rule needs the tag to be there.
            guard let tag = field.key else { return nil }
            return RuleGuard(field: .spanTagKeys, key: .string(tag))
        case (.flow, "sport"): guarded = .flowSourcePort
        case (.flow, "dport"): guarded = .flowDestinationPort
        case (.flow, "proto"): guarded = .flowProtocol
        case (.flow, "action"): guarded = .flowAction
        case (.snapshot, "key"): guarded = .snapshotKey
        case (.snapshot, "source"): guarded = .snapshotSource
        default: return nil
        }
        return RuleGuard(field: guarded, key: key)
    }
}

/// What a regular expression's matches must contain, found conservatively.
enum RegexLiterals {
    /// Whether `text` contains `literal`, compared as UTF-8 bytes, as the regex compares code
    /// points (no canonical equivalence).
    static func contains(_ text: String, _ literal: [UInt8]) -> Bool {
        guard !literal.isEmpty else { return true }
        var text = text
        return text.withUTF8 { firstOffset(of: literal, in: $0) != nil }
    }

    /// Where `literal` (not empty) first occurs in `bytes`.
    private static func firstOffset(of literal: [UInt8], in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let first = literal.first, bytes.count >= literal.count else { return nil }
        var start = 0
        while start <= bytes.count - literal.count {
            if bytes[start] == first {
                var offset = 1
                while offset < literal.count, bytes[start + offset] == literal[offset] { offset += 1 }
                if offset == literal.count { return start }
            }
            start += 1
        }
        return nil
    }

    /// For a pattern that is a literal followed by `.*$` (no anchor before it, no flags): the
    /// literal. Such a pattern matches from the literal's first occurrence to the end of the line.
    static func tail(_ pattern: String) -> String? {
        guard pattern.hasSuffix(".*$"), !pattern.hasPrefix("^") else { return nil }
        let head = String(pattern.dropLast(3))
        guard !head.isEmpty, !head.contains("|"), !head.hasPrefix("(?") else { return nil }
        let (literal, consumed) = leadingRun(Array(head))
        return consumed == head.count && !literal.isEmpty ? literal : nil
    }

    /// What a `tail` pattern does to a value.
    enum TailCut: Equatable {
        /// The value is not one-line ASCII, where `.` and `$` could mean more than "to the
        /// end": ask the regex.
        case needsRegex
        /// The literal is not in the value: no match.
        case noMatch
        /// The match runs from this UTF-8 offset to the end.
        case from(Int)
    }

    static func tailCut(_ text: String, _ literal: [UInt8]) -> TailCut {
        var text = text
        return text.withUTF8 { bytes in
            for byte in bytes where byte >= 0x80 || byte == 0x0A || byte == 0x0D { return .needsRegex }
            return firstOffset(of: literal, in: bytes).map(TailCut.from) ?? .noMatch
        }
    }

    /// The literal text every match starts with: the pattern's leading run of plain or escaped
    /// punctuation characters, before anything that could repeat, alternate or group them. Nil
    /// when there is none (or the pattern has an alternation anywhere, or flags).
    static func leading(_ pattern: String) -> String? {
        // An alternation at the top level makes any prefix optional; don't try to be clever.
        guard !pattern.contains("|"), !pattern.hasPrefix("(?") else { return nil }
        var characters = Array(pattern)
        if characters.first == "^" { characters.removeFirst() }
        let literal = leadingRun(characters).literal
        return literal.isEmpty ? nil : literal
    }

    /// The leading literal run of a pattern's characters, and how many characters it took.
    private static func leadingRun(_ characters: [Character]) -> (literal: String, consumed: Int) {
        var literal = ""
        var index = 0
        while index < characters.count {
            var next: Character
            var width = 1
            if characters[index] == "\\" {
                // Only escaped punctuation is a literal (\d, \w, \b, … are classes or anchors).
                guard index + 1 < characters.count, characters[index + 1].isPunctuation || characters[index + 1].isSymbol
                else { break }
                next = characters[index + 1]
                width = 2
            } else if characters[index].isLetter || characters[index].isNumber || characters[index] == " "
                || "/:=&-_,;@#%!~'\"<>".contains(characters[index])
            {
                next = characters[index]
            } else {
                break
            }
            // A quantifier after it makes this character optional or repeated: stop before it.
            if index + width < characters.count, "?*+{".contains(characters[index + width]) { break }
            literal.append(next)
            index += width
        }
        return (literal, index)
    }
}
