import EdgetrailCore
import GRPCCore
import Tracing

extension SessionContext {
    /// The session a call's metadata carries.
    public init(_ metadata: Metadata) {
        var pairs: [(name: String, value: String)] = []
        for name in [Self.cookieHeader, Self.traceParentHeader, Self.baggageHeader] {
            for value in metadata[stringValues: name] { pairs.append((name, value)) }
        }
        self.init(metadata: pairs)
    }
}

extension Metadata {
    /// The metadata of a call made on the session's behalf.
    public init(session: SessionContext) {
        self.init()
        for (name, value) in session.metadata() { addString(value, forKey: name) }
    }
}

/// Serves every call of a μsrv's API inside a server span: the cookie, `traceparent` and
/// `baggage` the call arrived with become the span's session and parent, and the handler runs
/// with them as its `ServiceContext`, so what it raises or calls carries them on.
public struct SessionServerInterceptor: ServerInterceptor {
    let tracer: SessionTracer

    public init(tracer: SessionTracer) {
        self.tracer = tracer
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var serviceContext = ServiceContext.current ?? .topLevel
        serviceContext.session = SessionContext(request.metadata)
        let span = tracer.startSpan(
            "\(context.descriptor.service.service)/\(context.descriptor.method)",
            context: serviceContext, ofKind: .server)
        span.setAttribute("rpc.system", .string("grpc"))
        span.setAttribute("rpc.method", .string(context.descriptor.fullyQualifiedMethod))
        do {
            let response = try await ServiceContext.withValue(span.context) {
                try await next(request, context)
            }
            if case .failure(let error) = response.accepted {
                span.setStatus(SpanStatus(code: .error, message: error.message))
                span.setAttribute("rpc.grpc.status_code", .string("\(error.code)"))
            }
            span.end()
            return response
        } catch {
            span.recordError(error)
            span.end()
            throw error
        }
    }
}

/// The session of a call: the cookie in its metadata, or else the one in the request. A call
/// with neither is refused: without a cookie its work could not be joined to any session.
public func sessionCookie(_ requestCookie: UInt64, _ context: inout ServiceContext) throws -> Cookie {
    if let cookie = context.session?.cookie { return cookie }
    guard requestCookie != 0 else {
        throw RPCError(
            code: .invalidArgument,
            message: "the call carries no session cookie: send it as 'edgetrail-cookie' metadata or in the request")
    }
    var session = context.session ?? SessionContext()
    session.cookie = Cookie(requestCookie)
    context.session = session
    return Cookie(requestCookie)
}
