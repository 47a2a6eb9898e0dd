import EdgetrailCore
import EdgetrailOTLP
import EdgetrailProto
import EdgetrailRedis
import EdgetrailRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

/// The load `edgetrail bench collector --otlp` sends: sessions whose spans come as OpenTelemetry
/// SDKs export them (batches of `batch` spans, one resource per request, the attributes the SDK
/// and its HTTP instrumentation set), with Redis snapshots and flow events of the same cookies.
/// Deterministic: the benchmark rebuilds the very same requests for its floor.
public struct OTLPLoad: Sendable {
    public var cookies: Int
    public var spansPerCookie = 8
    public var batch = 512
    public var snapshotsPerCookie = 2
    /// The sessions' time; flows and spans of cookie i start at `base + i µs`.
    public var base: UInt64 = 1_796_000_000_000_000_000

    public init(cookies: Int) {
        self.cookies = cookies
    }

    static let services = ["http-proxy", "policy-mgr", "content-inspect", "anti-virus"]
    static let operations = ["GET /catalog", "policy_mgr.check", "content_inspect.inspect", "anti_virus.scan"]

    public var spans: Int { cookies * spansPerCookie }
    public var requests: Int { (spans + batch - 1) / batch }
    /// Records the collector ships for the whole load: every span, two flow events and the
    /// snapshots of each cookie.
    public var records: Int { cookies * (spansPerCookie + 2 + snapshotsPerCookie) }

    public func cookie(_ index: Int) -> UInt64 { 0x00E7_0000_0000_0000 | UInt64(index + 1) }

    /// Request `index`: spans `index * batch ..< (index + 1) * batch`, cookie-major, from one
    /// μsrv's SDK (its resource).
    public func request(_ index: Int) -> Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest {
        let service = Self.services[index % Self.services.count]
        var resource = Opentelemetry_Proto_Resource_V1_Resource()
        resource.attributes = [
            Self.attribute("service.name", service),
            Self.attribute("service.instance.id", "\(service)-\(index % 3)"),
            Self.attribute("telemetry.sdk.name", "opentelemetry"),
            Self.attribute("telemetry.sdk.language", "python"),
            Self.attribute("telemetry.sdk.version", "1.45.2"),
            Self.attribute("edgetrail.cnf", "edgesecurity"),
            Self.attribute("edgetrail.microservice", service),
        ]
        var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
        scope.scope.name = "edgetrail.sdk"
        scope.scope.version = "0.1.0"
        let first = index * batch
        let last = min(spans, first + batch)
        scope.spans.reserveCapacity(last - first)
        for number in first..<last {
            scope.spans.append(span(number, service: service))
        }
        var resourceSpans = Opentelemetry_Proto_Trace_V1_ResourceSpans()
        resourceSpans.resource = resource
        resourceSpans.scopeSpans = [scope]
        resourceSpans.schemaURL = "https://opentelemetry.io/schemas/1.26.0"
        var request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest()
        request.resourceSpans = [resourceSpans]
        return request
    }

    func span(_ number: Int, service: String) -> Opentelemetry_Proto_Trace_V1_Span {
        let index = number / spansPerCookie
        let position = number % spansPerCookie
        let cookie = cookie(index)
        let start = base + UInt64(index) * 1000 + UInt64(position) * 100
        var span = Opentelemetry_Proto_Trace_V1_Span()
        span.traceID = Self.bytes(cookie, cookie &* 0x9E37_79B9_7F4A_7C15)
        span.spanID = Self.bytes(cookie &* 31 &+ UInt64(position))
        if position > 0 { span.parentSpanID = Self.bytes(cookie &* 31) }
        span.name = Self.operations[position % Self.operations.count]
        span.kind = position == 0 ? .server : .client
        span.startTimeUnixNano = start
        span.endTimeUnixNano = start + 80
        span.flags = 0x101
        span.status.code = position == spansPerCookie - 1 && index % 50 == 0 ? .error : .ok
        span.attributes = [
            Self.attribute("edgetrail.cookie", Cookie(cookie).hex),
            Self.attribute("http.request.method", "GET"),
            Self.attribute("url.full", "http://10.201.0.2/catalog/item/\(index % 1000)?q=\(position)"),
            Self.attribute("server.address", "10.201.0.2"),
            Self.attribute("network.peer.address", "10.200.0.2"),
            Self.intAttribute("http.response.status_code", 200),
            Self.attribute("user_agent.original", "curl/7.88.1"),
            Self.attribute("thread.name", "MainThread"),
        ]
        return span
    }

