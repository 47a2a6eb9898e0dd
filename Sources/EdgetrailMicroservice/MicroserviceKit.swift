import EdgetrailCNF
import EdgetrailCore
import EdgetrailNet
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import Tracing

/// Who a μsrv is and what it talks to: everything the kit needs to serve it.
public struct MicroserviceSettings: Sendable {
    public var name: String
    public var kind: MicroserviceKind
    public var cnf: String
    /// The pod's run directory: the μsrv serves `NAME.api.sock` and `NAME.events.sock` there,
    /// and finds the other μsrvs' sockets beside them.
    public var runDirectory: String
    /// Redis, over TCP or (from inside a pod) a Unix socket.
    public var redis: EdgetrailCore.Endpoint = .tcp(host: "127.0.0.1", port: 16379)
    /// The node collector's OTLP/gRPC receiver; `nil`: spans are not exported (tracing off).
    public var otlp: EdgetrailCore.Endpoint? = .tcp(host: "127.0.0.1", port: 4317)
    /// The events it publishes (the CNF may narrow its kind's list).
    public var events: [String]
    /// Per event: the handler timeout from the CNF spec and the default verdict.
    public var policies: [String: EventPolicy] = [:]

    public init(name: String, kind: MicroserviceKind, cnf: String, runDirectory: String) {
        self.name = name
        self.kind = kind
        self.cnf = cnf
        self.runDirectory = runDirectory
        self.events = kind.events
    }

    public var apiSocket: String { Self.apiSocket(of: name, in: runDirectory) }
    public var eventsSocket: String { "\(runDirectory)/\(name).events.sock" }

    /// Where the μsrv `name` of the same pod set serves its API.
    public static func apiSocket(of name: String, in runDirectory: String) -> String { "\(runDirectory)/\(name).api.sock" }

    /// Takes the timeouts of the handlers the CNF binds to this μsrv's events, and its events.
    public mutating func apply(_ spec: CNFSpec) {
        cnf = spec.name
        if let microservice = spec.microservices.first(where: { $0.name == name }) { events = microservice.events }
        for handler in spec.handlers where handler.microservice == name {
            policies[handler.event] = EventPolicy(timeout: .milliseconds(handler.timeoutMilliseconds))
        }
    }
}

/// What every μsrv shares: its event hub and `EventStream`, its tracer and span exporter, its
/// session state in Redis, and the two gRPC servers on Unix sockets (the API and the events).
/// A μsrv is its API service(s) plus, for http-proxy, a listener; `services` runs it all.
public final class MicroserviceKit: Sendable {
    public let settings: MicroserviceSettings
    public let hub: EventHub
    public let exporter: OTLPSpanExporter
    public let tracer: SessionTracer
    public let state: SessionState
    public let logger: Logger

    public init(settings: MicroserviceSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        hub = EventHub(
            microservice: settings.name, events: settings.events,
            syncEvents: settings.kind.syncEvents.intersection(settings.events), policies: settings.policies)
        exporter = OTLPSpanExporter(
            endpoint: settings.otlp,
            resource: [
                ("service.name", settings.name), ("edgetrail.cnf", settings.cnf),
                ("edgetrail.microservice.kind", settings.kind.rawValue),
            ],
            logger: logger)
        tracer = SessionTracer(exporter: exporter)
        state = SessionState(
            microservice: settings.name, redis: settings.redis, logger: logger)
    }

