import EdgetrailCore
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

/// Requests with every kind of attribute value, event, status, kind and cookie source.
private func assortedRequests() -> [Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest] {
    func attribute(_ key: String, _ set: (inout Opentelemetry_Proto_Common_V1_AnyValue) -> Void) -> Opentelemetry_Proto_Common_V1_KeyValue {
        var pair = Opentelemetry_Proto_Common_V1_KeyValue()
        pair.key = key
        set(&pair.value)
        return pair
    }
    var nested = Opentelemetry_Proto_Common_V1_AnyValue()
    nested.arrayValue.values = [
        { var v = Opentelemetry_Proto_Common_V1_AnyValue(); v.stringValue = "a"; return v }(),
        { var v = Opentelemetry_Proto_Common_V1_AnyValue(); v.intValue = -3; return v }(),
    ]
    let values: [Opentelemetry_Proto_Common_V1_KeyValue] = [
        attribute("s") { $0.stringValue = "text with ünïcode" },
        attribute("empty") { $0.stringValue = "" },
        attribute("t") { $0.boolValue = true },
        attribute("f") { $0.boolValue = false },
        attribute("i") { $0.intValue = -9_000_000_000 },
        attribute("zero") { $0.intValue = 0 },
        attribute("d") { $0.doubleValue = 2.5e-7 },
        attribute("b") { $0.bytesValue = Data([0, 1, 0xFF]) },
        attribute("array") { $0.arrayValue.values = [nested, nested] },
        attribute("kv") { $0.kvlistValue.values = [attribute("x") { $0.boolValue = true }, attribute("y") { $0 = nested }] },
        attribute("strindex") { $0.stringValueStrindex = 4 },
        Opentelemetry_Proto_Common_V1_KeyValue.with { $0.key = "no value" },
        attribute("s") { $0.stringValue = "the later of two" },
    ]
    var spans: [Opentelemetry_Proto_Trace_V1_Span] = []
    for index in 0..<12 {
        var span = otlpSpan(trace: UInt8(index % 4), id: UInt8(index + 1), parent: index > 0 ? 1 : nil)
        span.attributes += values
        span.kind = Opentelemetry_Proto_Trace_V1_Span.SpanKind(rawValue: index % 7) ?? .unspecified
        span.status.code = [.unset, .ok, .error][index % 3]
        if index % 3 == 2 { span.status.message = "failed #\(index)" }
        span.traceState = "vendor=\(index)"
        span.flags = 0x101
        span.droppedAttributesCount = 2
        var event = Opentelemetry_Proto_Trace_V1_Span.Event()
        event.timeUnixNano = 150
        event.name = "exception"
        event.attributes = [attribute("exception.type") { $0.stringValue = "ValueError" }, attribute("n") { $0.intValue = 1 }]
        span.events = index % 2 == 0 ? [event, Opentelemetry_Proto_Trace_V1_Span.Event()] : []
        var link = Opentelemetry_Proto_Trace_V1_Span.Link()
        link.traceID = Data(repeating: 9, count: 16)
        span.links = [link]
        switch index {
        case 0: span.attributes.insert(attribute("edgetrail.cookie") { $0.stringValue = "00000000000000c1" }, at: 0)
        case 3: span.attributes.append(attribute("edgetrail.cookie") { $0.stringValue = "not a cookie" })
        case 5: span.attributes.append(attribute("edgetrail.cookie") { $0.intValue = 193 })
        case 7:
            span.attributes.append(attribute("edgetrail.cookie") { $0.stringValue = "00000000000000C7" })
            span.attributes.append(attribute("edgetrail.cookie") { $0.stringValue = "00000000000000c8" })
        default: break
        }
        spans.append(span)
    }
    var plain = request(Array(spans.prefix(6)), service: "http-proxy")
    plain.resourceSpans[0].resource.attributes.insert(attribute("service.name") { $0.intValue = 5 }, at: 0)
    plain.resourceSpans[0].resource.attributes.append(attribute("edgetrail.cnf") { $0.stringValue = "other-cnf" })
    var withResourceCookie = request(Array(spans.suffix(6)), service: "policy-mgr")
    withResourceCookie.resourceSpans[0].resource.attributes.append(attribute("edgetrail.cookie") { $0.stringValue = "00000000000000d1" })
    var twoResources = plain
    twoResources.resourceSpans += request(Array(spans[2..<8]), service: "").resourceSpans
    twoResources.resourceSpans[1].resource.attributes.append(attribute("edgetrail.cookie") { $0.boolValue = true })
    twoResources.resourceSpans[1].scopeSpans.append(Opentelemetry_Proto_Trace_V1_ScopeSpans())
    let empty = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest()
    return [plain, withResourceCookie, twoResources, empty, request([otlpSpan(trace: 42, id: 1)])]
}

