import EdgetrailNet
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import UnixSignals

/// The node agent's gRPC service (`node.proto`). A deploy or update runs to its end even when
/// the caller goes away part-way: a half-applied version is worse than an unread progress line.
public struct NodeAgentService: Edgetrail_V1_NodeAgent.SimpleServiceProtocol {
    let agent: NodeAgent

    public init(agent: NodeAgent) {
        self.agent = agent
    }

    public func deploy(
        request: Edgetrail_V1_DeployRequest, response: RPCWriter<Edgetrail_V1_DeployProgress>, context: ServerContext
    ) async throws {
        try await stream(request, update: false, to: response)
    }

    public func update(
        request: Edgetrail_V1_DeployRequest, response: RPCWriter<Edgetrail_V1_DeployProgress>, context: ServerContext
    ) async throws {
        try await stream(request, update: true, to: response)
    }

    private func stream(
        _ request: Edgetrail_V1_DeployRequest, update: Bool, to response: RPCWriter<Edgetrail_V1_DeployProgress>
    ) async throws {
        let (steps, continuation) = AsyncStream<String>.makeStream()
        let agent = self.agent
        let work = Task {
            defer { continuation.finish() }
            return await agent.deploy(request, update: update) { continuation.yield($0) }
        }
        var writing = true
        for await step in steps where writing {
            var message = Edgetrail_V1_DeployProgress()
            message.step = step
            do { try await response.write(message) } catch { writing = false }
        }
        let outcome = await work.value
        var last = Edgetrail_V1_DeployProgress()
        last.outcome = outcome
        try await response.write(last)
    }

    public func delete(request: Edgetrail_V1_DeleteRequest, context: ServerContext) async throws -> Edgetrail_V1_DeleteResponse {
        do {
            var response = Edgetrail_V1_DeleteResponse()
            response.removed = try await agent.delete(request.cnf)
            return response
        } catch {
            throw error.status
        }
    }

    public func list(request: Edgetrail_V1_ListRequest, context: ServerContext) async throws -> Edgetrail_V1_ListResponse {
        // Health reads each sidecar's log and probes each pod's socket: off the cooperative pool.
        let agent = self.agent
        var response = Edgetrail_V1_ListResponse()
        response.cnfs = try await Blocking.run { agent.list() }
        return response
    }

    public func status(request: Edgetrail_V1_StatusRequest, context: ServerContext) async throws -> Edgetrail_V1_CNFStatus {
        let agent = self.agent
        do {
            return try await Blocking.run { try agent.status(request.cnf) }
        } catch let error as NodeAgentError {
            throw error.status
        }
    }
}

extension NodeAgentError {
    var status: RPCError {
        switch self {
        case .notFound(let message): RPCError(code: .notFound, message: message)
        case .failed(let message): RPCError(code: .failedPrecondition, message: message)
        }
    }
}

/// A running node agent: its gRPC server on `RUN/agent.sock`. On SIGTERM/SIGINT it stops
/// serving, then stops every pod it runs and removes their namespaces and rules.
public struct NodeAgentServer: Sendable {
    public let agent: NodeAgent
    let logger: Logger

    public init(configuration: NodeAgentConfiguration, logger: Logger) {
        self.agent = NodeAgent(configuration: configuration, logger: logger)
        self.logger = logger
    }

    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        let path = agent.configuration.socketPath
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // A socket file another agent still serves is that agent's: refuse rather than take it
        // over (a stale file, from an agent that died, is replaced).
        if SocketProbe.isListening(.unix(path: path)) {
            throw NodeAgentError.failed("another node agent serves \(path); stop it first (edgetrail node down --name \(agent.configuration.node))")
        }
        try? FileManager.default.removeItem(atPath: path)
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext),
            services: [NodeAgentService(agent: agent)])
        logger.info("node agent listening", metadata: ["socket": "\(path)", "node": "\(agent.configuration.node)"])
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: GRPCServerService(server: server), successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: signals, logger: logger))
        var failure: (any Error)?
        do {
            try await group.run()
        } catch {
            failure = error
        }
        await agent.shutdown()
        try? FileManager.default.removeItem(atPath: path)
        if let failure { throw failure }
    }
}
