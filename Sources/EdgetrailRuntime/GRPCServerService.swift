import GRPCCore
import ServiceLifecycle

/// A gRPC server as a service: on graceful shutdown it runs `beforeShutdown` (to end streams
/// that would otherwise keep the server waiting, e.g. event subscriptions), then stops accepting
/// and lets the open calls finish.
public struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>
    let beforeShutdown: @Sendable () -> Void

    public init(server: GRPCServer<Transport>, beforeShutdown: @escaping @Sendable () -> Void = {}) {
        self.server = server
        self.beforeShutdown = beforeShutdown
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await server.serve()
        } onGracefulShutdown: {
            beforeShutdown()
            server.beginGracefulShutdown()
        }
    }
}
