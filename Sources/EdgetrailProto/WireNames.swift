import EdgetrailCore
import Foundation

// Hand-written beside the generated code: the names people, filter rules, the timeline and the
// command line use for the wire's enumerated values. One catalog; every reader uses it, so a
// name is changed (or added) in one place.

/// IP protocols by name: the ones with a name, others written as their number.
public enum IPProtocolName {
    public static let named: [(number: UInt32, name: String)] = [(6, "tcp"), (17, "udp")]

    /// "tcp", "udp", or nil for a protocol without a name here.
    public static func known(_ number: UInt32) -> String? {
        named.first { $0.number == number }?.name
    }

    /// "tcp", "udp", or the protocol number.
    public static func name(_ number: UInt32) -> String {
        known(number) ?? String(number)
    }

    /// The number of a named protocol (any case), or nil.
    public static func number(_ name: String) -> UInt32? {
        let lowered = name.lowercased()
        return named.first { $0.name == lowered }?.number
    }
}

extension Edgetrail_V1_SpanStatus {
    /// Every name a status has, in the order messages list them.
    public static let ruleNames = ["ok", "error", "unset"]

    /// "ok", "error" or "unset" (`span.status` in rules and the timeline).
    public var ruleName: String {
        switch self {
        case .error: "error"
        case .ok: "ok"
        default: "unset"
        }
    }
}

extension Edgetrail_V1_DatapathAction {
    /// Every name an action has, in the order messages list them.
    public static let ruleNames = ["redirect", "copy", "deny", "ratelimit", "pass"]

    /// "redirect", "copy", "deny", "ratelimit", or "pass" for a flow no rule matched.
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
    public var protocolRuleName: String { IPProtocolName.name(self.protocol) }

    /// The flow's identity as bytes (addresses, ports, protocol): what the join tracks open flows
    /// by and the timeline merges a flow's start and end events by.
    public var flowKey: [UInt8] {
        var key = [UInt8](srcIp)
        key += dstIp
        key += [
            UInt8(truncatingIfNeeded: srcPort >> 8), UInt8(truncatingIfNeeded: srcPort),
            UInt8(truncatingIfNeeded: dstPort >> 8), UInt8(truncatingIfNeeded: dstPort),
            UInt8(truncatingIfNeeded: self.protocol),
        ]
        return key
    }
}

extension Data {
    /// Lowercase hex, two digits per byte (trace and span ids).
    public var hexString: String { Hex.string(self) }
}
