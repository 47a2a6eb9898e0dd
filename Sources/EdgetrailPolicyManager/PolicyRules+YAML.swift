import EdgetrailCore
import EdgetrailYAML
import Yams

extension PolicyRules {
    /// Reads a `policy:` section: `default: allow|deny` and `rules:`, each rule with `name`,
    /// `action` (allow|deny), optional `reason`, and the conditions `hosts`, `paths`,
    /// `methods`, `clients` (IP prefixes), `categories`. Problems go to `context` with their place.
    public static func read(_ node: Node, context: inout YAMLContext) -> PolicyRules? {
        guard let mapping = context.mapping(node, what: "the policy section") else { return nil }
        let fields = context.fields(of: mapping, allowed: ["default", "rules"], what: "the policy section")
        var rules = PolicyRules(rules: [])
        if let node = fields["default"], let choice = context.choice(node, what: "default", from: ["allow", "deny"]) {
            rules.defaultDecision = choice == "deny" ? .deny : .allow
        }
        let before = context.diagnostics.count
        for item in fields["rules"].map({ context.sequence($0, what: "the policy rules") }) ?? [] {
            guard let ruleMapping = context.mapping(item, what: "a policy rule") else { continue }
            let ruleFields = context.fields(
                of: ruleMapping, allowed: ["name", "action", "reason", "hosts", "paths", "methods", "clients", "categories"],
                what: "a policy rule")
            guard let name = context.requiredName(ruleFields["name"], field: "name", in: item, what: "a policy rule"),
                let actionNode = ruleFields["action"]
                    ?? { context.report("policy rule '\(name)' is missing the required field 'action'", at: item); return nil }(),
                let action = context.choice(actionNode, what: "action", from: ["allow", "deny"])
            else { continue }
            var rule = PolicyRule(
                name: name, decision: action == "deny" ? .deny : .allow,
                reason: ruleFields["reason"].flatMap { context.string($0, what: "reason") } ?? "")
            func strings(_ field: String) -> [String] {
                guard let node = ruleFields[field] else { return [] }
                return context.sequence(node, what: "'\(field)'").compactMap { context.string($0, what: "'\(field)'") }
            }
            rule.hosts = strings("hosts")
            rule.paths = strings("paths")
            rule.methods = strings("methods")
            rule.categories = strings("categories")
            if let node = ruleFields["clients"] {
                for item in context.sequence(node, what: "'clients'") {
                    guard let text = context.string(item, what: "a client prefix") else { continue }
                    if let prefix = IPPrefix(text) {
                        rule.clients.append(prefix)
                    } else {
                        context.report("'\(text)' is not an IP address or prefix, e.g. 10.200.0.0/24", at: item)
                    }
                }
            }
            if rules.rules.contains(where: { $0.name == rule.name }) {
                context.report("policy rule '\(name)' is named twice", at: ruleFields["name"])
            }
            rules.rules.append(rule)
        }
        return context.diagnostics.count == before ? rules : nil
    }
}
