import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailProto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization
import Tracing

#if canImport(Glibc)
import Glibc
#endif

/// How the proxy takes and forwards traffic.
public struct ProxySettings: Sendable {
    public enum Mode: Sendable, Equatable {
        /// Every connection goes to one upstream (for running outside a node).
        case explicit(upstreamHost: String, upstreamPort: Int)
        /// Inside a pod: the listener has `IP_TRANSPARENT`, and each connection goes where the
        /// client sent it (the accepted socket's local address, which the datapath preserved).
        case transparent
    }

    public var mode: Mode
    public var listenHost: String
    public var listenPort: Int
    /// Bodies up to this size are held and handed to the handlers before they move on; larger
    /// ones are streamed through and marked uninspected (`http.body_inspected=false`).
    public var inspectLimit: Int = 1 << 20
    /// The node's Datapath Manager, to bind each client flow to its session's cookie.
    public var datapathSocket: String?

    public init(mode: Mode, listenHost: String, listenPort: Int) {
        self.mode = mode
        self.listenHost = listenHost
        self.listenPort = listenPort
    }
}

/// http-proxy: a real HTTP/1.1 proxy on the μsrv kit. For each request it mints the session
/// cookie, binds the client's flow to it (when a Datapath Manager is configured), raises
/// `request_received` (sync), forwards the request, holds the response (up to the inspection
/// limit) and raises `response_received` (sync), then sends it and raises `response_sent`. A
/// denied request or response gets a 403 page naming the reason and the cookie. Keep-alive on
/// both sides; chunked and content-length bodies; large bodies streamed with back-pressure.
public final class HTTPProxy: Service, Sendable {
    let kit: MicroserviceKit
    let settings: ProxySettings
    let sessions = SessionTable(capacity: 10_000)
    let binder: FlowBinder?
    let connections = ConnectionRegistry()
    /// Whether the listener is up: not yet (with whoever waits to know), or its outcome
    /// (`nil`: it could not listen).
    private enum Listening {
        case pending([CheckedContinuation<SocketAddress?, Never>])
        case settled(SocketAddress?)
    }
    private let listening = Mutex(Listening.pending([]))

    public init(kit: MicroserviceKit, settings: ProxySettings) {
        self.kit = kit
        self.settings = settings
        binder = settings.datapathSocket.map { FlowBinder(socket: $0, logger: kit.logger) }
    }

    /// The services the proxy needs beside the kit's: itself and the flow binder.
    public var services: [any Service] { [self] + (binder.map { [$0] } ?? []) }

    /// The address it listens on, once it does (nil if it failed to).
    public var listeningAddress: SocketAddress? {
        get async {
            await withCheckedContinuation { continuation in
                let settled = listening.withLock { state -> SocketAddress?? in
                    switch state {
                    case .settled(let address): return .some(address)
                    case .pending(let waiters):
                        state = .pending(waiters + [continuation])
                        return .none
                    }
                }
                if let settled { continuation.resume(returning: settled) }
            }
        }
    }

    private func publish(_ address: SocketAddress?) {
        let waiters = listening.withLock { state -> [CheckedContinuation<SocketAddress?, Never>] in
            defer { state = .settled(address) }
            if case .pending(let waiters) = state { return waiters }
            return []
        }
        for waiter in waiters { waiter.resume(returning: address) }
    }