    /// Raises `event` for the session in `context`, inside a span of its own (the handler's span
    /// becomes its child); a sync event's outcome is on the span (`edgetrail.verdict`, and
    /// `edgetrail.verdict.default` with the reason when the handler did not answer). With no
    /// handler attached the event is only counted: no span, and `attributes` and `payload` are
    /// not even built (the request path pays nothing for events nobody handles).
    public func raise(
        _ event: String, context: ServiceContext, attributes: @autoclosure () -> [String: String] = [:],
        payload: @autoclosure () -> Data = Data()
    ) async -> EventOutcome {
        guard hub.events.contains(event), let cookie = context.session?.cookie else { return .notDelivered(.noHandler) }
        guard hub.handler(for: event) != nil else { return hub.unhandled(event) }
        let span = tracer.startSpan("event \(event)", context: context, ofKind: .producer)
        let outcome = await hub.raise(
            event, cookie: cookie, attributes: attributes(), payload: payload(),
            traceParent: span.context.spanIdentity?.traceParent)
        span.setAttribute("edgetrail.event", .string(event))
        switch outcome {
        case .answered(let verdict):
            span.setAttribute("edgetrail.verdict", .string(verdict.decision.rawValue))
            if !verdict.reason.isEmpty { span.setAttribute("edgetrail.verdict.reason", .string(verdict.reason)) }
        case .defaulted(let reason, let verdict):
            span.setAttribute("edgetrail.verdict", .string(verdict.decision.rawValue))
            span.setAttribute("edgetrail.verdict.default", .string(reason.rawValue))
            if let error = verdict.annotations[HandlerVerdict.handlerErrorKey] {
                span.setAttribute("edgetrail.handler.error", .string(error))
            }
        case .delivered:
            span.setAttribute("edgetrail.handler", .string(hub.handler(for: event) ?? ""))
        case .notDelivered(let reason):
            span.setAttribute("edgetrail.event.undelivered", .string(reason.rawValue))
        }
        span.end()
        return outcome
    }

    /// A new session's cookie: unpredictable enough to keep sessions apart, never 0 (0 means "no
    /// cookie" on the wire), and cheap (no system call per session).
    public func mintCookie() -> Cookie {
        while true {
            let value = tracer.randomWord()
            if value != 0 { return Cookie(value) }
        }
    }

    /// Whether a handler is attached for `event` now.
    public func isHandled(_ event: String) -> Bool { hub.handler(for: event) != nil }

    /// The services that run the μsrv: its API (`api`, each call in a server span), its event
    /// stream, the span exporter and the state writer, plus `extra` (a listener). `onReady` is
    /// called once both sockets accept calls.
    public func services(
        api: [any RegistrableRPCService], extra: [any Service] = [], onReady: @escaping @Sendable () async -> Void
    ) throws -> [any Service] {
        try FileManager.default.createDirectory(atPath: settings.runDirectory, withIntermediateDirectories: true)
        for path in [settings.apiSocket, settings.eventsSocket] {
            if FileManager.default.fileExists(atPath: path) {
                if SocketProbe.isListening(.unix(path: path)) {
                    throw MicroserviceError(
                        "\(path) is served by another process; stop it, or give this μsrv another --name or --run-dir")
                }
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        let apiServer = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: settings.apiSocket), transportSecurity: .plaintext),
            services: api, interceptors: [SessionServerInterceptor(tracer: tracer)])
        let eventServer = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: settings.eventsSocket), transportSecurity: .plaintext),
            services: [EventStreamService(hub: hub)])
        let hub = self.hub
        let ready = ReadyService(servers: [apiServer, eventServer], onReady: onReady)
        // Stop order (reverse of start): the listener and servers end first, then the exporter
        // and the state writer flush what the last requests left.
        return [exporter, state, GRPCServerService(server: apiServer), GRPCServerService(server: eventServer) { hub.close() }, ready]
            + extra
    }

    /// Removes the sockets (after the services stopped).
    public func removeSockets() {
        for path in [settings.apiSocket, settings.eventsSocket] { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// A μsrv could not start; the message says why and what to do.
public struct MicroserviceError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Calls `onReady` once every server listens, then waits for shutdown.
struct ReadyService: Service {
    let servers: [GRPCServer<HTTP2ServerTransport.Posix>]
    let onReady: @Sendable () async -> Void

    func run() async throws {
        for server in servers { _ = try await server.listeningAddress }
        await onReady()
        try? await gracefulShutdown()
    }
}