@Suite("OTLP export requests read from their bytes")
struct OTLPWireTests {
    @Test("reading the bytes gives exactly what decoding with SwiftProtobuf and converting gives, for every policy, with and without baggage")
    func sameAsDecoded() throws {
        let requests = assortedRequests()
        for (policy, holds) in [(NoCookiePolicy.drop, false), (.bucket, false), (.bucket, true)] {
            var decoded = SpanConverter(cnf: "edgesecurity", node: "edge-1", noCookie: policy, holdsTraces: holds)
            var wire = decoded
            for (index, message) in requests.enumerated() {
                let baggage = index == 1 ? "edgetrail.cookie=00000000000000e1;p=1,other=x" : nil
                let expected = decoded.convert(message, baggage: baggage, now: UInt64(index))
                let bytes: [UInt8] = try message.serializedBytes()
                let read = try bytes.withUnsafeBytes { try SpanConverter.read(exportRequest: $0) }
                let got = wire.convert(read, baggage: baggage, now: UInt64(index))
                #expect(got.records == expected.records, "request \(index), \(policy), holding \(holds)")
                #expect(got.droppedWithoutCookie == expected.droppedWithoutCookie)
                #expect(got.bucketedWithoutCookie == expected.bucketedWithoutCookie)
                #expect(got.heldWithoutCookie == expected.heldWithoutCookie)
                #expect(got.malformedCookies == expected.malformedCookies)
                #expect(got.malformedExample == expected.malformedExample)
                #expect(read.spanCount == message.resourceSpans.reduce(0) { $0 + $1.scopeSpans.reduce(0) { $0 + $1.spans.count } })
            }
        }
        // The assortment reaches what it means to: tags of every type, logs, malformed cookies.
        var converter = SpanConverter(cnf: "c", node: "n", noCookie: .bucket)
        let sample = converter.convert(requests[2], now: 0)
        #expect(sample.records.first?.span.tags["kv"] == "{x=true,y=[a,-3]}")
        #expect(sample.records.first?.span.tags["s"] == "the later of two")
        #expect(sample.records.contains { !$0.span.logs.isEmpty })
        #expect(sample.malformedCookies.keys.sorted() == ["not_16_hex_digits", "not_a_string"])
    }

    @Test("a request cut short or with a string that is not UTF-8 is refused, as the generated decoder refuses it")
    func malformedRequests() throws {
        let whole: [UInt8] = try assortedRequests()[0].serializedBytes()
        var badUTF8 = try request([otlpSpan(trace: 1, id: 1)]).serializedBytes() as [UInt8]
        // The span's name "op1" is the only "op1" in the request: make its first byte invalid.
        let at = try #require((0..<(badUTF8.count - 2)).first { badUTF8[$0...].starts(with: Array("op1".utf8)) })
        badUTF8[at] = 0xFF
        for (what, bytes) in [("cut short", Array(whole.prefix(whole.count - 5))), ("not UTF-8", badUTF8)] {
            #expect(throws: (any Error).self, "SwiftProtobuf, \(what)") {
                try Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest(serializedBytes: bytes)
            }
            #expect(throws: ProtobufReader.Malformed.self, "wire reader, \(what)") {
                try bytes.withUnsafeBytes { try SpanConverter.read(exportRequest: $0) }
            }
        }
    }

    @Test("fields of an unexpected wire type are skipped, as the generated decoder skips them")
    func unexpectedWireTypes() throws {
        var bytes = try request([otlpSpan(trace: 1, id: 1, cookie: "00000000000000a1")]).serializedBytes() as [UInt8]
        // A second resource_spans (1) as a varint, and a span name (5) as a fixed64 inside a span.
        bytes += [0x08, 0x01]
        var span = ProtobufWriter()
        span.bytes(1, Data(repeating: 2, count: 16))
        span.fixed64(5, 42)
        span.string(4, "")
        var scope = ProtobufWriter()
        scope.encoded(2, span.bytes)
        var resource = ProtobufWriter()
        resource.encoded(2, scope.bytes)
        var extra = ProtobufWriter()
        extra.encoded(1, resource.bytes)
        bytes += extra.bytes
        let message = try Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest(serializedBytes: bytes)
        var decoded = SpanConverter(cnf: "c", node: "n", noCookie: .bucket)
        var wire = decoded
        let expected = decoded.convert(message, now: 1)
        let got = wire.convert(try bytes.withUnsafeBytes { try SpanConverter.read(exportRequest: $0) }, now: 1)
        #expect(expected.records.count == 2)
        #expect(got.records == expected.records)
    }
}