    public func run() async throws {
        var bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        if settings.mode == .transparent {
            bootstrap = bootstrap.serverChannelOption(
                ChannelOptions.Types.SocketOption(
                    level: NIOBSDSocket.OptionLevel(rawValue: CInt(SOL_IP)),
                    name: NIOBSDSocket.Option(rawValue: CInt(IP_TRANSPARENT))),
                value: 1)
        }
        let target: @Sendable (any Channel) -> (host: String, port: Int)?
        switch settings.mode {
        case .explicit(let host, let port): target = { _ in (host, port) }
        case .transparent:
            // The datapath kept the client's destination: it is the accepted socket's own address.
            target = { channel in channel.localAddress.flatMap { address in address.ipAddress.map { ($0, address.port ?? 80) } } }
        }
        let server: any Channel
        do {
            server = try await bootstrap
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Outbound headers are the upstream's, read by NIO's strict parser, plus the
                        // proxy's own: checking each again on the way out cost ~5% of the proxy's CPU.
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                            withErrorHandling: true, withOutboundHeaderValidation: false)
                        try channel.pipeline.syncOperations.addHandler(ProxyConnection(proxy: self, target: target(channel)))
                    }
                }
                .bind(host: settings.listenHost, port: settings.listenPort).get()
        } catch {
            publish(nil)
            let cause =
                (error as? IOError)?.errnoCode == EADDRINUSE
                ? "the port is in use by another program; stop it or give --listen another port" : "\(error)"
            throw MicroserviceError(
                "http-proxy cannot listen on \(settings.listenHost):\(settings.listenPort): \(cause)"
                    + (settings.mode == .transparent ? " (transparent mode needs CAP_NET_ADMIN, e.g. root in the pod)" : ""))
        }
        publish(server.localAddress)
        let connections = self.connections
        await withGracefulShutdownHandler {
            try? await server.closeFuture.get()
        } onGracefulShutdown: {
            // Stop accepting; idle connections close now, busy ones after their current request.
            server.close(promise: nil)
            connections.stop()
        }
        // Let the busy connections finish (a large download may take a while), up to a minute.
        let deadline = ContinuousClock.now + .seconds(60)
        while connections.count > 0, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
    }

    // MARK: One request

    /// What the proxy knows about one request while it handles it.
    struct Exchange {
        var head: HTTPRequestHead
        var body: ByteBuffer
        /// The whole body is in `body` (it was no larger than the inspection limit).
        var complete: Bool
        var cookie: Cookie
        var span: SessionSpan
        var url: String
        var clientKeepAlive: Bool
        var bytesFromClient: Int
        /// The flow's binding to the cookie, awaited before the client gets its answer.
        var binding: Task<Void, Never>?
        /// Sent again after a stale upstream connection failed it.
        var retried = false
        /// Its body was larger than the inspection limit and streamed on (it cannot be sent again).
        var streamed = false
        var upstreamSpan: SessionSpan?
    }


    /// Who a client connection is between, worked out once per connection (not per request).
    struct Peers {
        var client: SocketAddress?
        /// `IP:PORT` of the client.
        var clientText: String
        /// Where its requests go.
        var target: (host: String, port: Int)?
        /// `HOST:PORT` of the target.
        var targetText: String
        /// The client's flow, for the Datapath Manager's binding.
        var flow: Edgetrail_V1_FiveTuple?

        init(client: SocketAddress?, target: (host: String, port: Int)?, binds: Bool) {
            self.client = client
            self.target = target
            clientText = client.map { "\($0.ipAddress ?? ""):\($0.port ?? 0)" } ?? ""
            targetText = target.map { "\($0.host):\($0.port)" } ?? ""
            if binds, let client, let target { flow = FlowBinder.tuple(client: client, host: target.host, port: target.port) }
        }
    }

    static func requestAttributes(_ exchange: Exchange, peers: Peers) -> [String: String] {
        let head = exchange.head
        var attributes = Self.attributes(of: head.headers)
        attributes["http.method"] = "\(head.method.rawValue)"
        attributes["http.url"] = exchange.url
        attributes["http.host"] = head.headers.first(name: "host") ?? peers.targetText
        attributes["http.content_type"] = head.headers.first(name: "content-type") ?? ""
        attributes["http.body_inspected"] = "\(exchange.complete)"
        attributes["client"] = peers.clientText
        return attributes
    }

    /// Mints the session and starts its span.
    func begin(_ head: HTTPRequestHead, body: ByteBuffer, complete: Bool, peers: Peers) -> Exchange {
        let cookie = kit.mintCookie()
        // A client that traces its own requests makes the proxy's span a child of its own.
        var session = SessionContext(
            metadata: [SessionContext.traceParentHeader, SessionContext.baggageHeader].flatMap { name in
                head.headers[name].map { (name, $0) }
            })
        session.cookie = cookie
        var context = ServiceContext.topLevel
        context.session = session
        let span = kit.tracer.startSpan("HTTP \(head.method.rawValue)", context: context, ofKind: .server)
        let host = head.headers.first(name: "host") ?? peers.targetText
        let url = head.uri.hasPrefix("http://") ? head.uri : "http://\(host)\(head.uri)"
        let clientAddress = peers.clientText
        let origin = peers.targetText
        let method = "\(head.method.rawValue)"
        span.setAttribute("http.method", .string(method))
        span.setAttribute("http.url", .string(url))
        span.setAttribute("client.address", .string(clientAddress))
        if peers.target != nil { span.setAttribute("server.address", .string(origin)) }
        sessions.put(
            SessionTable.Entry(
                cookie: cookie, client: clientAddress, origin: origin, method: method, url: url, headers: head.headers,
                startedAtNanoseconds: wallClockNanoseconds()))
        kit.state.set(cookie, "request", [("method", method), ("url", url), ("client", clientAddress), ("origin", origin)])
        var binding: Task<Void, Never>?
        if let binder, let tuple = peers.flow {
            binding = Task { await binder.bind(tuple, to: cookie) }
        }
        return Exchange(
            head: head, body: body, complete: complete, cookie: cookie, span: span, url: url,
            clientKeepAlive: head.isKeepAlive, bytesFromClient: body.readableBytes, binding: binding)
    }

    /// Ends the session's span, records the response and raises `response_sent` (without holding
    /// up the connection for its handler).
    func finish(
        _ exchange: Exchange, status: Int, bytes: Int, contentType: String, inspected: Bool,
        attributes: () -> [String: String], payload: ByteBuffer
    ) {
        let span = exchange.span
        span.setAttribute("http.status_code", .int64(Int64(status)))
        span.setAttribute("http.response.body.size", .int64(Int64(bytes)))
        span.setAttribute("http.body_inspected", .bool(inspected))
        kit.state.set(
            exchange.cookie, "response",
            [("status", "\(status)"), ("bytes", "\(bytes)"), ("content_type", contentType), ("inspected", "\(inspected)")])
        guard kit.hub.isHandledElseCounted("response_sent") else {
            span.end()
            return
        }
        var attributes = attributes()
        attributes["http.bytes_sent"] = "\(bytes)"
        attributes["http.method"] = "\(exchange.head.method.rawValue)"
        attributes["http.url"] = exchange.url
        let context = span.context
        let kit = self.kit
        let body = Data(payload.readableBytesView)
        Task {
            _ = await kit.raise("response_sent", context: context, attributes: attributes, payload: body)
            span.end()
        }
    }

    /// Headers for a connection, not for the message (RFC 9110 §7.6.1).
    private static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        // One pass to find them (most messages carry one or two), then remove only those.
        var found: [String] = []
        for header in headers where header.name.utf8.count <= 17 {
            let name = header.name.lowercased()
            if hopByHop.contains(name) { found.append(name) }
        }
        guard !found.isEmpty else { return }
        for option in headers[canonicalForm: "connection"] { found.append(option.lowercased()) }
        for name in found { headers.remove(name: name) }
    }

    static func attributes(of headers: HTTPHeaders) -> [String: String] {
        var result: [String: String] = [:]
        for header in headers { result["http.header.\(header.name.lowercased())"] = header.value }
        return result
    }

    /// What `GetSession` answers from: the recent sessions the proxy minted.
    public func session(_ cookie: Cookie) -> Edgetrail_V1_Session? { sessions.get(cookie.rawValue)?.message }
}
