import EdgetrailDatapath
import EdgetrailDatapathAPI
import EdgetrailNet
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import UnixSignals

/// The Datapath Manager's gRPC service: each call does one thing to the manager; what the
/// datapath refuses comes back as INVALID_ARGUMENT (a rule set, a tuple) or FAILED_PRECONDITION
/// (the manager is stopping) with the reason.
public struct DatapathManagerService: Edgetrail_V1_DatapathManager.SimpleServiceProtocol {
    let manager: DatapathManager

    public init(manager: DatapathManager) {
        self.manager = manager
    }

    /// Runs one call on NIO's thread pool (it takes the manager's lock and enters the node's
    /// network namespace, both blocking) and maps what it throws to a status.
    private func answer<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await Blocking.run(body)
        } catch let error as DatapathManagerStopping {
            throw RPCError(code: .failedPrecondition, message: error.description)
        } catch let error as DatapathError {
            throw RPCError(code: .invalidArgument, message: error.description)
        } catch let error as DatapathMessageError {
            throw RPCError(code: .invalidArgument, message: error.description)
        } catch let error as NamespaceError {
            throw RPCError(code: .failedPrecondition, message: error.description)
        }
    }

    public func applyRules(request: Edgetrail_V1_ApplyRulesRequest, context: ServerContext) async throws
        -> Edgetrail_V1_ApplyRulesResponse
    {
        var response = Edgetrail_V1_ApplyRulesResponse()
        response.version = try await answer { try manager.apply(request) }
        return response
    }

    public func listRules(request: Edgetrail_V1_ListRulesRequest, context: ServerContext) async throws
        -> Edgetrail_V1_ListRulesResponse
    {
        try await answer { try manager.listRules() }
    }

    public func bindFlow(request: Edgetrail_V1_BindFlowRequest, context: ServerContext) async throws
        -> Edgetrail_V1_BindFlowResponse
    {
        var response = Edgetrail_V1_BindFlowResponse()
        response.flowSeen = try await answer { try manager.bind(request) }
        return response
    }

    public func stats(request: Edgetrail_V1_StatsRequest, context: ServerContext) async throws
        -> Edgetrail_V1_StatsResponse
    {
        try await answer { try manager.stats() }
    }

    public func streamEvents(
        request: Edgetrail_V1_StreamEventsRequest, response: RPCWriter<Edgetrail_V1_FlowEventMessage>,
        context: ServerContext
    ) async throws {
        for await event in manager.subscribe(resumeRun: request.resumeRun, after: request.resumeAfter) {
            try await response.write(event)
        }
    }
}

/// A running Datapath Manager: the event pump and the gRPC server on its Unix socket, as one
/// service group. On SIGINT/SIGTERM (or `triggerGracefulShutdown()`) it ends the event streams,
/// stops the server, detaches the programs and removes the socket.
public struct DatapathManagerServer: Sendable {
    public let manager: DatapathManager
    private let logger: Logger

    public init(configuration: DatapathManagerConfiguration, logger: Logger) throws {
        self.manager = try DatapathManager(configuration: configuration, logger: logger)
        self.logger = logger
    }

    public func makeServiceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) throws -> ServiceGroup {
        let path = manager.configuration.socketPath
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try? FileManager.default.removeItem(atPath: path)
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext),
            services: [DatapathManagerService(manager: manager)])
        let manager = self.manager
        let pump = ThreadService(name: "datapath-events", run: { manager.run() }, stop: { manager.stop() })
        logger.info("Datapath Manager listening", metadata: ["socket": "\(path)"])
        return ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: pump, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "events"),
                    .init(
                        // The event streams end first, so the server's wait for open calls
                        // does not wait on subscribers.
                        service: GRPCServerService(server: server, beforeShutdown: { manager.endStreams() }),
                        successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "grpc"),
                ],
                gracefulShutdownSignals: signals, logger: logger))
    }

    /// Serves until a signal, then cleans up: programs detached, qdisc and socket removed.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        try await run(group: makeServiceGroup(signals: signals))
    }

    /// Runs a group made by `makeServiceGroup`, then cleans up.
    public func run(group: ServiceGroup) async throws {
        var failure: (any Error)?
        do {
            try await group.run()
        } catch {
            failure = error
        }
        // Detaching enters the node's namespace: on NIO's thread pool, not a cooperative thread.
        let manager = self.manager
        _ = try? await Blocking.run { manager.shutdown() }
        try? FileManager.default.removeItem(atPath: manager.configuration.socketPath)
        if let failure { throw failure }
    }
}
