import EdgetrailProto
import GRPCCore

/// The `EventStream` every μsrv serves to its handler sidecar: the first message names the events
/// the sidecar handles, then events flow out and verdicts flow in on the same stream. When the
/// stream ends, the handler's unanswered events get their defaults; when the μsrv stops, the
/// stream ends with `unavailable`.
public struct EventStreamService: Edgetrail_V1_EventStream.SimpleServiceProtocol {
    let hub: EventHub

    public init(hub: EventHub) {
        self.hub = hub
    }

    public func attach(
        request: RPCAsyncSequence<Edgetrail_V1_HandlerMessage, any Error>, response: RPCWriter<Edgetrail_V1_Event>,
        context: ServerContext
    ) async throws {
        var messages = request.makeAsyncIterator()
        guard let first = try await messages.next(), case .subscribe(let subscribe)? = first.kind else {
            throw RPCError(
                code: .invalidArgument,
                message: "the first message on the event stream must be a Subscribe naming the events to handle")
        }
        let attachment: EventHub.Attachment
        do {
            attachment = try hub.attach(events: subscribe.events, handler: subscribe.handler)
        } catch {
            throw RPCError(code: hub.isClosed ? .unavailable : .invalidArgument, message: error.message)
        }
        defer { hub.detach(attachment.id) }
        let hub = self.hub
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                for await event in attachment.events { try await response.write(event) }
                // The stream ended without the handler leaving: the μsrv is stopping.
                if hub.isClosed { throw RPCError(code: .unavailable, message: "\(hub.microservice) is stopping") }
            }
            while let message = try await messages.next() {
                if case .verdict(let verdict)? = message.kind { hub.answer(verdict, from: attachment.id) }
            }
            // The sidecar closed its side: it handles no more events.
            hub.detach(attachment.id)
        }
    }
}
