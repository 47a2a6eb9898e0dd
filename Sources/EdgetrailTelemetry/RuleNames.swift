import EdgetrailProto

/// The names filter rules use for enumerated record values (`span.status == "error"`,
/// `flow.proto == "tcp"`, `flow.action == "redirect"`). One definition, read by the rule
/// evaluator and by the filter stage's guards alike.
extension Edgetrail_V1_SpanStatus {
    public var ruleName: String {
        switch self {
        case .error: "error"
        case .ok: "ok"
        default: "unset"
        }
    }
}

extension Edgetrail_V1_DatapathAction {
    public var ruleName: String {
        switch self {
        case .redirect: "redirect"
        case .copy: "copy"
        case .deny: "deny"
        case .ratelimit: "ratelimit"
        default: "pass"
        }
    }
}

extension Edgetrail_V1_FiveTuple {
    /// "tcp", "udp", or the IP protocol number.
    public var protocolRuleName: String {
        switch self.protocol {
        case 6: "tcp"
        case 17: "udp"
        default: String(self.protocol)
        }
    }
}
