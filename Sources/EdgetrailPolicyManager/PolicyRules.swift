import EdgetrailCore
import Foundation

/// One policy rule: what a request must look like for it to apply, and what it decides.
/// Every condition given must hold; a rule with none matches everything.
public struct PolicyRule: Sendable, Equatable {
    public enum Decision: String, Sendable { case allow, deny }

    public var name: String
    public var decision: Decision
    /// Why, shown to the client on a deny.
    public var reason: String
    /// `*` matches any run of characters, e.g. `*.example.com`; compared without case.
    public var hosts: [String] = []
    /// `*` matches any run of characters, e.g. `/admin*`.
    public var paths: [String] = []
    public var methods: [String] = []
    public var clients: [IPPrefix] = []
    public var categories: [String] = []

    public init(name: String, decision: Decision, reason: String = "") {
        self.name = name
        self.decision = decision
        self.reason = reason
    }
}

/// What a policy check is about.
public struct PolicyQuestion: Sendable {
    public var method: String
    public var url: String
    public var client: String
    public var categories: [String]

    public init(method: String, url: String, client: String, categories: [String] = []) {
        self.method = method
        self.url = url
        self.client = client
        self.categories = categories
    }

    /// The host and path of `url`, which may be absolute (`http://host/path`) or a path with the
    /// host given apart.
    var hostAndPath: (host: String, path: String) {
        if let components = URLComponents(string: url), let host = components.host {
            return (host.lowercased(), components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath)
        }
        return ("", url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url)
    }
}

/// The policy manager's rules, in order: the first rule that matches decides; when none does,
/// the default applies (rule name `default`).
public struct PolicyRules: Sendable {
    public var rules: [PolicyRule]
    public var defaultDecision: PolicyRule.Decision

    public init(rules: [PolicyRule], defaultDecision: PolicyRule.Decision = .allow) {
        self.rules = rules
        self.defaultDecision = defaultDecision
    }

    public func decide(_ question: PolicyQuestion) -> PolicyRule {
        let (host, path) = question.hostAndPath
        let client = IPPrefix.parseAddress(question.client.split(separator: ":").first.map(String.init) ?? "")
            .map { IPPrefix(address: $0, length: $0.count * 8) }
        for rule in rules {
            if !rule.hosts.isEmpty, !rule.hosts.contains(where: { Glob.matches($0.lowercased(), host) }) { continue }
            if !rule.paths.isEmpty, !rule.paths.contains(where: { Glob.matches($0, path) }) { continue }
            if !rule.methods.isEmpty, !rule.methods.contains(where: { $0.uppercased() == question.method.uppercased() }) { continue }
            if !rule.clients.isEmpty {
                guard let client, rule.clients.contains(where: { $0.contains(client) }) else { continue }
            }
            if !rule.categories.isEmpty, Set(rule.categories).isDisjoint(with: question.categories) { continue }
            return rule
        }
        return PolicyRule(
            name: "default", decision: defaultDecision,
            reason: defaultDecision == .deny ? "no policy rule allows this request" : "")
    }
}

/// Shell-style `*` patterns.
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let pattern = Array(pattern.utf8)
        let text = Array(text.utf8)
        var p = 0
        var t = 0
        var star = -1
        var mark = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                star = p
                mark = t
                p += 1
            } else if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}
