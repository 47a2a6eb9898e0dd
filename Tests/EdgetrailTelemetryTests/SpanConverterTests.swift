import EdgetrailOTLP
import EdgetrailProto
import EdgetrailTelemetry
import Foundation
import Testing

private func otlpSpan(trace: UInt8, id: UInt8, parent: UInt8? = nil, cookie: String? = nil)
    -> Opentelemetry_Proto_Trace_V1_Span
{
    var span = Opentelemetry_Proto_Trace_V1_Span()
    span.traceID = Data(repeating: trace, count: 16)
    span.spanID = Data(repeating: id, count: 8)
    if let parent { span.parentSpanID = Data(repeating: parent, count: 8) }
    span.name = "op\(id)"
    span.startTimeUnixNano = 100
    span.endTimeUnixNano = 200
    if let cookie {
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = "edgetrail.cookie"
        attribute.value.stringValue = cookie
        span.attributes.append(attribute)
    }
    var tag = Opentelemetry_Proto_Common_V1_KeyValue()
    tag.key = "http.status_code"
    tag.value.intValue = 200
    span.attributes.append(tag)
    return span
}

private func request(_ spans: [Opentelemetry_Proto_Trace_V1_Span], service: String = "policy-mgr")
    -> Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest
{
    var request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest()
    var resourceSpans = Opentelemetry_Proto_Trace_V1_ResourceSpans()
    var name = Opentelemetry_Proto_Common_V1_KeyValue()
    name.key = "service.name"
    name.value.stringValue = service
    resourceSpans.resource.attributes = [name]
    var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
    scope.spans = spans
    resourceSpans.scopeSpans = [scope]
    request.resourceSpans = [resourceSpans]
    return request
}

@Suite("OTLP span conversion")
struct SpanConverterTests {
    @Test("the cookie attribute keys the span; attributes become tags; the resource names the service")
    func convertsSpans() {
        var converter = SpanConverter(cnf: "edgesecurity", node: "edge-1", noCookie: .drop)
        let result = converter.convert(request([otlpSpan(trace: 1, id: 1, cookie: "00000000000000a1")]), now: 5)
        #expect(result.records.count == 1)
        let record = result.records[0]
        #expect(record.cookie == 0xA1 && record.service == "policy-mgr" && record.cnf == "edgesecurity")
        #expect(record.span.operation == "op1" && record.span.startNs == 100 && record.span.endNs == 200)
        #expect(record.span.tags["http.status_code"] == "200")
    }

    @Test("a span's resource names its CNF (a node's collector serves many); without it, the collector's setting")
    func resourceNamesTheCNF() {
        var converter = SpanConverter(cnf: "default", node: "edge-1", noCookie: .drop)
        var named = request([otlpSpan(trace: 1, id: 1, cookie: "00000000000000a1")])
        var cnf = Opentelemetry_Proto_Common_V1_KeyValue()
        cnf.key = "edgetrail.cnf"
        cnf.value.stringValue = "edgesecurity"
        named.resourceSpans[0].resource.attributes.append(cnf)
        #expect(converter.convert(named, now: 5).records.map(\.cnf) == ["edgesecurity"])
        let unnamed = request([otlpSpan(trace: 2, id: 2, cookie: "00000000000000a2")])
        #expect(converter.convert(unnamed, now: 5).records.map(\.cnf) == ["default"])
    }

    @Test("a span without the attribute takes its trace's cookie, even from an earlier request")
    func traceInheritsCookie() {
        var converter = SpanConverter(cnf: "c", node: "n", noCookie: .drop)
        _ = converter.convert(request([otlpSpan(trace: 7, id: 1, cookie: "00000000000000b7")]), now: 1)
        let later = converter.convert(request([otlpSpan(trace: 7, id: 2, parent: 1)]), now: 2)
        #expect(later.records.map(\.cookie) == [0xB7])
    }

    @Test("W3C baggage on the export call supplies the cookie and is kept on the span")
    func baggage() {
        var converter = SpanConverter(cnf: "c", node: "n", noCookie: .drop)
        let result = converter.convert(
            request([otlpSpan(trace: 3, id: 1)]), baggage: "tenant=x, edgetrail.cookie=00000000000000c3;prop=1", now: 1)
        #expect(result.records.map(\.cookie) == [0xC3])
        #expect(result.records.first?.span.baggage["edgetrail.cookie"] == "00000000000000c3")
    }

    @Test("spans without any cookie are dropped or bucketed under cookie 0, and counted either way")
    func noCookiePolicy() {
        var dropping = SpanConverter(cnf: "c", node: "n", noCookie: .drop)
        let dropped = dropping.convert(request([otlpSpan(trace: 4, id: 1), otlpSpan(trace: 4, id: 2)]), now: 1)
        #expect(dropped.records.isEmpty && dropped.droppedWithoutCookie == 2)
        var bucketing = SpanConverter(cnf: "c", node: "n", noCookie: .bucket)
        let bucketed = bucketing.convert(request([otlpSpan(trace: 5, id: 1)]), now: 1)
        #expect(bucketed.records.map(\.cookie) == [0] && bucketed.bucketedWithoutCookie == 1)
    }

    @Test("a cookie attribute that is not 16 hex digits does not count as a cookie")
    func malformedCookie() {
        var converter = SpanConverter(cnf: "c", node: "n", noCookie: .drop)
        let result = converter.convert(request([otlpSpan(trace: 6, id: 1, cookie: "not-a-cookie")]), now: 1)
        #expect(result.records.isEmpty && result.droppedWithoutCookie == 1)
        #expect(result.malformedCookies == ["not_16_hex_digits": 1] && result.malformedExample == "not-a-cookie")
    }

    @Test("an integer cookie attribute is refused and counted: a cookie is 16 hex digits in a string")
    func integerCookie() {
        var converter = SpanConverter(cnf: "c", node: "n", noCookie: .drop)
        var span = otlpSpan(trace: 6, id: 1)
        var attribute = Opentelemetry_Proto_Common_V1_KeyValue()
        attribute.key = "edgetrail.cookie"
        attribute.value.intValue = 0xB7
        span.attributes.append(attribute)
        let result = converter.convert(request([span]), now: 1)
        #expect(result.records.isEmpty && result.droppedWithoutCookie == 1)
        #expect(result.malformedCookies == ["not_a_string": 1] && result.malformedExample == "183")
    }

    @Test("for a collector that holds traces, a cookie-less span with a trace id goes on with cookie 0; one without a trace id meets the policy")
    func holdingConverter() {
        var converter = SpanConverter(cnf: "c", node: "n", noCookie: .drop, holdsTraces: true)
        var orphan = otlpSpan(trace: 8, id: 2, parent: 1)
        let held = converter.convert(request([orphan]), now: 1)
        #expect(held.records.map(\.cookie) == [0] && held.heldWithoutCookie == 1 && held.droppedWithoutCookie == 0)
        orphan.traceID = Data()
        let dropped = converter.convert(request([orphan]), now: 2)
        #expect(dropped.records.isEmpty && dropped.droppedWithoutCookie == 1)
    }
}
