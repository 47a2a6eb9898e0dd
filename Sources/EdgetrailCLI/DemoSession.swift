import EdgetrailCore
import EdgetrailOTLP
import EdgetrailProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf

/// One simulated client session for the demo: what the edgesecurity CNF's μsrvs would report.
struct DemoSession {
    let cookie: Cookie
    /// When the session began; the spans' times are offsets from it.
    var started = UInt64(Date().timeIntervalSince1970 * 1e9)

    /// Flow start and end of the client's connection, as the datapath records them (JSON lines).
    func flowRecording() throws -> String {
        var lines: [String] = []
        for phase in [Edgetrail_V1_FlowPhase.start, .end] {
            var message = Edgetrail_V1_FlowEventMessage()
            message.cookie = cookie.rawValue
            message.node = "edge-1"
            message.event.phase = phase
            message.event.action = .redirect
            message.event.tuple.srcIp = Data([10, 200, 0, 2])
            message.event.tuple.dstIp = Data([10, 201, 0, 2])
            message.event.tuple.srcPort = 41000
            message.event.tuple.dstPort = 80
            message.event.tuple.protocol = 6
            message.event.startNs = started
            if phase == .end {
                message.event.endNs = started + 14_000_000
                message.event.packetsIn = 7
                message.event.packetsOut = 9
                message.event.bytesIn = 512
                message.event.bytesOut = 6_144
                message.event.endReason = .fin
            }
            lines.append(try message.jsonString())
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Exports the session's spans over OTLP/gRPC, like an OpenTelemetry SDK in each μsrv:
    /// http-proxy's request with policy-mgr's check and content-inspect's inspection inside it.
    func exportSpans(host: String, port: Int, infected: Bool) async throws {
        let traceID = Data((0..<16).map { _ in UInt8.random(in: 0...255) })
        let rootID = Data((0..<8).map { _ in UInt8.random(in: 0...255) })
        func span(_ name: String, id: Data, parent: Data?, from: UInt64, to: UInt64, error: Bool = false)
            -> Opentelemetry_Proto_Trace_V1_Span
        {
            var span = Opentelemetry_Proto_Trace_V1_Span()
            span.traceID = traceID
            span.spanID = id
            if let parent { span.parentSpanID = parent }
            span.name = name
            span.kind = parent == nil ? .server : .internal
            span.startTimeUnixNano = started + from
            span.endTimeUnixNano = started + to
            var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
            attribute.key = "edgetrail.cookie"
            attribute.value.stringValue = cookie.hex
            span.attributes.append(attribute)
            if error {
                span.status.code = .error
                span.status.message = "infected"
            }
            return span
        }
        func resource(_ service: String, _ spans: [Opentelemetry_Proto_Trace_V1_Span])
            -> Opentelemetry_Proto_Trace_V1_ResourceSpans
        {
            var resourceSpans = Opentelemetry_Proto_Trace_V1_ResourceSpans()
            var name = Opentelemetry_Proto_Common_V1_KeyValue()
            name.key = "service.name"
            name.value.stringValue = service
            resourceSpans.resource.attributes = [name]
            var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
            scope.spans = spans
            resourceSpans.scopeSpans = [scope]
            return resourceSpans
        }
        var request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest()
        request.resourceSpans = [
            resource(
                "policy-mgr",
                [span("policy_check", id: Data((0..<8).map { _ in 1 }), parent: rootID, from: 600_000, to: 2_700_000)]),
            resource(
                "content-inspect",
                [
                    span(
                        "inspect", id: Data((0..<8).map { _ in 2 }), parent: rootID, from: 9_000_000, to: 11_500_000,
                        error: infected)
                ]),
            resource("http-proxy", [span("request", id: rootID, parent: nil, from: 400_000, to: 13_000_000)]),
        ]
        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(address: host, port: port), transportSecurity: .plaintext)
        ) { client in
            let traces = Opentelemetry_Proto_Collector_Trace_V1_TraceService.Client(wrapping: client)
            _ = try await traces.export(request)
        }
    }
}
