import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailOTLP
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import Tracing

/// An OTLP/gRPC receiver keeping every export request it is sent (decoded, as the collector does).
private final class Receiver: Opentelemetry_Proto_Collector_Trace_V1_TraceService.SimpleServiceProtocol, Sendable {
    let requests = Mutex<[Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest]>([])

    func export(request: Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest, context: ServerContext) async throws
        -> Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse
    {
        requests.withLock { $0.append(request) }
        return Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse()
    }

    var spans: [Opentelemetry_Proto_Trace_V1_Span] {
        requests.withLock { $0.flatMap { $0.resourceSpans.flatMap { $0.scopeSpans.flatMap(\.spans) } } }
    }
}

@Suite("A μsrv's spans as an OTLP receiver gets them")
struct SpanExportTests {
    @Test("a span and its child arrive with their ids, parent, kinds, times, typed attributes, error event and status")
    func spansArriveAsOTLP() async throws {
        let receiver = Receiver()
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
            services: [receiver])
        let serving = Task { try await server.serve() }
        defer {
            server.beginGracefulShutdown()
            serving.cancel()
        }
        let port = try #require(try await server.listeningAddress?.ipv4?.port)
        let exporter = OTLPSpanExporter(
            endpoint: .tcp(host: "127.0.0.1", port: port), resource: [("service.name", "http-proxy"), ("edgetrail.cnf", "demo")],
            logger: Logger(label: "test"), interval: .milliseconds(20))
        let tracer = SessionTracer(exporter: exporter)
        let group = ServiceGroup(services: [exporter], logger: Logger(label: "test"))
        let running = Task { try await group.run() }

        let cookie = Cookie(0x0123_4567_89ab_cdef)
        var context = ServiceContext.topLevel
        context.session = SessionContext(cookie: cookie)
        let parent = tracer.startSpan("HTTP GET", context: context, ofKind: .server)
        parent.setAttribute("http.status_code", .int64(200))
        parent.setAttribute("ratio", .double(0.5))
        parent.setAttribute("http.body_inspected", .bool(false))
        parent.setAttribute("empty", .string(""))
        parent.setAttribute("small", .int32(-3))
        let child = tracer.startSpan("upstream GET", context: parent.context, ofKind: .client)
        struct Refused: Error, CustomStringConvertible { var description: String { "connection refused" } }
        child.recordError(Refused(), attributes: ["attempt": .int64(2)], at: DefaultTracerClock.now)
        child.end()
        parent.end()

        var spans: [Opentelemetry_Proto_Trace_V1_Span] = []
        for _ in 0..<250 where spans.count < 2 {
            try await Task.sleep(for: .milliseconds(20))
            spans = receiver.spans
        }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(exporter.exportCounts.exported == 2)

        let resource = try #require(receiver.requests.withLock { $0.first?.resourceSpans.first })
        #expect(resource.resource.attributes.map { "\($0.key)=\($0.value.stringValue)" } == ["service.name=http-proxy", "edgetrail.cnf=demo"])
        #expect(resource.scopeSpans.first?.scope.name == "edgetrail.microservice")

        let server_ = try #require(spans.first { $0.name == "HTTP GET" })
        let client = try #require(spans.first { $0.name == "upstream GET" })
        #expect(server_.kind == .server && client.kind == .client)
        #expect(server_.traceID.count == 16 && server_.spanID.count == 8)
        #expect(client.traceID == server_.traceID, "one trace")
        #expect(client.parentSpanID == server_.spanID, "the child names its parent")
        #expect(server_.parentSpanID.isEmpty, "a root span has no parent")
        #expect(server_.startTimeUnixNano > 0 && server_.startTimeUnixNano <= client.startTimeUnixNano)
        #expect(client.endTimeUnixNano <= server_.endTimeUnixNano)

        let attributes = Dictionary(uniqueKeysWithValues: server_.attributes.map { ($0.key, $0.value) })
        #expect(attributes["edgetrail.cookie"]?.stringValue == cookie.hex, "every span carries the session cookie")
        #expect(client.attributes.contains { $0.key == "edgetrail.cookie" && $0.value.stringValue == cookie.hex })
        #expect(attributes["http.status_code"]?.value == .intValue(200))
        #expect(attributes["ratio"]?.value == .doubleValue(0.5))
        #expect(attributes["http.body_inspected"]?.value == .boolValue(false), "false is a value, not an absent one")
        #expect(attributes["empty"]?.value == .stringValue(""), "an empty string is a value, not an absent one")
        #expect(attributes["small"]?.value == .intValue(-3))
        #expect(server_.status.code == .unset && server_.events.isEmpty)

        #expect(client.status.code == .error && client.status.message == "connection refused")
        let event = try #require(client.events.first)
        #expect(event.name == "exception" && event.timeUnixNano >= client.startTimeUnixNano)
        let eventAttributes = Dictionary(uniqueKeysWithValues: event.attributes.map { ($0.key, $0.value) })
        #expect(eventAttributes["exception.message"]?.stringValue == "connection refused")
        #expect(eventAttributes["attempt"]?.intValue == 2)
    }
}