    /// The flow start and end of cookie `index`, as the Datapath Manager reports them.
    func flowMessages(_ index: Int) -> [Edgetrail_V1_FlowEventMessage] {
        var start = Edgetrail_V1_FlowEventMessage()
        start.cookie = cookie(index)
        start.node = "bench-node"
        start.event.phase = .start
        start.event.action = .redirect
        start.event.tuple.srcIp = Data([10, 200, UInt8(truncatingIfNeeded: index >> 8), UInt8(truncatingIfNeeded: index)])
        start.event.tuple.dstIp = Data([10, 201, 0, 2])
        start.event.tuple.srcPort = UInt32(1024 + index % 60000)
        start.event.tuple.dstPort = 80
        start.event.tuple.protocol = 6
        start.event.startNs = base + UInt64(index) * 1000
        var end = start
        end.event.phase = .end
        end.event.endNs = start.event.startNs + 900
        end.event.packetsIn = 6
        end.event.packetsOut = 5
        end.event.bytesIn = 420
        end.event.bytesOut = 5120
        return [start, end]
    }

    /// The cookies whose first span is in request `index`: their flows and Redis writes go out
    /// just before it, so a session's records arrive together as they would from a node.
    func cookiesStarting(in index: Int) -> Range<Int> {
        let first = (index * batch + spansPerCookie - 1) / spansPerCookie
        let end = min(cookies, ((index + 1) * batch + spansPerCookie - 1) / spansPerCookie)
        return first..<max(first, end)
    }

    /// The Redis writes of the cookies starting in request `index`.
    func snapshotCommands(_ index: Int) -> [[[UInt8]]] {
        var commands: [[[UInt8]]] = []
        for cookieIndex in cookiesStarting(in: index) {
            for number in 0..<snapshotsPerCookie {
                let key = "\(Cookie(cookie(cookieIndex)).redisKeyPrefix)http-proxy:state\(number)"
                commands.append([Array("SET".utf8), Array(key.utf8), Array("session-\(cookieIndex)-step-\(number)".utf8)])
            }
        }
        return commands
    }

