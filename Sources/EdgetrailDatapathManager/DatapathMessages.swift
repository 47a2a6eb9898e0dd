import EdgetrailCore
import EdgetrailDatapath
import EdgetrailProto
import Foundation

/// Between the Datapath Manager's wire messages and the datapath's own types.
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

    public static func tuple(_ message: Edgetrail_V1_FiveTuple) throws(DatapathError) -> FlowTuple {
        guard message.srcIp.count == 4, message.dstIp.count == 4 else {
            throw DatapathError("the datapath tracks IPv4 flows; give 4-byte source and destination addresses")
        }
        guard message.srcPort <= 65535, message.dstPort <= 65535, message.protocol <= 255 else {
            throw DatapathError("ports are 0-65535 and the protocol 0-255")
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

    /// A flow event as `StreamEvents` sends it; a flow no rule matched has the action pass.
    public static func message(_ event: DatapathFlowEvent, node: String) -> Edgetrail_V1_FlowEventMessage {
        var flow = Edgetrail_V1_FlowEvent()
        flow.phase = event.kind == .start ? .start : .end
        flow.tuple = message(event.tuple)
        flow.action = event.action.map(action) ?? .pass
        flow.ruleID = event.ruleIndex.map { UInt32($0 + 1) } ?? 0
        flow.packetsIn = event.packetsIn
        flow.packetsOut = event.packetsOut
        flow.bytesIn = event.bytesIn
        flow.bytesOut = event.bytesOut
        flow.drops = event.drops
        flow.startNs = event.startNs
        flow.endNs = event.kind == .start ? 0 : event.endNs
        switch event.reason {
        case .none: flow.endReason = .unspecified
        case .fin: flow.endReason = .fin
        case .rst: flow.endReason = .rst
        case .idle: flow.endReason = .idle
        }
        var message = Edgetrail_V1_FlowEventMessage()
        message.cookie = event.cookie
        message.node = node
        message.event = flow
        return message
    }
}
