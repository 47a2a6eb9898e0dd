/// Finds, in a rule's condition, a field it needs to have one value (see `RuleGuard`); which
/// fields can guard, and how, is the catalog's `guardField`.
enum RuleGuards {
    /// The first conjunct of the condition's top-level `and` chain that is `field == literal`
    /// on a field the stage can index.
    static func guardOf(_ condition: Expression) -> RuleGuard? {
        switch condition {
        case .binary(.and, let left, let right, _):
            return guardOf(left) ?? guardOf(right)
        case .binary(.equal, .field(let field), let literal, _), .binary(.equal, let literal, .field(let field), _):
            return equality(field, literal)
        default:
            return nil
        }
    }

    /// `redact span.tags["k"]` changes nothing on a span without the tag "k".
    static func presence(of field: FieldReference) -> RuleGuard? {
        guard Fields.field(field)?.guardField == .spanTagKeys, let key = field.key else { return nil }
        return RuleGuard(field: .spanTagKeys, key: .string(key))
    }

    private static func equality(_ reference: FieldReference, _ literal: Expression) -> RuleGuard? {
        let key: GuardKey
        switch literal {
        case .string(let value, _): key = .string(value)
        case .number(let value, _): key = .number(value)
        default: return nil
        }
        guard let guarded = Fields.field(reference)?.guardField else { return nil }
        // A missing tag equals nothing, so the rule needs the tag to be there.
        if guarded == .spanTagKeys { return presence(of: reference) }
        return RuleGuard(field: guarded, key: key)
    }
}