    static func attribute(_ key: String, _ value: String) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = key
        attribute.value.stringValue = value
        return attribute
    }

    static func intAttribute(_ key: String, _ value: Int64) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = key
        attribute.value.intValue = value
        return attribute
    }

    static func bytes(_ values: UInt64...) -> Data {
        var data = Data()
        for value in values { withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) } }
        return data
    }

    /// Sends the whole load to the collector at `target` (`concurrency` export calls at a time, as
    /// several μsrvs' SDKs would), writing each request's Redis snapshots just before it; an
    /// export the collector refuses (busy, its intake full) is sent again after a pause, as the
    /// SDK's retry does. Prints one line when done.
    public func send(
        to target: EdgetrailCore.Endpoint, redis: EdgetrailCore.Endpoint, flows: FlowFeed, concurrency: Int, print say: @Sendable (String) -> Void
    ) async throws {
        let transport: HTTP2ClientTransport.Posix
        switch target {
        case .tcp(let host, let port):
            transport = try HTTP2ClientTransport.Posix(target: .dns(host: host, port: port), transportSecurity: .plaintext)
        case .unix(let path):
            transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
        }
        let next = Counter()
        let retries = Counter()
        let started = Date()
        let plan = self
        try await withGRPCClient(transport: transport) { client in
            let traces = Opentelemetry_Proto_Collector_Trace_V1_TraceService.Client(wrapping: client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        let connection = try RedisConnection(redis)
                        while true {
                            let index = next.value.add(1, ordering: .relaxed).oldValue
                            guard index < plan.requests else { return }
                            // A connection starts before its spans and ends after them, as on a node.
                            let starting = plan.cookiesStarting(in: index)
                            flows.publish(starting.map { plan.flowMessages($0)[0] })
                            let commands = plan.snapshotCommands(index)
                            if !commands.isEmpty { _ = try await Blocking.run { try connection.pipeline(commands) } }
                            let request = plan.request(index)
                            var pause = 10
                            while true {
                                do {
                                    _ = try await traces.export(request)
                                    flows.publish(starting.map { plan.flowMessages($0)[1] })
                                    break
                                } catch {
                                    retries.value.add(1, ordering: .relaxed)
                                    try await Task.sleep(for: .milliseconds(pause))
                                    pause = min(pause * 2, 500)
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        say(
            String(
                format: "sent requests=%d spans=%d seconds=%.2f retries=%d", requests, spans, Date().timeIntervalSince(started),
                retries.value.load(ordering: .relaxed)))
    }
}

/// A count several tasks share.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// The generator's stand-in for a node's Datapath Manager: serves the manager's gRPC API on a
/// Unix socket so the collector's flow source follows it as on a node, and streams the flow
/// events the generator publishes (binary, numbered, as the manager sends them). It carries load;
/// the datapath itself is measured by `bench datapath`.
public final class FlowFeed: Edgetrail_V1_DatapathManager.SimpleServiceProtocol, Sendable {
    private let state = Mutex<(sequence: UInt64, pending: [Edgetrail_V1_FlowEventMessage], subscribers: [AsyncStream<[Edgetrail_V1_FlowEventMessage]>.Continuation])>(
        (0, [], []))
    static let run: UInt64 = 0xB0_7C4E

    public init() {}

    /// True once the collector follows the feed.
    public var followed: Bool { state.withLock { !$0.subscribers.isEmpty } }

    /// Numbers `messages` and hands them to the subscriber (held until one subscribes).
    func publish(_ messages: [Edgetrail_V1_FlowEventMessage]) {
        state.withLock { state in
            var numbered = messages
            for index in numbered.indices {
                state.sequence += 1
                numbered[index].sequence = state.sequence
                numbered[index].managerRun = Self.run
            }
            if state.subscribers.isEmpty {
                state.pending += numbered
            } else {
                for subscriber in state.subscribers { subscriber.yield(numbered) }
            }
        }
    }

    public func streamEvents(
        request: Edgetrail_V1_StreamEventsRequest, response: RPCWriter<Edgetrail_V1_FlowEventMessage>, context: ServerContext
    ) async throws {
        let (stream, continuation) = AsyncStream<[Edgetrail_V1_FlowEventMessage]>.makeStream()
        state.withLock { state in
            if !state.pending.isEmpty { continuation.yield(state.pending) }
            state.pending = []
            state.subscribers.append(continuation)
        }
        for await messages in stream { try await response.write(contentsOf: messages) }
    }

    public func stats(request: Edgetrail_V1_StatsRequest, context: ServerContext) async throws -> Edgetrail_V1_StatsResponse {
        var answer = Edgetrail_V1_StatsResponse()
        answer.managerRun = Self.run
        return answer
    }

    public func listRules(request: Edgetrail_V1_ListRulesRequest, context: ServerContext) async throws -> Edgetrail_V1_ListRulesResponse {
        Edgetrail_V1_ListRulesResponse()
    }

    public func applyRules(request: Edgetrail_V1_ApplyRulesRequest, context: ServerContext) async throws -> Edgetrail_V1_ApplyRulesResponse {
        throw RPCError(code: .unimplemented, message: "the benchmark's flow feed has no rules")
    }

    public func bindFlow(request: Edgetrail_V1_BindFlowRequest, context: ServerContext) async throws -> Edgetrail_V1_BindFlowResponse {
        throw RPCError(code: .unimplemented, message: "the benchmark's flow feed binds nothing")
    }

    /// Serves on `socket` while `body` runs (the stream stays open after: the collector must not
    /// see its Datapath Manager go away in the middle of a measurement).
    public func serve<Result: Sendable>(on socket: String, _ body: @Sendable @escaping () async throws -> Result) async throws -> Result {
        try? FileManager.default.removeItem(atPath: socket)
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: socket), transportSecurity: .plaintext), services: [self])
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                try await server.serve()
                return nil
            }
            defer { server.beginGracefulShutdown() }
            _ = try await server.listeningAddress
            return try await body()
        }
    }
}
