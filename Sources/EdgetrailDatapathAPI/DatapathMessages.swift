import EdgetrailCore
import EdgetrailProto
import Foundation

/// A request the Datapath Manager cannot take as it is (a malformed tuple), with what to send instead.
public struct DatapathMessageError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Between the Datapath Manager's wire messages and the domain's own types (rules, tuples): what
/// a client sends and the manager reads, written once for both.
public enum DatapathMessages {
    /// The wire form of a rule; `id` is its position in the set, from 1.
    public static func message(_ rule: DatapathRule, id: UInt32) -> Edgetrail_V1_DatapathRule {
        var message = Edgetrail_V1_DatapathRule()
        message.id = id
        message.ip = rule.destination?.description ?? "*"
        message.port = UInt32(rule.port ?? 0)
        message.action = action(rule.action)
        message.labels = rule.labels
        message.rateBytesPerSecond = rule.rateBytesPerSecond ?? 0
        return message
    }

    /// Rules from the wire, with a problem for each that cannot be one (naming it by position).
    public static func rules(_ messages: [Edgetrail_V1_DatapathRule]) -> ([DatapathRule], [String]) {
        var rules: [DatapathRule] = []
        var problems: [String] = []
        for (index, message) in messages.enumerated() {
            let name = "rule \(index + 1)"
            let destination: IPPrefix?
            do {
                destination = try DatapathRule.parseDestination(message.ip.isEmpty ? "*" : message.ip)
            } catch {
                problems.append("\(name): \(error.message)")
                continue
            }
            guard message.port <= 65535 else {
                problems.append("\(name): port \(message.port) is not 1-65535 (0 means any)")
                continue
            }
            guard let action = action(message.action) else {
                problems.append("\(name): no action (redirect, copy, deny or ratelimit)")
                continue
            }
            rules.append(
                DatapathRule(
                    destination: destination, port: message.port == 0 ? nil : UInt16(message.port), action: action,
                    labels: message.labels,
                    rateBytesPerSecond: action == .ratelimit ? message.rateBytesPerSecond : nil))
        }
        return (rules, problems)
    }

    public static func action(_ action: DatapathAction) -> Edgetrail_V1_DatapathAction {
        switch action {
        case .redirect: .redirect
        case .copy: .copy
        case .deny: .deny
        case .ratelimit: .ratelimit
        }
    }

    public static func action(_ action: Edgetrail_V1_DatapathAction) -> DatapathAction? {
        switch action {
        case .redirect: .redirect
        case .copy: .copy
        case .deny: .deny
        case .ratelimit: .ratelimit
        case .pass, .unspecified, .UNRECOGNIZED: nil
        }
    }

    public static func tuple(_ message: Edgetrail_V1_FiveTuple) throws(DatapathMessageError) -> FlowTuple {
        guard message.srcIp.count == 4, message.dstIp.count == 4 else {
            throw DatapathMessageError("the datapath tracks IPv4 flows; give 4-byte source and destination addresses")
        }
        guard message.srcPort <= 65535, message.dstPort <= 65535, message.protocol <= 255 else {
            throw DatapathMessageError("ports are 0-65535 and the protocol 0-255")
        }
        return FlowTuple(
            source: Array(message.srcIp), destination: Array(message.dstIp), sourcePort: UInt16(message.srcPort),
            destinationPort: UInt16(message.dstPort), proto: UInt8(message.protocol))
    }

    /// `BindFlow` for a TCP connection from `client` to `server` (address bytes and port).
    public static func bindTCP(
        from client: ([UInt8], UInt16), to server: ([UInt8], UInt16), cookie: UInt64
    ) -> Edgetrail_V1_BindFlowRequest {
        var request = Edgetrail_V1_BindFlowRequest()
        request.tuple = message(
            FlowTuple(source: client.0, destination: server.0, sourcePort: client.1, destinationPort: server.1, proto: 6))
        request.cookie = cookie
        return request
    }

    public static func message(_ tuple: FlowTuple) -> Edgetrail_V1_FiveTuple {
        var message = Edgetrail_V1_FiveTuple()
        message.srcIp = Data(tuple.source)
        message.dstIp = Data(tuple.destination)
        message.srcPort = UInt32(tuple.sourcePort)
        message.dstPort = UInt32(tuple.destinationPort)
        message.protocol = UInt32(tuple.proto)
        return message
    }
}
