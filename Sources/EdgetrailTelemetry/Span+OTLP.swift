import EdgetrailCore
import EdgetrailOTLP
import EdgetrailProto
import Foundation

/// The attribute (and W3C baggage entry) that carries the session cookie.
public let cookieAttributeKey = SessionContext.cookieBaggageKey

/// What to do with a span that carries no cookie (and whose trace has none either).
public enum NoCookiePolicy: String, Sendable, CaseIterable {
    /// Drop it (counted).
    case drop
    /// Keep it under cookie 0000000000000000, the "no cookie" bucket (counted).
    case bucket
}

/// Remembers which cookie each recent trace belongs to, so a span that lacks the attribute
/// (a child span in handler code, say) still joins its session. Bounded: oldest traces go first.
public struct TraceCookieCache: Sendable {
    private var cookies: [Data: UInt64] = [:]
    private var order: [Data] = []
    private var head = 0
    public let capacity: Int

    public init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    public func cookie(forTrace traceID: Data) -> UInt64? { cookies[traceID] }

    public mutating func remember(_ cookie: UInt64, forTrace traceID: Data) {
        if cookies.updateValue(cookie, forKey: traceID) != nil { return }
        order.append(traceID)
        if order.count - head > capacity {
            cookies[order[head]] = nil
            head += 1
            if head > capacity {
                order.removeFirst(head)
                head = 0
            }
        }
    }
}

/// The outcome of converting one OTLP export request.
public struct ConvertedSpans: Sendable {
    public var records: [Edgetrail_V1_Record] = []
    /// Spans without a cookie that were dropped, or kept in the "no cookie" bucket.
    public var droppedWithoutCookie = 0
    public var bucketedWithoutCookie = 0
    /// Spans without a cookie handed on with cookie 0 and their trace id, for the collector to
    /// hold until a span of the trace brings the cookie (`holdsTraces`).
    public var heldWithoutCookie = 0
    /// `edgetrail.cookie` attributes that were there but not a cookie, by reason (the span is
    /// then taken as having none): `not_16_hex_digits`, `not_a_string`.
    public var malformedCookies: [String: Int] = [:]
    /// One malformed value, for the log line.
    public var malformedExample: String?

    mutating func noteMalformed(_ malformed: MalformedCookie?) {
        guard let malformed else { return }
        malformedCookies[malformed.reason, default: 0] += 1
        if malformedExample == nil { malformedExample = malformed.value }
    }
}

/// Converts OTLP spans into Edgetrail span records, finding each span's cookie in its
/// `edgetrail.cookie` attribute, its resource's, the export call's W3C baggage, or another
/// span of the same trace.
public struct SpanConverter: Sendable {
    public var cnf: String
    public var node: String
    public var noCookie: NoCookiePolicy
    /// When true, a cookie-less span with a trace id is handed on with cookie 0 (for a
    /// `TraceHold`), and `noCookie` applies only to spans without a trace id.
    public var holdsTraces: Bool
    public var traces = TraceCookieCache()

    public init(cnf: String, node: String, noCookie: NoCookiePolicy, holdsTraces: Bool = false) {
        self.cnf = cnf
        self.node = node
        self.noCookie = noCookie
        self.holdsTraces = holdsTraces
    }

    /// - Parameters:
    ///   - baggage: the export call's `baggage` header, if any (W3C format).
    public mutating func convert(
        _ request: Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest, baggage: String? = nil,
        now: UInt64
    ) -> ConvertedSpans {
        convert(Self.read(request), baggage: baggage, now: now)
    }

