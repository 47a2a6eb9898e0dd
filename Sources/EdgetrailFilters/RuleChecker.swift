import EdgetrailCore
import EdgetrailProto
import Foundation

/// Checks parsed statements: fields exist for the statement's kind, types fit the operators,
/// regular expressions compile, and no rule sits behind one that always decides first.
struct RuleChecker {
    private(set) var errors: [RuleSyntaxError] = []

    mutating func check(_ statements: [Statement]) {
        var unconditionalDrop: [RecordKind: Statement] = [:]
        var cookieDecidedBy: Statement?
        for statement in statements {
            let scope: RecordKind
            switch statement.action {
            case .drop(let kind): scope = kind
            case .keep, .sample: scope = .cookie
            case .redact(let field, let pattern, _):
                scope = field.kind
                if field.kind == .cookie {
                    report("cookie fields cannot be redacted; redact span, flow or snapshot fields", statement.position)
                }
                if let type = check(field: field, scope: field.kind), type != .string {
                    report("only text fields can be redacted; \(field) is \(type.article)", field.position)
                }
                if let pattern { checkRegex(pattern, at: field.position) }
            }
            if let condition = statement.condition {
                if let type = check(condition, scope: scope), type != .boolean {
                    report("a condition must be true or false, but this is \(type.article)", condition.position)
                }
            }
            // Unreachable rules.
            if statement.isCookieLevel {
                if let decider = cookieDecidedBy {
                    report(
                        "this rule is never reached: '\(decider.text)' on line \(decider.position.line) decides every cookie first",
                        statement.position)
                } else if statement.condition == nil, case .drop = statement.action {
                    cookieDecidedBy = statement
                }
            } else {
                let kind = scope
                if let dropper = unconditionalDrop[kind] {
                    report(
                        "this rule is never reached: '\(dropper.text)' on line \(dropper.position.line) drops every \(kind.rawValue) first",
                        statement.position)
                } else if statement.condition == nil, case .drop = statement.action {
                    unconditionalDrop[kind] = statement
                }
            }
        }
    }

    private mutating func report(_ message: String, _ position: RulePosition) {
        errors.append(RuleSyntaxError(message: message, line: position.line, column: position.column))
    }

    private mutating func checkRegex(_ pattern: String, at position: RulePosition) {
        do {
            _ = try NSRegularExpression(pattern: pattern)
        } catch {
            report("/\(pattern)/ is not a valid regular expression", position)
            return
        }
        if let nested = RegexCost.nestedRepeat(in: pattern) {
            report(
                "/\(pattern)/ repeats a repeat ('\(nested.inner)' inside '\(nested.outer)'): matching it can take seconds "
                    + "on a value that almost matches; repeat the group's content once, e.g. (ab)+ instead of (a+b)+",
                position)
        }
    }

