import EdgetrailProto
import GRPCCore

/// The `EventStream` every μsrv serves to its handler sidecar: the first message names the events
/// the sidecar handles, the μsrv confirms the subscription with a message listing them, then
/// events flow out and verdicts flow in on the same stream. When the
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
        let hub = self.hub
        let (attached, announce) = AsyncStream.makeStream(of: EventHub.Attachment.self)
        // Verdicts in and events out run side by side; whichever ends first ends the stream: the
        // sidecar closed its side, or the μsrv is stopping (then the wait for more verdicts is
        // cancelled rather than holding up the server's shutdown).
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { announce.finish() }
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
                    throw RPCError(code: hub.isClosed ? .unavailable : .invalidArgument, message: "\(error)")
                }
                // Its unanswered events get their defaults however the stream ends.
                defer { hub.detach(attachment.id) }
                announce.yield(attachment)
                announce.finish()
                while let message = try await messages.next() {
                    if case .verdict(let verdict)? = message.kind { hub.answer(verdict, from: attachment.id) }
                }
            }
            group.addTask {
                for await attachment in attached {
                    // The sidecar knows it is attached (and may say so) once this arrives.
                    var confirmation = Edgetrail_V1_Event()
                    confirmation.subscribed = attachment.names
                    try await response.write(confirmation)
                    for await event in attachment.events { try await response.write(event) }
                    // The stream ended without the handler leaving: the μsrv is stopping.
                    if hub.isClosed { throw RPCError(code: .unavailable, message: "\(hub.microservice) is stopping") }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