    /// Converts an export request already read (`read(exportRequest:)` reads one from its bytes).
    public mutating func convert(_ export: ReadExport, baggage: String? = nil, now: UInt64) -> ConvertedSpans {
        let callCookie = baggage.flatMap(Self.cookie(fromBaggage:))
        // First pass: learn each trace's cookie from the spans that carry one.
        // SDKs export a trace's spans side by side: each run of them is remembered once.
        var last: (trace: Data, cookie: UInt64)?
        for resource in export.resources {
            let resourceCookie = resource.cookie
            for read in resource.spans {
                guard let cookie = read.cookie ?? resourceCookie ?? callCookie else { continue }
                if let last, last.cookie == cookie, last.trace == read.span.traceID { continue }
                traces.remember(cookie, forTrace: read.span.traceID)
                last = (read.span.traceID, cookie)
            }
        }
        var result = ConvertedSpans()
        result.records.reserveCapacity(export.spanCount)
        for resource in export.resources {
            // A span says which CNF it belongs to (its resource's `edgetrail.cnf`, as the μsrvs
            // and the SDK set it): a node's collector serves every CNF on the node.
            let spanCNF = resource.cnf.flatMap { $0.isEmpty ? nil : $0 } ?? cnf
            let service = resource.service ?? ""
            let resourceCookie = resource.cookie
            result.noteMalformed(resource.malformed)
            for read in resource.spans {
                result.noteMalformed(read.malformed)
                let fromBaggage = read.cookie == nil && resourceCookie == nil && callCookie != nil
                var cookie = read.cookie ?? resourceCookie ?? callCookie
                    ?? traces.cookie(forTrace: read.span.traceID)
                if cookie == nil, holdsTraces, !read.span.traceID.isEmpty {
                    result.heldWithoutCookie += 1
                    cookie = 0
                } else if cookie == nil {
                    switch noCookie {
                    case .drop:
                        result.droppedWithoutCookie += 1
                        continue
                    case .bucket:
                        result.bucketedWithoutCookie += 1
                        cookie = 0
                    }
                }
                var record = Edgetrail_V1_Record()
                record.cookie = cookie!
                record.cnf = spanCNF
                record.node = node
                record.service = service
                record.acceptedAtNs = now
                record.span = read.span
                if fromBaggage { record.span.baggage[cookieAttributeKey] = Cookie(cookie!).hex }
                result.records.append(record)
            }
        }
        return result
    }

    /// A decoded request in the form `convert` takes.
    static func read(_ request: Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest) -> ReadExport {
        var export = ReadExport()
        for resourceSpans in request.resourceSpans {
            let attributes = resourceSpans.resource.attributes
            var resource = ReadResource(
                service: string(named: "service.name", in: attributes), cnf: string(named: "edgetrail.cnf", in: attributes))
            resource.set(cookieAttribute(in: attributes))
            for scopeSpans in resourceSpans.scopeSpans {
                for span in scopeSpans.spans {
                    resource.spans.append(ReadSpan(span: Self.span(from: span), attribute: cookieAttribute(in: span.attributes)))
                }
            }
            export.spanCount += resource.spans.count
            export.resources.append(resource)
        }
        return export
    }

    static func span(from otlp: Opentelemetry_Proto_Trace_V1_Span) -> Edgetrail_V1_Span {
        var span = Edgetrail_V1_Span()
        span.traceID = otlp.traceID
        span.spanID = otlp.spanID
        span.parentSpanID = otlp.parentSpanID
        span.operation = otlp.name
        span.startNs = otlp.startTimeUnixNano
        span.endNs = otlp.endTimeUnixNano
        switch otlp.status.code {
        case .ok: span.status = .ok
        case .error: span.status = .error
        default: span.status = .unset
        }
        span.statusMessage = otlp.status.message
        switch otlp.kind {
        case .internal: span.kind = .internal
        case .server: span.kind = .server
        case .client: span.kind = .client
        case .producer: span.kind = .producer
        case .consumer: span.kind = .consumer
        default: span.kind = .unspecified
        }
        for attribute in otlp.attributes {
            span.tags[attribute.key] = text(attribute.value)
        }
        span.logs = otlp.events.map { event in
            var log = Edgetrail_V1_SpanLog()
            log.atNs = event.timeUnixNano
            log.name = event.name
            for attribute in event.attributes { log.fields[attribute.key] = text(attribute.value) }
            return log
        }
        return span
    }

