import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailMicroservice
import EdgetrailProto
import Foundation
import GRPCCore
import EdgetrailRuntime
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The sessions the proxy minted recently, for `GetSession`; the oldest are forgotten first.
final class SessionTable: Sendable {
    private struct State {
        var sessions: [UInt64: Edgetrail_V1_Session] = [:]
        var order: [UInt64] = []
        var head = 0
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    func put(_ session: Edgetrail_V1_Session) {
        state.withLock { state in
            state.sessions[session.cookie] = session
            state.order.append(session.cookie)
            if state.order.count - state.head > capacity {
                state.sessions[state.order[state.head]] = nil
                state.head += 1
                if state.head >= capacity {
                    state.order.removeFirst(state.head)
                    state.head = 0
                }
            }
        }
    }

    func get(_ cookie: UInt64) -> Edgetrail_V1_Session? { state.withLock { $0.sessions[cookie] } }
}

/// The open client connections, so that stopping closes the idle ones at once and the busy ones
/// after their current request.
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [Int: (channel: any Channel, idle: Bool)] = [:]
        var next = 0
        var stopping = false
    }

    private let state = Mutex(State())

    func add(_ channel: any Channel) -> Int {
        state.withLock { state in
            state.next += 1
            state.channels[state.next] = (channel, false)
            return state.next
        }
    }

    func remove(_ id: Int) { state.withLock { _ = $0.channels.removeValue(forKey: id) } }

    /// Marks a connection idle (waiting for its next request) or busy; an idle connection of a
    /// stopping proxy is closed.
    func setIdle(_ id: Int, _ idle: Bool) {
        let close = state.withLock { state -> (any Channel)? in
            state.channels[id]?.idle = idle
            return idle && state.stopping ? state.channels[id]?.channel : nil
        }
        close?.close(promise: nil)
    }

    var stopping: Bool { state.withLock { $0.stopping } }

    func stop() {
        let idle = state.withLock { state in
            state.stopping = true
            return state.channels.values.filter(\.idle).map(\.channel)
        }
        for channel in idle { channel.close(promise: nil) }
    }
}

/// Binds client flows to their session's cookie through the node's Datapath Manager, off the
/// request path (the binding is kept for a flow not yet seen, so it may arrive late).
public final class FlowBinder: Service, Sendable {
    let socket: String
    let logger: Logger
    /// At most one warning per 10 s while the failure lasts.
    private let warnings = LogThrottle()
    private let queue = WorkQueue<(Edgetrail_V1_FiveTuple, Cookie)>(capacity: 10_000)
    private let failures = Atomic<Int>(0)

    init(socket: String, logger: Logger) {
        self.socket = socket
        self.logger = logger
    }

    func bind(_ tuple: Edgetrail_V1_FiveTuple, to cookie: Cookie) {
        _ = queue.add((tuple, cookie))
        queue.wake()
    }

    /// The client's TCP flow to `host:port` (IPv4).
    static func tuple(client: SocketAddress, host: String, port: Int) -> Edgetrail_V1_FiveTuple? {
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

    public func run() async throws {
        let stopping = Atomic<Bool>(false)
        await withGracefulShutdownHandler {
            while !stopping.load(ordering: .acquiring) {
                if let batch = queue.takeBatch(256) {
                    do {
                        try await DatapathManagerClient.with(socket: socket) { client in
                            for (tuple, cookie) in batch {
                                var request = Edgetrail_V1_BindFlowRequest()
                                request.tuple = tuple
                                request.cookie = cookie.rawValue
                                _ = try await client.bindFlow(request)
                            }
                        }
                    } catch {
                        failures.add(batch.count, ordering: .relaxed)
                        if warnings.due() {
                            logger.warning(
                                "cannot bind client flows to their cookies; their flow events will lack the cookie",
                                metadata: ["error": "\(DatapathManagerClient.explain(error, socket: socket))"])
                        }
                    }
                }
                await queue.wait(upTo: .milliseconds(100))
            }
        } onGracefulShutdown: {
            stopping.store(true, ordering: .releasing)
            self.queue.wake()
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
