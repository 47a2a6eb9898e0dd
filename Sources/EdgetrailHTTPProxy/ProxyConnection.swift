import EdgetrailCore
import EdgetrailMicroservice
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Tracing

/// One client connection of the proxy, as a channel handler on its event loop: every read,
/// decision and write for the connection and for its upstream connection (on the same loop)
/// happens here, without a task per step. Only an event with a handler attached leaves the
/// loop (the verdict comes back to it).
///
/// A request is read (its body held up to the inspection limit), decided (`request_received`),
/// forwarded (a body past the limit streams on), and its response is held (up to the limit,
/// then `response_received`) or streamed. Reading pauses while a decision is pending and while
/// the other side cannot take more (back-pressure both ways).
final class ProxyConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// Reading the request up to the inspection limit.
        case reading
        /// Waiting for `request_received`'s verdict or the upstream connection.
        case deciding
        /// Denied with the body still arriving: it is read and dropped, then the 403 goes.
        case draining(reason: String)
        /// Forwarding the rest of a request body larger than the limit.
        case streamingRequest
        /// The request is out; waiting for the response head.
        case awaitingResponse
        /// Holding the response body up to the limit.
        case holdingResponse
        /// Waiting for `response_received`'s verdict.
        case decidingResponse
        /// Passing a response body larger than the limit through.
        case streamingResponse
        case closed
    }

    let proxy: HTTPProxy
    private let target: (host: String, port: Int)?
    private var peers: HTTPProxy.Peers
    private var context: ChannelHandlerContext?
    private var state = State.idle
    private var exchange: HTTPProxy.Exchange?
    /// Request parts that arrived while a decision or the upstream connection was pending.
    private var queued: [HTTPServerRequestPart] = []
    private var upstream: (any Channel)?
    private var upstreamKeepAlive = false
    private var response: HTTPResponseHead?
    private var held = ByteBuffer()
    private var sent = 0
    private var registryID = 0

    init(proxy: HTTPProxy, target: (host: String, port: Int)?) {
        self.proxy = proxy
        self.target = target
        peers = HTTPProxy.Peers(client: nil, target: target, binds: false)
    }

    private var settings: ProxySettings { proxy.settings }
    private var kit: MicroserviceKit { proxy.kit }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        peers = HTTPProxy.Peers(client: context.channel.remoteAddress, target: target, binds: proxy.binder != nil)
        let (id, open) = proxy.connections.add(self, on: context.eventLoop)
        registryID = id
        if !open { context.close(promise: nil) }
    }

    /// The proxy is stopping: a connection waiting for its next request closes now (a busy one
    /// closes when its request is done).
    func closeIfIdle() {
        guard case .idle = state, let context else { return }
        state = .closed
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        proxy.connections.remove(registryID)
        state = .closed
        exchange?.span.end()
        exchange = nil
        upstream?.close(promise: nil)
        upstream = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        kit.logger.debug("client connection failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // A slow client: stop reading the upstream until the client takes more.
        pauseUpstream(!context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    // MARK: The request

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        handle(unwrapInboundIn(data), context)
    }

    private func handle(_ part: HTTPServerRequestPart, _ context: ChannelHandlerContext) {
        switch state {
        case .idle:
            guard case .head(var head) = part else { return }
            if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                head.headers.remove(name: "expect")
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            exchange = proxy.begin(
                head, body: ByteBuffer(), complete: false, peers: peers)
            state = .reading
        case .reading:
            switch part {
            case .body(var chunk):
                exchange!.body.writeBuffer(&chunk)
                exchange!.bytesFromClient += chunk.readableBytes
                if exchange!.body.readableBytes > settings.inspectLimit { decideRequest(context) }
            case .end:
                exchange!.complete = true
                decideRequest(context)
            case .head:
                context.close(promise: nil)
            }
        case .deciding:
            queued.append(part)
        case .draining(let reason):
            if case .end = part {
                exchange!.complete = true
                reject(context, status: .forbidden, reason: reason)
            }
        case .streamingRequest:
            forwardRequestPart(part)
        case .awaitingResponse, .holdingResponse, .decidingResponse, .streamingResponse, .closed:
            // The server pipeline holds a pipelined request back until the response is out.
            break
        }
    }

    private func decideRequest(_ context: ChannelHandlerContext) {
        state = .deciding
        // The rest of a large body waits in the socket until the request is on its way.
        if !exchange!.complete { pauseReading(context) }
        guard kit.hub.isHandledElseCounted("request_received") else {
            return allowRequest(context)
        }
        // While the handler decides, what else the client sends waits in the socket.
        pauseReading(context)
        let exchange = self.exchange!
        let attributes = HTTPProxy.requestAttributes(exchange, peers: peers)
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let kit = self.kit
        Task {
            let outcome = await kit.raise(
                "request_received", context: exchange.span.context, attributes: attributes,
                payload: Data(exchange.body.readableBytesView))
            loop.execute {
                let (handler, context) = bound.value
                guard case .deciding = handler.state else { return }
                if outcome.verdict.denied {
                    handler.denyRequest(context, reason: outcome.verdict.reason)
                } else {
                    handler.allowRequest(context)
                }
            }
        }
    }

    private func denyRequest(_ context: ChannelHandlerContext, reason: String) {
        if exchange!.complete {
            reject(context, status: .forbidden, reason: reason)
        } else {
            // The rest of the body is read and dropped first.
            state = .draining(reason: reason)
            let parts = queued
            queued = []
            resumeReading(context)
            for part in parts { handle(part, context) }
        }
    }

    private func allowRequest(_ context: ChannelHandlerContext) {
        guard let target else { return reject(context, status: .badGateway, reason: "the original destination is unknown") }
        if let upstream, upstream.isActive { return sendRequest(context, on: upstream) }
        upstream = nil
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Headers are validated as they come in (the parser is strict); what the proxy
                    // adds is its own, so checking them again on the way out is skipped.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(owner: bound.value.0))
                }
            }
            .connect(host: target.host, port: target.port)
            .whenComplete { result in
                let (handler, context) = bound.value
                guard case .deciding = handler.state else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                switch result {
                case .success(let channel):
                    handler.upstream = channel
                    handler.sendRequest(context, on: channel)
                case .failure(let error):
                    handler.reject(context, status: .badGateway, reason: "cannot reach \(target.host):\(target.port): \(error)")
                }
            }
    }

    private func sendRequest(_ context: ChannelHandlerContext, on upstream: any Channel) {
        let exchange = self.exchange!
        let upstreamSpan = kit.tracer.startSpan("upstream \(exchange.head.method.rawValue)", context: exchange.span.context, ofKind: .client)
        self.exchange!.upstreamSpan = upstreamSpan
        var head = exchange.head
        HTTPProxy.removeHopByHop(&head.headers)
        head.headers.replaceOrAdd(name: "traceparent", value: upstreamSpan.context.spanIdentity?.traceParent?.header ?? "")
        head.version = .http1_1
        upstream.write(HTTPClientRequestPart.head(head), promise: nil)
        if exchange.body.readableBytes > 0 { upstream.write(HTTPClientRequestPart.body(.byteBuffer(exchange.body)), promise: nil) }
        if exchange.complete {
            upstream.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            state = .awaitingResponse
        } else {
            upstream.flush()
            self.exchange!.streamed = true
            state = .streamingRequest
            let parts = queued
            queued = []
            for part in parts { forwardRequestPart(part) }
            resumeReading(context)
        }
    }

    private func forwardRequestPart(_ part: HTTPServerRequestPart) {
        guard let upstream else { return }
        switch part {
        case .body(let chunk):
            exchange!.bytesFromClient += chunk.readableBytes
            upstream.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(chunk)), promise: nil)
            // A slow upstream: stop reading the client until it takes more.
            if !upstream.isWritable, let context { pauseReading(context) }
        case .end:
            upstream.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            exchange!.complete = true
            state = .awaitingResponse
        case .head:
            context?.close(promise: nil)
        }
    }

    /// The upstream can take more of a streamed request body.
    func upstreamWritable(_ writable: Bool) {
        guard case .streamingRequest = state, let context else { return }
        if writable { resumeReading(context) } else { pauseReading(context) }
    }

    private var paused = false
    private var upstreamPaused = false

    private func pauseUpstream(_ pause: Bool) {
        guard pause != upstreamPaused else { return }
        upstreamPaused = pause
        upstream?.setOption(ChannelOptions.autoRead, value: !pause).whenFailure { _ in }
    }

    private func pauseReading(_ context: ChannelHandlerContext) {
        guard !paused else { return }
        paused = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    private func resumeReading(_ context: ChannelHandlerContext) {
        guard paused else { return }
        paused = false
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
    }

    // MARK: The response

    func upstreamRead(_ part: HTTPClientResponsePart) {
        guard let context else { return }
        if case .streamingRequest = state, case .head = part {
            // The upstream answered before the request's body was all there (say, 413): the
            // answer goes to the client, the rest of the body is dropped, the connection closes.
            exchange!.clientKeepAlive = false
            state = .awaitingResponse
        }
        switch (state, part) {
        case (.awaitingResponse, .head(let head)):
            exchange?.upstreamSpan?.setAttribute("http.status_code", .int64(Int64(head.status.code)))
            exchange?.upstreamSpan?.end()
            response = head
            upstreamKeepAlive = head.isKeepAlive
            held.clear()
            state = .holdingResponse
        case (.holdingResponse, .body(var chunk)):
            held.writeBuffer(&chunk)
            if held.readableBytes > settings.inspectLimit {
                // Too large to hold: it streams through, uninspected.
                state = .streamingResponse
                writeResponseHead(context, ended: false)
                sent = held.readableBytes
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(held))), promise: nil)
                held.clear()
                if !context.channel.isWritable { pauseUpstream(true) }
            }
        case (.holdingResponse, .end):
            decideResponse(context)
        case (.streamingResponse, .body(let chunk)):
            sent += chunk.readableBytes
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            if !context.channel.isWritable { pauseUpstream(true) }
        case (.streamingResponse, .end):
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            complete(context, inspected: false)
        default:
            break
        }
    }

    private func decideResponse(_ context: ChannelHandlerContext) {
        state = .decidingResponse
        guard kit.hub.isHandledElseCounted("response_received") else {
            return deliverHeldResponse(context)
        }
        let exchange = self.exchange!
        let head = response!
        var attributes = HTTPProxy.attributes(of: head.headers)
        attributes["http.status"] = "\(head.status.code)"
        attributes["http.url"] = exchange.url
        attributes["http.content_type"] = head.headers.first(name: "content-type") ?? ""
        attributes["http.body_inspected"] = "true"
        let payload = Data(held.readableBytesView)
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let kit = self.kit
        Task {
            let outcome = await kit.raise("response_received", context: exchange.span.context, attributes: attributes, payload: payload)
            loop.execute {
                let (handler, context) = bound.value
                guard case .decidingResponse = handler.state else { return }
                if outcome.verdict.denied {
                    handler.reject(context, status: .forbidden, reason: outcome.verdict.reason)
                } else {
                    handler.deliverHeldResponse(context)
                }
            }
        }
    }

    private func deliverHeldResponse(_ context: ChannelHandlerContext) {
        afterBinding(context) { handler, context in
            handler.writeResponseHead(context, ended: true)
            handler.sent = handler.held.readableBytes
            if handler.held.readableBytes > 0 { context.write(handler.wrapOutboundOut(.body(.byteBuffer(handler.held))), promise: nil) }
            context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: nil)
            handler.complete(context, inspected: true)
        }
    }

    private var clientKeepAlive: Bool {
        guard let exchange else { return false }
        return exchange.clientKeepAlive && exchange.complete
    }

    private func writeResponseHead(_ context: ChannelHandlerContext, ended: Bool) {
        var head = response!
        let exchange = self.exchange!
        let keepAlive = clientKeepAlive && (ended || head.headers.contains(name: "content-length") || exchange.head.version.minor >= 1)
        self.exchange!.clientKeepAlive = keepAlive
        HTTPProxy.removeHopByHop(&head.headers)
        if ended, !head.headers.contains(name: "content-length"), head.status.mayHaveResponseBody {
            head.headers.replaceOrAdd(name: "content-length", value: "\(held.readableBytes)")
        }
        head.headers.replaceOrAdd(name: "connection", value: keepAlive ? "keep-alive" : "close")
        // The session's id, for the client's own logs and `edgetrail trace`.
        head.headers.replaceOrAdd(name: "edgetrail-cookie", value: exchange.cookie.hex)
        head.version = exchange.head.version
        context.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    /// Runs `body` once the flow's binding to the cookie is in place (at once without one).
    private func afterBinding(_ context: ChannelHandlerContext, _ body: @escaping (ProxyConnection, ChannelHandlerContext) -> Void) {
        guard let binding = exchange?.binding else { return body(self, context) }
        exchange?.binding = nil
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context, body), eventLoop: loop)
        Task {
            await binding.value
            loop.execute {
                let (handler, context, body) = bound.value
                body(handler, context)
            }
        }
    }

    /// Answers the client itself: a 403 (denied) or 502 (upstream trouble) page naming the
    /// reason and the cookie.
    private func reject(_ context: ChannelHandlerContext, status: HTTPResponseStatus, reason: String) {
        afterBinding(context) { handler, context in
            guard let exchange = handler.exchange else { return }
            let page = DenyPage.html(status: status, reason: reason, cookie: exchange.cookie, url: exchange.head.uri)
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "text/html; charset=utf-8")
            headers.add(name: "content-length", value: "\(page.utf8.count)")
            headers.add(name: "edgetrail-cookie", value: exchange.cookie.hex)
            headers.add(name: "connection", value: handler.clientKeepAlive ? "keep-alive" : "close")
            context.write(
                handler.wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: status, headers: headers))),
                promise: nil)
            context.write(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: page)))), promise: nil)
            context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: nil)
            exchange.upstreamSpan?.end()
            exchange.span.setAttribute("edgetrail.denied", .bool(status == .forbidden))
            if !reason.isEmpty { exchange.span.setAttribute("edgetrail.reason", .string(reason)) }
            if status != .forbidden { exchange.span.setStatus(SpanStatus(code: .error, message: reason)) }
            handler.proxy.finish(
                exchange, status: Int(status.code), bytes: page.utf8.count, contentType: "text/html", inspected: true,
                attributes: { ["http.status": "\(status.code)", "edgetrail.reason": reason] }, payload: ByteBuffer())
            handler.reset(context, keepAlive: handler.clientKeepAlive, upstreamOpen: handler.upstreamReusableAfterReject)
        }
    }

    /// After a 403 or 502: an upstream connection not in the middle of an exchange stays.
    private var upstreamReusableAfterReject: Bool {
        switch state {
        case .awaitingResponse, .streamingRequest, .holdingResponse, .streamingResponse: false
        case .decidingResponse: upstreamKeepAlive
        default: true
        }
    }

    private func complete(_ context: ChannelHandlerContext, inspected: Bool) {
        guard let exchange, let response else { return }
        let contentType = response.headers.first(name: "content-type") ?? ""
        let held = self.held
        let url = exchange.url
        proxy.finish(
            exchange, status: Int(response.status.code), bytes: sent, contentType: contentType, inspected: inspected,
            attributes: {
                var attributes = HTTPProxy.attributes(of: response.headers)
                attributes["http.status"] = "\(response.status.code)"
                attributes["http.url"] = url
                attributes["http.content_type"] = contentType
                attributes["http.body_inspected"] = "\(inspected)"
                return attributes
            }, payload: inspected ? held : ByteBuffer())
        reset(context, keepAlive: exchange.clientKeepAlive, upstreamOpen: upstreamKeepAlive)
    }

    /// Ready for the next request, or closed.
    private func reset(_ context: ChannelHandlerContext, keepAlive: Bool, upstreamOpen: Bool) {
        exchange = nil
        response = nil
        held.clear()
        queued = []
        sent = 0
        if !upstreamOpen {
            upstream?.close(promise: nil)
            upstream = nil
        }
        if upstreamPaused {
            upstreamPaused = false
            upstream?.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
        guard keepAlive, !proxy.connections.stopping else {
            state = .closed
            context.close(promise: nil)
            return
        }
        state = .idle
        resumeReading(context)
    }

    /// The upstream connection closed.
    func upstreamClosed() {
        guard let context else { return }
        upstream = nil
        switch state {
        case .awaitingResponse:
            // An idle keep-alive connection the upstream had closed: a request held whole is
            // sent again on a new connection, once.
            if let exchange, exchange.complete, !exchange.streamed, !exchange.retried {
                self.exchange!.retried = true
                exchange.upstreamSpan?.end()
                state = .deciding
                allowRequest(context)
            } else {
                reject(context, status: .badGateway, reason: "the upstream closed without a response")
            }
        case .holdingResponse, .streamingResponse, .streamingRequest:
            // Cut off in the middle: the client's connection is closed so it sees the break.
            context.close(promise: nil)
        default:
            break
        }
    }
}


/// Hands the upstream connection's response parts to the client connection (same event loop).
final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private weak var owner: ProxyConnection?

    init(owner: ProxyConnection) {
        self.owner = owner
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner?.upstreamRead(unwrapInboundIn(data))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        owner?.upstreamWritable(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if context.channel === owner?.upstreamChannel { owner?.upstreamClosed() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension ProxyConnection {
    var upstreamChannel: (any Channel)? { upstream }
}
