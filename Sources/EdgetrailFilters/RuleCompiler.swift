import EdgetrailCore
import EdgetrailProto
import EdgetrailTelemetry
import Foundation

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
        let loaded = try loadFiles(paths: paths)
        return compile(loaded.files, version: loaded.version)
    }

    /// Loads and checks rule files without compiling them (to compile them with others), and a
    /// version that names their content.
    public static func loadFiles(paths: [String]) throws(DiagnosticsError) -> (files: [RuleFile], version: String) {
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
        return (files, String(hash, radix: 16))
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
        case .aggregate(let aggregate, let kind, let condition, _):
            let test = condition.map(compile)
            return { context in
                guard let batch = context.batch else { return .missing }
                var matching = 0
                var total = 0
                for record in batch.records where Fields.kind(of: record) == kind {
                    total += 1
                    if test?(EvaluationContext(record: record, batch: batch)).boolean ?? true { matching += 1 }
                }
                switch aggregate {
                case .any: return .boolean(matching > 0)
                case .all: return .boolean(matching == total)
                case .count: return .number(Double(matching))
                }
            }
        case .binary(let op, let left, let right, _):
            let lhs = compile(left)
            let rhs = compile(right)
            switch op {
            case .and: return { .boolean(lhs($0).boolean && rhs($0).boolean) }
            case .or: return { .boolean(lhs($0).boolean || rhs($0).boolean) }
            case .plus, .minus:
                let sign: Double = op == .plus ? 1 : -1
                return { context in
                    guard case .number(let a) = lhs(context), case .number(let b) = rhs(context) else { return .missing }
                    return .number(a + sign * b)
                }
            case .less, .lessOrEqual, .greater, .greaterOrEqual:
                // Chosen once here, not per record.
                let order: @Sendable (Double, Double) -> Bool =
                    switch op {
                    case .less: { $0 < $1 }
                    case .lessOrEqual: { $0 <= $1 }
                    case .greater: { $0 > $1 }
                    default: { $0 >= $1 }
                    }
                return { context in
                    guard case .number(let a) = lhs(context), case .number(let b) = rhs(context) else {
                        return .boolean(false)
                    }
                    return .boolean(order(a, b))
                }
            case .equal, .notEqual:
                if case .string(let constant, _) = right {
                    // The common case, a field against a string literal.
                    let equal = op == .equal
                    return { context in
                        guard case .string(let value) = lhs(context) else { return .boolean(!equal) }
                        return .boolean((value == constant) == equal)
                    }
                }
                return { context in .boolean(compare(op, lhs(context), rhs(context))) }
            case .matches, .within:
                return { context in .boolean(compare(op, lhs(context), rhs(context))) }
            }
        }
    }

    static func compare(_ op: BinaryOperator, _ left: Value, _ right: Value) -> Bool {
        switch (op, left, right) {
        case (.matches, .string(let text), .regex(let regex)):
            // Out of time counts as no match: the record is kept.
            return regex.matches(text) ?? false
        case (.within, .address(let address), .network(let network)):
            return network.contains(IPPrefix(address: address, length: address.count * 8))
        case (.within, .address(let address), .address(let other)):
            return address == other
        case (_, .number(let a), .number(let b)):
            switch op {
            case .equal: return a == b
            case .notEqual: return a != b
            case .less: return a < b
            case .lessOrEqual: return a <= b
            case .greater: return a > b
            case .greaterOrEqual: return a >= b
            default: return false
            }
        case (.equal, .string(let a), .string(let b)): return a == b
        case (.notEqual, .string(let a), .string(let b)): return a != b
        case (.equal, .boolean(let a), .boolean(let b)): return a == b
        case (.notEqual, .boolean(let a), .boolean(let b)): return a != b
        case (.equal, .address(let a), .address(let b)): return a == b
        case (.notEqual, .address(let a), .address(let b)): return a != b
        case (.notEqual, .missing, _), (.notEqual, _, .missing): return true
        default: return false
        }
    }

    /// The field's reader from the catalog, chosen when the rule is compiled (no name look-ups
    /// per record). The checker has made sure the field exists.
    static func fieldReader(_ reference: FieldReference) -> Evaluator {
        guard let field = Fields.field(reference) else { return { _ in .missing } }
        if let read = field.cookieReader {
            return { context in
                guard let batch = context.batch else { return .missing }
                return read(batch)
            }
        }
        let read = field.reader(reference.key)
        return { context in
            guard let record = context.record, let payload = record.kind else { return .missing }
            return read(record, payload)
        }
    }
}
