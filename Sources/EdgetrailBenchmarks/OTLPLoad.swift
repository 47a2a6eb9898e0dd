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

    /// Flow start and end of each cookie, as the replay source reads them (JSON lines).
    public func flowLines() throws -> String {
        var lines = ""
        lines.reserveCapacity(cookies * 2 * 330)
        for index in 0..<cookies {
            for message in flowMessages(index) { lines += try message.jsonString() + "\n" }
        }
        return lines
    }

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

    /// The Redis writes of the cookies in request `index` (their first spans' cookies).
    func snapshotCommands(_ index: Int) -> [[[UInt8]]] {
        let first = index * batch / spansPerCookie
        let last = min(cookies, ((index + 1) * batch + spansPerCookie - 1) / spansPerCookie)
        var commands: [[[UInt8]]] = []
        for cookieIndex in first..<last where (cookieIndex * spansPerCookie) / batch == index {
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
    public func send(to target: EdgetrailCore.Endpoint, redis: EdgetrailCore.Endpoint, concurrency: Int, print say: @Sendable (String) -> Void) async throws {
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
                            let commands = plan.snapshotCommands(index)
                            if !commands.isEmpty { _ = try await Blocking.run { try connection.pipeline(commands) } }
                            let request = plan.request(index)
                            var pause = 10
                            while true {
                                do {
                                    _ = try await traces.export(request)
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
