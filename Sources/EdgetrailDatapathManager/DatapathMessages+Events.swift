import EdgetrailDatapath
import EdgetrailDatapathAPI
import EdgetrailProto

extension DatapathMessages {
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