    /// A field with a fixed set of values compared with a string none of them is: the rule
    /// could never match (or always would, with `!=`), which is a typo, not intent.
    private mutating func checkValue(_ field: Expression, _ value: Expression) {
        guard case .field(let reference) = field, case .string(let text, let position) = value,
            let known = FieldCatalog.values["\(reference.kind.rawValue).\(reference.name)"], !known.contains(text)
        else { return }
        if reference.kind == .flow, reference.name == "proto" {
            // Protocols other than TCP and UDP go by number.
            if let number = UInt8(text), String(number) == text, number != 6, number != 17 { return }
            report(
                "\(reference) is never \"\(text)\"; its values are \"tcp\", \"udp\" or another IP protocol's number, like \"1\" for ICMP",
                position)
            return
        }
        report("\(reference) is never \"\(text)\"; its values are \(known.map { "\"\($0)\"" }.joined(separator: ", "))", position)
    }

    /// The field's type, or nil (reported) when it does not exist here.
    private mutating func check(field: FieldReference, scope: RecordKind) -> ValueType? {
        guard field.kind == scope || scope == .cookie && field.kind == .cookie else {
            if scope == .cookie {
                report(
                    "\(field) is a field of each \(field.kind.rawValue); in a cookie rule use any(\(field.kind.rawValue) where …), all(…) or count(…)",
                    field.position)
            } else {
                report("\(field) cannot be used in a \(scope.rawValue) rule; use \(scope.rawValue).… fields", field.position)
            }
            return nil
        }
        guard let type = FieldCatalog.type(of: field) else {
            let hint = FieldCatalog.suggestion(for: field).map { "; did you mean \($0)?" } ?? ""
            let known = FieldCatalog.fields[field.kind]!.keys.sorted().joined(separator: ", ")
            report("unknown field \(field)\(hint.isEmpty ? " (\(field.kind.rawValue) fields: \(known))" : hint)", field.position)
            return nil
        }
        let qualified = "\(field.kind.rawValue).\(field.name)"
        if FieldCatalog.keyed.contains(qualified), field.key == nil {
            report("\(qualified) needs a key, like \(qualified)[\"http.url\"]", field.position)
            return nil
        }
        if !FieldCatalog.keyed.contains(qualified), field.key != nil {
            report("\(qualified) takes no key", field.position)
            return nil
        }
        return type
    }

    /// The expression's type, or nil when a problem in it was reported.
    private mutating func check(_ expression: Expression, scope: RecordKind) -> ValueType? {
        switch expression {
        case .field(let field):
            return check(field: field, scope: scope)
        case .number: return .number
        case .string: return .string
        case .boolean: return .boolean
        case .network(let prefix, _):
            return prefix.length == prefix.address.count * 8 ? .address : .network
        case .regex(let pattern, let position):
            checkRegex(pattern, at: position)
            return .regex
        case .not(let inner, let position):
            guard let type = check(inner, scope: scope) else { return nil }
            guard type == .boolean else {
                report("'not' needs a condition, but this is \(type.article)", position)
                return nil
            }
            return .boolean
        case .aggregate(let aggregate, let kind, let condition, let position):
            let name = aggregate.rawValue
            guard scope == .cookie else {
                report("\(name)(…) looks at all of a cookie's records, so it only works in cookie rules", position)
                return nil
            }
            if let condition, let type = check(condition, scope: kind), type != .boolean {
                report("a condition must be true or false, but this is \(type.article)", condition.position)
            }
            return aggregate == .count ? .number : .boolean
        case .binary(let op, let left, let right, let position):
            let leftType = check(left, scope: scope)
            let rightType = check(right, scope: scope)
            guard let leftType, let rightType else { return nil }
            func mismatch(_ expected: String) -> ValueType? {
                report(
                    "'\(op.rawValue)' \(expected), but this compares \(leftType.article) with \(rightType.article)", position)
                return nil
            }
            switch op {
            case .and, .or:
                guard leftType == .boolean, rightType == .boolean else { return mismatch("joins two conditions") }
                return .boolean
            case .plus, .minus:
                guard leftType == .number, rightType == .number else { return mismatch("adds and subtracts numbers") }
                return .number
            case .less, .lessOrEqual, .greater, .greaterOrEqual:
                guard leftType == .number, rightType == .number else { return mismatch("orders numbers") }
                return .boolean
            case .equal, .notEqual:
                let comparable = leftType == rightType
                    || (leftType == .address && rightType == .network) || (leftType == .network && rightType == .address)
                guard comparable, leftType != .regex else { return mismatch("compares values of the same type") }
                checkValue(left, right)
                checkValue(right, left)
                return .boolean
            case .matches:
                guard leftType == .string, rightType == .regex else {
                    return mismatch("matches text against a /regular expression/")
                }
                return .boolean
            case .within:
                guard leftType == .address, rightType == .network || rightType == .address else {
                    return mismatch("tests an address against a CIDR like 10.0.0.0/8")
                }
                return .boolean
            }
        }
    }
}
