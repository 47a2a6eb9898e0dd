import EdgetrailCNF
import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// A μsrv running in the test process on the kit, with its sockets in a private directory.
struct RunningMicroservice: Sendable {
    let kit: MicroserviceKit
    let group: ServiceGroup
    let task: Task<Void, any Error>

    var settings: MicroserviceSettings { kit.settings }

    /// Starts the kit with the services `make` returns for it, and waits until it serves.
    static func start(
        _ kind: MicroserviceKind, name: String? = nil, runDirectory: String, redisPort: Int,
        otlp: EdgetrailCore.Endpoint = .tcp(host: "127.0.0.1", port: 1), policies: [String: EventPolicy] = [:],
        make: (MicroserviceKit) -> (api: [any RegistrableRPCService], extra: [any Service])
    ) async throws -> RunningMicroservice {
        var settings = MicroserviceSettings(name: name ?? kind.rawValue, kind: kind, cnf: "test", runDirectory: runDirectory)
        settings.redis = .tcp(host: "127.0.0.1", port: redisPort)
        settings.otlp = otlp
        settings.policies = policies
        var logger = Logger(label: "test.\(settings.name)")
        logger.logLevel = .error
        let kit = MicroserviceKit(settings: settings, logger: logger)
        let (api, extra) = make(kit)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let services = try kit.services(api: api, extra: extra) { readyContinuation.yield() }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map {
                    .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                }, logger: logger))
        let task = Task { try await group.run() }
        for await _ in ready { break }
        return RunningMicroservice(kit: kit, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        kit.removeSockets()
    }

    /// Runs `body` with a gRPC client on the μsrv's API socket.
    func withAPI<Result: Sendable>(_ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result) async throws
        -> Result
    {
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .unixDomainSocket(path: settings.apiSocket), transportSecurity: .plaintext),
            handleClient: body)
    }

    /// Runs `body` while a handler (this test, standing in for the sidecar) is attached for
    /// `events` on the μsrv's event stream; `handle` answers each event (nil: no verdict).
    func withHandler<Result: Sendable>(
        for events: [String], handle: @escaping @Sendable (Edgetrail_V1_Event) async throws -> Edgetrail_V1_Verdict?,
        _ body: () async throws -> Result
    ) async throws -> Result {
        let socket = settings.eventsSocket
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await attachHandler(socket: socket, events: events, handle: handle)
            }
            while events.contains(where: { kit.hub.handler(for: $0) == nil }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let result = try await body()
            group.cancelAll()
            return result
        }
    }
}

/// A handler on a μsrv's event stream, until cancelled or the stream ends.
func attachHandler(
    socket: String, events: [String], name: String = "test-handler",
    handle: @escaping @Sendable (Edgetrail_V1_Event) async throws -> Edgetrail_V1_Verdict?
) async throws {
    try await withGRPCClient(
        transport: .http2NIOPosix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
    ) { client in
        let stream = Edgetrail_V1_EventStream.Client(wrapping: client)
        let (verdicts, continuation) = AsyncStream.makeStream(of: Edgetrail_V1_Verdict.self)
        try await stream.attach(requestProducer: { writer in
            var subscribe = Edgetrail_V1_HandlerMessage()
            subscribe.subscribe.events = events
            subscribe.subscribe.handler = name
            try await writer.write(subscribe)
            for await verdict in verdicts {
                var message = Edgetrail_V1_HandlerMessage()
                message.verdict = verdict
                try await writer.write(message)
            }
        }) { response in
            defer { continuation.finish() }
            for try await event in response.messages where event.subscribed.isEmpty {
                if let verdict = try await handle(event) { continuation.yield(verdict) }
            }
        }
    }
}

func verdict(_ event: Edgetrail_V1_Event, deny reason: String? = nil) -> Edgetrail_V1_Verdict {
    var verdict = Edgetrail_V1_Verdict()
    verdict.eventID = event.id
    verdict.decision = reason == nil ? .allow : .deny
    verdict.reason = reason ?? ""
    return verdict
}

/// A short private directory for sockets (Unix socket paths are limited to 107 bytes).
func makeRunDirectory() throws -> String {
    var template = Array("/tmp/et-ms-XXXXXX".utf8CString)
    guard let created = mkdtemp(&template) else { throw MicroserviceError("cannot create a directory under /tmp") }
    return String(cString: created)
}
