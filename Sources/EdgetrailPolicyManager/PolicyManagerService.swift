import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailProto
import GRPCCore
import Tracing

/// policy-mgr's API: `Check` decides from its rules, then raises `policy_check` (sync) so the
/// CNF's handler may deny what the rules allowed; the decision is kept in the session's state
/// (`cookie:<hex>:<μsrv>:check`).
public struct PolicyManagerService: Edgetrail_V1_PolicyManager.SimpleServiceProtocol {
    let kit: MicroserviceKit
    let rules: PolicyRules

    public init(kit: MicroserviceKit, rules: PolicyRules) {
        self.kit = kit
        self.rules = rules
    }

    public func check(request: Edgetrail_V1_PolicyCheckRequest, context: ServerContext) async throws
        -> Edgetrail_V1_PolicyDecision
    {
        var serviceContext = ServiceContext.current ?? .topLevel
        let cookie = try sessionCookie(request.cookie, &serviceContext)
        let question = PolicyQuestion(
            method: request.method, url: request.url, client: request.client, categories: request.categories)
        let rule = rules.decide(question)
        var attributes = [
            "http.method": request.method, "http.url": request.url, "client": request.client,
            "policy.rule": rule.name, "policy.decision": rule.decision.rawValue,
        ]
        if !request.categories.isEmpty { attributes["content.categories"] = request.categories.joined(separator: ",") }
        for (name, value) in request.headers { attributes["http.header.\(name.lowercased())"] = value }
        var decision = Edgetrail_V1_PolicyDecision()
        decision.rule = rule.name
        decision.decision = rule.decision == .deny ? .deny : .allow
        decision.reason = rule.reason
        if rule.decision == .allow {
            let outcome = await kit.raise("policy_check", context: serviceContext, attributes: attributes, payload: request.body)
            if case .answered(let verdict) = outcome, verdict.denied {
                decision.decision = .deny
                decision.rule = "handler"
                decision.reason = verdict.reason.isEmpty ? "denied by the policy_check handler" : verdict.reason
            }
        }
        kit.state.set(
            cookie, "check",
            [("rule", decision.rule), ("decision", decision.decision == .deny ? "deny" : "allow"), ("url", request.url)])
        return decision
    }
}