    /// An attribute value as text: strings as they are, others in a JSON-like form.
    static func text(_ value: Opentelemetry_Proto_Common_V1_AnyValue) -> String {
        switch value.value {
        case .stringValue(let string): return string
        case .boolValue(let bool): return bool ? "true" : "false"
        case .intValue(let int): return String(int)
        case .doubleValue(let double): return String(double)
        case .bytesValue(let bytes): return bytes.base64EncodedString()
        case .arrayValue(let array): return "[" + array.values.map { text($0) }.joined(separator: ",") + "]"
        case .kvlistValue(let list):
            return "{" + list.values.map { "\($0.key)=\(text($0.value))" }.joined(separator: ",") + "}"
        case .stringValueStrindex(let index): return "#\(index)"
        case nil: return ""
        }
    }

    static func string(named key: String, in attributes: [Opentelemetry_Proto_Common_V1_KeyValue]) -> String? {
        for attribute in attributes where attribute.key == key {
            if case .stringValue(let value) = attribute.value.value { return value }
        }
        return nil
    }

    /// What an `edgetrail.cookie` attribute holds.
    enum CookieAttribute: Equatable, Sendable {
        case missing
        case cookie(UInt64)
        /// There, but not 16 hex digits in a string; the reason names why.
        case malformed(reason: String, value: String)

        var cookie: UInt64? {
            if case .cookie(let value) = self { return value }
            return nil
        }
    }

    /// The cookie in `edgetrail.cookie`, which must be a string of 16 hex digits. An integer is
    /// refused too: SDKs carry 64-bit integers as signed, and a cookie is no number to compute on.
    static func cookieAttribute(in attributes: [Opentelemetry_Proto_Common_V1_KeyValue]) -> CookieAttribute {
        for attribute in attributes where attribute.key == cookieAttributeKey {
            if case .stringValue(let text) = attribute.value.value { return cookieAttribute(.string(text)) }
            return cookieAttribute(.other(text(attribute.value)))
        }
        return .missing
    }

    /// `edgetrail.cookie` in a W3C baggage header (`k=v;props,k2=v2`).
    public static func cookie(fromBaggage header: String) -> UInt64? {
        Baggage.cookie(in: header)?.rawValue
    }
}

/// An export request read: per resource what `convert` needs of it, and its spans already as
/// Edgetrail spans, each with its own cookie attribute.
public struct ReadExport: Sendable {
    var resources: [ReadResource] = []
    public internal(set) var spanCount = 0
}

struct ReadResource: Sendable {
    /// The first string-valued `service.name` and `edgetrail.cnf`.
    var service: String?
    var cnf: String?
    /// The first `edgetrail.cookie`, whatever its type: a cookie, or why it is not one.
    var cookie: UInt64?
    var malformed: MalformedCookie?
    var sawCookieAttribute = false
    var spans: [ReadSpan] = []

    init(service: String?, cnf: String?) {
        self.service = service
        self.cnf = cnf
    }

    mutating func set(_ attribute: SpanConverter.CookieAttribute) {
        (cookie, malformed) = attribute.parts
        sawCookieAttribute = attribute != .missing
    }
}

struct ReadSpan: Sendable {
    var span: Edgetrail_V1_Span
    var cookie: UInt64?
    var malformed: MalformedCookie?

    init(span: Edgetrail_V1_Span, attribute: SpanConverter.CookieAttribute) {
        self.span = span
        (cookie, malformed) = attribute.parts
    }
}

/// An `edgetrail.cookie` that is there but is not a cookie: why (`not_16_hex_digits`,
/// `not_a_string`) and the value's first 64 characters.
struct MalformedCookie: Sendable {
    var reason: String
    var value: String
}

extension SpanConverter.CookieAttribute {
    var parts: (UInt64?, MalformedCookie?) {
        switch self {
        case .missing: (nil, nil)
        case .cookie(let cookie): (cookie, nil)
        case .malformed(let reason, let value): (nil, MalformedCookie(reason: reason, value: value))
        }
    }
}
