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
    private let bound = Mutex<SocketAddress?>(nil)
    private let connections = ConnectionRegistry()
    private let boundWaiters = Mutex<[CheckedContinuation<SocketAddress?, Never>]>([])

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
            if let address = bound.withLock({ $0 }) { return address }
            return await withCheckedContinuation { continuation in
                let address = bound.withLock { bound -> SocketAddress?? in
                    if let bound { return .some(bound) }
                    boundWaiters.withLock { $0.append(continuation) }
                    return .none
                }
                if let address { continuation.resume(returning: address) }
            }
        }
    }

    private func publish(_ address: SocketAddress?) {
        bound.withLock { $0 = address }
        for waiter in boundWaiters.withLock({ waiters in defer { waiters = [] }; return waiters }) {
            waiter.resume(returning: address)
        }
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
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            server = try await bootstrap.bind(host: settings.listenHost, port: settings.listenPort) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            publish(nil)
            throw MicroserviceError(
                "http-proxy cannot listen on \(settings.listenHost):\(settings.listenPort): \(error)"
                    + (settings.mode == .transparent ? " (transparent mode needs CAP_NET_ADMIN, e.g. root in the pod)" : ""))
        }
        publish(server.channel.localAddress)
        let connections = self.connections
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        // The connection's work runs on its channel's event loop, and its upstream
                        // connection lives on the same loop: reads and writes need no thread hops.
                        let executor = EventLoopTaskExecutor(connection.channel.eventLoop)
                        group.addTask(executorPreference: executor) { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            // Stop accepting; connections finish the request they are in and close.
            server.channel.close(promise: nil)
            connections.stop()
        }
    }

    // MARK: One client connection

    typealias ClientChannel = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    typealias UpstreamChannel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    private func serve(_ connection: ClientChannel) async {
        let channel = connection.channel
        let id = connections.add(channel)
        defer { connections.remove(id) }
        let client = channel.remoteAddress
        let target: (host: String, port: Int)?
        switch settings.mode {
        case .explicit(let host, let port): target = (host, port)
        case .transparent: target = channel.localAddress.flatMap { address in address.ipAddress.map { ($0, address.port ?? 80) } }
        }
        do {
            try await connection.executeThenClose { inbound, outbound in
                var requests = inbound.makeAsyncIterator()
                var next = try await readAndDecide(&requests, outbound, client: client, target: target, id: id)
                while let exchange = next {
                    guard let target else {
                        try await reject(exchange, outbound, status: .badGateway, reason: "the original destination is unknown")
                        return
                    }
                    let upstream: UpstreamChannel
                    do {
                        upstream = try await connect(target, on: channel.eventLoop)
                    } catch {
                        try await reject(
                            exchange, outbound, status: .badGateway, reason: "cannot reach \(target.host):\(target.port): \(error)")
                        guard exchange.clientKeepAlive, exchange.complete else { return }
                        next = try await readAndDecide(&requests, outbound, client: client, target: target, id: id)
                        continue
                    }
                    // One upstream connection serves requests until it or the client closes.
                    next = try await upstream.executeThenClose { upstreamIn, upstreamOut -> Exchange? in
                        var responses = upstreamIn.makeAsyncIterator()
                        var current = exchange
                        while true {
                            let forwarded = try await forward(current, &requests, outbound, &responses, upstreamOut)
                            guard case .done(let clientOpen, let upstreamOpen) = forwarded else {
                                current.retried = true
                                return current
                            }
                            guard clientOpen else { return nil }
                            guard
                                let following = try await readAndDecide(
                                    &requests, outbound, client: client, target: target, id: id)
                            else { return nil }
                            guard upstreamOpen else { return following }
                            current = following
                        }
                    }
                }
            }
        } catch {
            kit.logger.debug("client connection ended", metadata: ["error": "\(error)"])
        }
    }

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
    }

    enum Forwarded {
        /// The exchange is over; whether the client and upstream connections stay open.
        case done(client: Bool, upstream: Bool)
        /// The upstream connection failed before answering: send it again on a new one.
        case retry
    }

    /// Reads the next request (denying the ones the handler denies, which need no upstream);
    /// returns the next allowed one, or nil when the client is done.
    private func readAndDecide(
        _ requests: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator,
        _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, client: SocketAddress?,
        target: (host: String, port: Int)?, id: Int
    ) async throws -> Exchange? {
        while true {
            connections.setIdle(id, true)
            guard !connections.stopping, let part = try await requests.next() else { return nil }
            connections.setIdle(id, false)
            guard case .head(var head) = part else { continue }
            // The client waits for a go-ahead before sending its body; the proxy reads bodies
            // before forwarding, so it gives the go-ahead itself.
            if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                head.headers.remove(name: "expect")
                try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
            }
            var body = ByteBuffer()
            var complete = false
            reading: while body.readableBytes <= settings.inspectLimit {
                switch try await requests.next() {
                case .body(var chunk): body.writeBuffer(&chunk)
                case .end: complete = true; break reading
                case .head, nil: throw ProxyError.clientClosedMidRequest
                }
            }
            var exchange = begin(head, body: body, complete: complete, client: client, target: target)
            let outcome = await kit.raise(
                "request_received", context: exchange.span.context,
                attributes: Self.requestAttributes(exchange, client: client, target: target),
                payload: Data(body.readableBytesView))
            guard outcome.verdict.denied else { return exchange }
            // Denied: the rest of the body is read and dropped, and the client gets the 403.
            if !complete {
                while let part = try await requests.next() {
                    exchange.bytesFromClient += part.bodyCount
                    if case .end = part { break }
                }
                exchange.complete = true
            }
            try await reject(exchange, outbound, status: .forbidden, reason: outcome.verdict.reason)
            guard exchange.clientKeepAlive else { return nil }
        }
    }

    static func requestAttributes(_ exchange: Exchange, client: SocketAddress?, target: (host: String, port: Int)?)
        -> [String: String]
    {
        let head = exchange.head
        var attributes = Self.attributes(of: head.headers)
        attributes["http.method"] = "\(head.method.rawValue)"
        attributes["http.url"] = exchange.url
        attributes["http.host"] = head.headers.first(name: "host") ?? target.map { "\($0.host):\($0.port)" } ?? ""
        attributes["http.content_type"] = head.headers.first(name: "content-type") ?? ""
        attributes["http.body_inspected"] = "\(exchange.complete)"
        attributes["client"] = client.map { "\($0.ipAddress ?? ""):\($0.port ?? 0)" } ?? ""
        return attributes
    }

    /// Mints the session and starts its span.
    private func begin(
        _ head: HTTPRequestHead, body: ByteBuffer, complete: Bool, client: SocketAddress?, target: (host: String, port: Int)?
    ) -> Exchange {
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
        let host = head.headers.first(name: "host") ?? target.map { "\($0.host):\($0.port)" } ?? ""
        let url = head.uri.hasPrefix("http://") ? head.uri : "http://\(host)\(head.uri)"
        let clientAddress = client.map { "\($0.ipAddress ?? ""):\($0.port ?? 0)" } ?? ""
        let origin = target.map { "\($0.host):\($0.port)" } ?? ""
        let method = "\(head.method.rawValue)"
        span.setAttribute("http.method", .string(method))
        span.setAttribute("http.url", .string(url))
        span.setAttribute("client.address", .string(clientAddress))
        if target != nil { span.setAttribute("server.address", .string(origin)) }
        sessions.put(
            SessionTable.Entry(
                cookie: cookie, client: clientAddress, origin: origin, method: method, url: url, headers: head.headers,
                startedAtNanoseconds: wallClockNanoseconds()))
        kit.state.set(cookie, "request", [("method", method), ("url", url), ("client", clientAddress), ("origin", origin)])
        var binding: Task<Void, Never>?
        if let binder, let client, let target, let tuple = FlowBinder.tuple(client: client, host: target.host, port: target.port) {
            binding = Task { await binder.bind(tuple, to: cookie) }
        }
        return Exchange(
            head: head, body: body, complete: complete, cookie: cookie, span: span, url: url,
            clientKeepAlive: head.isKeepAlive, bytesFromClient: body.readableBytes, binding: binding)
    }

    /// Forwards an allowed request and brings back its response; returns whether the client
    /// and the upstream connections stay open.
    private func forward(
        _ exchange: Exchange, _ requests: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator,
        _ client: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
        _ responses: inout NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator,
        _ upstream: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    ) async throws -> Forwarded {
        var exchange = exchange
        let span = exchange.span
        let upstreamSpan = kit.tracer.startSpan("upstream \(exchange.head.method.rawValue)", context: span.context, ofKind: .client)
        var head = exchange.head
        Self.removeHopByHop(&head.headers)
        head.headers.replaceOrAdd(name: "traceparent", value: upstreamSpan.context.spanIdentity?.traceParent?.header ?? "")
        head.version = .http1_1
        // An idle keep-alive connection the upstream has closed fails here, before any of the
        // response: a request we hold whole is sent again on a new connection, once.
        let retryable = exchange.complete && !exchange.retried
        // A request held whole goes out in one write (one flush, one segment when it fits).
        var parts: [HTTPClientRequestPart] = [.head(head)]
        if exchange.body.readableBytes > 0 { parts.append(HTTPClientRequestPart.body(IOData.byteBuffer(exchange.body))) }
        if exchange.complete { parts.append(HTTPClientRequestPart.end(nil)) }
        do {
            try await upstream.write(contentsOf: parts)
        } catch where retryable {
            upstreamSpan.end()
            return .retry
        }
        if !exchange.complete {
            streaming: while let part = try await requests.next() {
                switch part {
                case .body(let chunk):
                    exchange.bytesFromClient += chunk.readableBytes
                    try await upstream.write(.body(.byteBuffer(chunk)))
                case .end: break streaming
                case .head: throw ProxyError.clientClosedMidRequest
                }
            }
        }
        let first: HTTPClientResponsePart?
        do {
            if !exchange.complete { try await upstream.write(.end(nil)) }
            first = try await responses.next()
        } catch where retryable {
            upstreamSpan.end()
            return .retry
        }
        guard case .head(var response)? = first else {
            upstreamSpan.end()
            if retryable { return .retry }
            upstreamSpan.setStatus(SpanStatus(code: .error, message: "the upstream closed without a response"))
            try await reject(exchange, client, status: .badGateway, reason: "the upstream closed without a response")
            return .done(client: exchange.clientKeepAlive, upstream: false)
        }
        upstreamSpan.setAttribute("http.status_code", .int64(Int64(Int(response.status.code))))
        upstreamSpan.end()
        let upstreamKeepAlive = response.isKeepAlive
        var held = ByteBuffer()
        var ended = false
        holding: while held.readableBytes <= settings.inspectLimit {
            switch try await responses.next() {
            case .body(var chunk): held.writeBuffer(&chunk)
            case .end: ended = true; break holding
            case .head, nil: throw ProxyError.upstreamClosedMidResponse
            }
        }
        let contentType = response.headers.first(name: "content-type") ?? ""
        let responseHead = response
        let url = exchange.url
        let inspected = ended
        let attributes = { @Sendable () -> [String: String] in
            var attributes = Self.attributes(of: responseHead.headers)
            attributes["http.status"] = "\(responseHead.status.code)"
            attributes["http.url"] = url
            attributes["http.content_type"] = contentType
            attributes["http.body_inspected"] = "\(inspected)"
            return attributes
        }
        if ended {
            let outcome = await kit.raise(
                "response_received", context: span.context, attributes: attributes(), payload: Data(held.readableBytesView))
            if outcome.verdict.denied {
                try await reject(exchange, client, status: .forbidden, reason: outcome.verdict.reason)
                return .done(client: exchange.clientKeepAlive, upstream: upstreamKeepAlive)
            }
        }
        let clientKeepAlive = exchange.clientKeepAlive && (ended || response.headers.contains(name: "content-length")
            || exchange.head.version.minor >= 1)
        Self.removeHopByHop(&response.headers)
        if ended, !response.headers.contains(name: "content-length"), response.status.mayHaveResponseBody {
            response.headers.replaceOrAdd(name: "content-length", value: "\(held.readableBytes)")
        }
        response.headers.replaceOrAdd(name: "connection", value: clientKeepAlive ? "keep-alive" : "close")
        // The session's id, for the client's own logs and `edgetrail trace`.
        response.headers.replaceOrAdd(name: "edgetrail-cookie", value: exchange.cookie.hex)
        response.version = exchange.head.version
        var sent = held.readableBytes
        var responseParts: [HTTPServerResponsePart] = [.head(response)]
        if held.readableBytes > 0 { responseParts.append(HTTPServerResponsePart.body(IOData.byteBuffer(held))) }
        // A held response goes out whole in one write.
        if ended { responseParts.append(HTTPServerResponsePart.end(nil)) }
        await exchange.binding?.value
        try await client.write(contentsOf: responseParts)
        if !ended {
            streaming: while let part = try await responses.next() {
                switch part {
                case .body(let chunk):
                    sent += chunk.readableBytes
                    try await client.write(.body(.byteBuffer(chunk)))
                case .end: break streaming
                case .head: throw ProxyError.upstreamClosedMidResponse
                }
            }
            try await client.write(.end(nil))
        }
        finish(exchange, status: Int(response.status.code), bytes: sent, contentType: contentType, inspected: ended,
            attributes: attributes, payload: held)
        return .done(client: clientKeepAlive, upstream: upstreamKeepAlive)
    }

    /// Answers the client itself: a 403 (denied) or 502 (upstream trouble) page naming the
    /// reason and the cookie.
    private func reject(
        _ exchange: Exchange, _ client: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, status: HTTPResponseStatus,
        reason: String
    ) async throws {
        let page = DenyPage.html(status: status, reason: reason, cookie: exchange.cookie, url: exchange.head.uri)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/html; charset=utf-8")
        headers.add(name: "content-length", value: "\(page.utf8.count)")
        headers.add(name: "edgetrail-cookie", value: exchange.cookie.hex)
        headers.add(name: "connection", value: exchange.clientKeepAlive && exchange.complete ? "keep-alive" : "close")
        await exchange.binding?.value
        try await client.write(contentsOf: [
            .head(HTTPResponseHead(version: exchange.head.version, status: status, headers: headers)),
            .body(.byteBuffer(ByteBuffer(string: page))), .end(nil),
        ])
        exchange.span.setAttribute("edgetrail.denied", .bool(status == .forbidden))
        if !reason.isEmpty { exchange.span.setAttribute("edgetrail.reason", .string(reason)) }
        if status != .forbidden { exchange.span.setStatus(SpanStatus(code: .error, message: reason)) }
        finish(exchange, status: Int(status.code), bytes: page.utf8.count, contentType: "text/html", inspected: true,
            attributes: { ["http.status": "\(status.code)", "edgetrail.reason": reason] }, payload: ByteBuffer())
    }

    /// Ends the session's span, records the response and raises `response_sent` (without holding
    /// up the connection for its handler).
    private func finish(
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
        guard kit.isHandled("response_sent") else {
            _ = kit.hub.unhandled("response_sent")
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

    private func connect(_ target: (host: String, port: Int), on loop: any EventLoop) async throws -> UpstreamChannel {
        try await ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: target.host, port: target.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try UpstreamChannel(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Headers for a connection, not for the message (RFC 9110 §7.6.1).
    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        let named = headers[canonicalForm: "connection"].map { $0.lowercased() }
        for name in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]
            + named
        {
            headers.remove(name: name)
        }
    }

    static func attributes(of headers: HTTPHeaders) -> [String: String] {
        var result: [String: String] = [:]
        for header in headers { result["http.header.\(header.name.lowercased())"] = header.value }
        return result
    }

    /// What `GetSession` answers from: the recent sessions the proxy minted.
    public func session(_ cookie: Cookie) -> Edgetrail_V1_Session? { sessions.get(cookie.rawValue)?.message }
}

enum ProxyError: Error, CustomStringConvertible {
    case clientClosedMidRequest
    case upstreamClosedMidResponse

    var description: String {
        switch self {
        case .clientClosedMidRequest: "the client closed its connection in the middle of a request"
        case .upstreamClosedMidResponse: "the upstream closed its connection in the middle of a response"
        }
    }
}

extension HTTPServerRequestPart {
    var bodyCount: Int {
        if case .body(let chunk) = self { return chunk.readableBytes }
        return 0
    }
}
