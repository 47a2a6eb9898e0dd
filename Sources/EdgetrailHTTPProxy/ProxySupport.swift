import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailMicroservice
import EdgetrailProto
import DequeModule
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import EdgetrailRuntime
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The sessions the proxy minted recently, for `GetSession`; the oldest are forgotten first.
final class SessionTable: Sendable {
    /// What the proxy keeps of a session (the wire message is made only when asked for).
    struct Entry: Sendable {
        var cookie: Cookie
        var client: String
        var origin: String
        var method: String
        var url: String
        var headers: HTTPHeaders
        var startedAtNanoseconds: UInt64

        var message: Edgetrail_V1_Session {
            var message = Edgetrail_V1_Session()
            message.cookie = cookie.rawValue
            message.client = client
            message.origin = origin
            message.method = method
            message.url = url
            message.startedAtNs = startedAtNanoseconds
            for header in headers { message.headers[header.name.lowercased()] = header.value }
            return message
        }
    }

    private struct State {
        var sessions: [UInt64: Entry] = [:]
        var order = Deque<UInt64>()
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    func put(_ entry: Entry) {
        state.withLock { state in
            state.sessions[entry.cookie.rawValue] = entry
            state.order.append(entry.cookie.rawValue)
            if state.order.count > capacity, let oldest = state.order.popFirst() { state.sessions[oldest] = nil }
        }
    }

    func get(_ cookie: UInt64) -> Entry? { state.withLock { $0.sessions[cookie] } }
}

/// The open client connections, so that stopping closes the idle ones at once and the busy ones
/// after their current request. Whether a connection is idle is its own business, on its event
/// loop (no lock per request): stopping asks each one there.
final class ConnectionRegistry: Sendable {
    private struct State {
        var connections: [Int: NIOLoopBound<ProxyConnection>] = [:]
        var next = 0
    }

    private let state = Mutex(State())
    private let stoppingFlag = Atomic<Bool>(false)

    /// Registers a connection (on its event loop); false when the proxy is stopping, and then
    /// the connection should close.
    func add(_ connection: ProxyConnection, on loop: any EventLoop) -> (id: Int, open: Bool) {
        let id = state.withLock { state in
            state.next += 1
            state.connections[state.next] = NIOLoopBound(connection, eventLoop: loop)
            return state.next
        }
        return (id, !stopping)
    }

    func remove(_ id: Int) { state.withLock { _ = $0.connections.removeValue(forKey: id) } }

    var stopping: Bool { stoppingFlag.load(ordering: .acquiring) }

    var count: Int { state.withLock { $0.connections.count } }

    func stop() {
        stoppingFlag.store(true, ordering: .releasing)
        let connections = state.withLock { Array($0.connections.values) }
        for connection in connections {
            connection.eventLoop.execute { connection.value.closeIfIdle() }
        }
    }
}

/// Binds client flows to their session's cookie through the node's Datapath Manager, off the
/// request path (the binding is kept for a flow not yet seen, so it may arrive late).
public final class FlowBinder: Service, Sendable {
    let socket: String
    let logger: Logger
    /// At most one warning per 10 s while the failure lasts.
    private let warnings = LogThrottle()
    private let client = Mutex<DatapathManagerClient.Client?>(nil)
    private let failures = Atomic<Int>(0)

    init(socket: String, logger: Logger) {
        self.socket = socket
        self.logger = logger
    }

    /// Binds a flow to a cookie; returns once the manager has it, or after a short deadline (a
    /// failure is counted and logged, never the request's problem). The proxy starts this when
    /// a request arrives and waits for it only before answering: the client cannot end its flow
    /// before it has its answer, so the flow's end event carries the cookie.
    func bind(_ tuple: Edgetrail_V1_FiveTuple, to cookie: Cookie) async {
        guard let client = client.withLock({ $0 }) else { return noteFailure("the Datapath Manager is not connected yet") }
        var request = Edgetrail_V1_BindFlowRequest()
        request.tuple = tuple
        request.cookie = cookie.rawValue
        var options = CallOptions.defaults
        options.timeout = .milliseconds(250)
        do {
            _ = try await client.bindFlow(request, options: options)
        } catch {
            noteFailure(DatapathManagerClient.explain(error, socket: socket))
        }
    }

    private func noteFailure(_ why: String) {
        failures.add(1, ordering: .relaxed)
        if warnings.due() {
            logger.warning("cannot bind client flows to their cookies; their flow events will lack the cookie", metadata: ["error": "\(why)"])
        }
    }

    /// The client's TCP flow to `host:port` (IPv4).
    static func tuple(client: NIOCore.SocketAddress, host: String, port: Int) -> Edgetrail_V1_FiveTuple? {
        guard let clientIP = client.ipAddress.flatMap(IPPrefix.parseAddress), clientIP.count == 4,
            let targetIP = IPPrefix.parseAddress(host), targetIP.count == 4, let clientPort = client.port
        else { return nil }
        var tuple = Edgetrail_V1_FiveTuple()
        tuple.srcIp = Data(clientIP)
        tuple.dstIp = Data(targetIP)
        tuple.srcPort = UInt32(clientPort)
        tuple.dstPort = UInt32(port)
        tuple.protocol = 6
        return tuple
    }

    /// Keeps one connection to the manager (reconnecting as gRPC does) until shutdown.
    public func run() async throws {
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { grpc in
            client.withLock { $0 = DatapathManagerClient.Client(wrapping: grpc) }
            try? await gracefulShutdown()
            client.withLock { $0 = nil }
        }
    }
}

/// The page a client gets instead of what it asked for.
enum DenyPage {
    static func html(status: HTTPResponseStatus, reason: String, cookie: Cookie, url: String) -> String {
        let title = status == .forbidden ? "Blocked" : "Cannot reach the site"
        let why = reason.isEmpty ? (status == .forbidden ? "denied by policy" : "upstream error") : reason
        return """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>\(status.code) \(title)</title></head>
            <body><h1>\(status.code) \(title)</h1>
            <p>\(escape(url)) was not delivered: <strong>\(escape(why))</strong></p>
            <p>Session cookie: <code>\(cookie.hex)</code> (<code>edgetrail trace \(cookie.hex)</code> shows what happened)</p>
            </body></html>

            """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// http-proxy's API: `GetSession` answers what the proxy knows of a recent session.
public struct HTTPProxyService: Edgetrail_V1_HttpProxy.SimpleServiceProtocol {
    let proxy: HTTPProxy

    public init(proxy: HTTPProxy) {
        self.proxy = proxy
    }

    public func getSession(request: Edgetrail_V1_GetSessionRequest, context: ServerContext) async throws
        -> Edgetrail_V1_Session
    {
        guard let session = proxy.session(Cookie(request.cookie)) else {
            throw RPCError(
                code: .notFound, message: "no recent session \(Cookie(request.cookie).hex) (the proxy keeps the last 10,000)")
        }
        return session
    }
}
