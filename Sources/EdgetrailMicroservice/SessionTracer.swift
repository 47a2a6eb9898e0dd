import EdgetrailCore
import EdgetrailOTLP
import Foundation
import Synchronization
import Tracing

/// The identity of a span within its trace, kept in the context so children find their parent.
public struct SpanIdentity: Sendable, Equatable {
    public var traceID: [UInt8]
    public var spanID: [UInt8]
    public var sampled: Bool

    /// The W3C header naming this span as the parent of whatever it calls or raises.
    public var traceParent: TraceParent? { TraceParent(traceID: traceID, parentID: spanID, sampled: sampled) }
}

private enum SessionKey: ServiceContextKey { typealias Value = SessionContext }
private enum SpanIdentityKey: ServiceContextKey { typealias Value = SpanIdentity }

extension ServiceContext {
    /// The session a piece of work belongs to: its cookie, and the trace context and baggage it
    /// arrived with.
    public var session: SessionContext? {
        get { self[SessionKey.self] }
        set { self[SessionKey.self] = newValue }
    }

    /// The span the work runs in.
    public var spanIdentity: SpanIdentity? {
        get { self[SpanIdentityKey.self] }
        set { self[SpanIdentityKey.self] = newValue }
    }

    /// What a call or event made from this context carries: the cookie, the baggage and the
    /// current span as the W3C parent.
    public var outgoingSession: SessionContext {
        var session = self.session ?? SessionContext()
        if let parent = spanIdentity?.traceParent { session.traceParent = parent }
        return session
    }
}

/// A swift-distributed-tracing tracer for a μsrv: every span carries the session cookie
/// (`edgetrail.cookie`) and is exported over OTLP/gRPC to the node's collector, which joins it with
/// the session's flows and state. A span's parent is the span in its context, or else the W3C
/// `traceparent` the work arrived with, so one session's μsrvs and handlers make one tree.
public final class SessionTracer: Tracer, Sendable {
    public typealias Span = SessionSpan

    let exporter: OTLPSpanExporter

    public init(exporter: OTLPSpanExporter) {
        self.exporter = exporter
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> SessionSpan {
        var context = context()
        let parent =
            context.spanIdentity
            ?? context.session?.traceParent.map { SpanIdentity(traceID: $0.traceID, spanID: $0.parentID, sampled: $0.sampled) }
        let identity = SpanIdentity(
            traceID: parent?.traceID ?? randomID(16), spanID: randomID(8), sampled: parent?.sampled ?? true)
        context.spanIdentity = identity
        return SessionSpan(
            operationName: operationName, kind: kind, context: context, parentSpanID: parent?.spanID,
            startNanoseconds: instant().nanosecondsSinceEpoch, exporter: exporter)
    }

    public func forceFlush() { exporter.flushSoon() }

    public func extract<Carrier, Extract>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract)
    where Extract: Extractor, Extract.Carrier == Carrier {
        let names = [SessionContext.cookieHeader, SessionContext.traceParentHeader, SessionContext.baggageHeader]
        let metadata = names.compactMap { name in extractor.extract(key: name, from: carrier).map { (name, $0) } }
        context.session = SessionContext(metadata: metadata)
    }

    public func inject<Carrier, Inject>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject)
    where Inject: Injector, Inject.Carrier == Carrier {
        for (name, value) in context.outgoingSession.metadata() { injector.inject(value, forKey: name, into: &carrier) }
    }

    /// Span and trace ids: a SplitMix64 sequence seeded from the system's generator (reading
    /// the system's generator for every id would cost a system call per 8 bytes).
    private let random = Mutex(SplitMix64())

    func randomWord() -> UInt64 { random.withLock { $0.next() } }

    func randomID(_ count: Int) -> [UInt8] {
        random.withLock { generator in
            while true {
                var bytes: [UInt8] = []
                bytes.reserveCapacity(count)
                while bytes.count < count { withUnsafeBytes(of: generator.next()) { bytes += $0.prefix(count - bytes.count) } }
                if bytes.contains(where: { $0 != 0 }) { return bytes }
            }
        }
    }
}

struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One span of a μsrv's work; on `end` it becomes an OTLP span queued for export.
public final class SessionSpan: Tracing.Span, Sendable {
    private struct State {
        var operationName: String
        var attributes: SpanAttributes
        var status: SpanStatus?
        var events: [SpanEvent] = []
        var links: [SpanLink] = []
        var ended = false
    }

    public let context: ServiceContext
    let kind: SpanKind
    let parentSpanID: [UInt8]?
    let startNanoseconds: UInt64
    private let exporter: OTLPSpanExporter
    private let state: Mutex<State>

    init(
        operationName: String, kind: SpanKind, context: ServiceContext, parentSpanID: [UInt8]?, startNanoseconds: UInt64,
        exporter: OTLPSpanExporter
    ) {
        self.context = context
        self.kind = kind
        self.parentSpanID = parentSpanID
        self.startNanoseconds = startNanoseconds
        self.exporter = exporter
        var attributes = SpanAttributes()
        attributes.reserveCapacity(8)
        if let cookie = context.session?.cookie { attributes[SessionContext.cookieBaggageKey] = cookie.hex }
        state = Mutex(State(operationName: operationName, attributes: attributes))
    }

    public var operationName: String {
        get { state.withLock { $0.operationName } }
        set { state.withLock { $0.operationName = newValue } }
    }

    public var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { $0.attributes = newValue } }
    }

    public var isRecording: Bool { state.withLock { !$0.ended } }

    /// Sets one attribute in place; `attributes[key] = value` copies them all for each change.
    public func setAttribute(_ key: String, _ value: SpanAttribute) {
        state.withLock { $0.attributes.set(key, value: value) }
    }

    public func setStatus(_ status: SpanStatus) { state.withLock { $0.status = status } }

    public func addEvent(_ event: SpanEvent) { state.withLock { $0.events.append(event) } }

    public func addLink(_ link: SpanLink) { state.withLock { $0.links.append(link) } }

    public func recordError<Instant: TracerInstant>(
        _ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant
    ) {
        var eventAttributes = attributes
        eventAttributes["exception.type"] = "\(type(of: error))"
        eventAttributes["exception.message"] = "\(error)"
        let event = SpanEvent(name: "exception", at: instant(), attributes: eventAttributes)
        state.withLock {
            $0.events.append(event)
            if $0.status == nil { $0.status = SpanStatus(code: .error, message: "\(error)") }
        }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let end = instant().nanosecondsSinceEpoch
        guard let finished = state.withLock({ state -> State? in
            guard !state.ended else { return nil }
            state.ended = true
            return state
        }) else { return }
        guard let identity = context.spanIdentity, identity.sampled else { return }
        // Turned into OTLP by the exporter, off the request path.
        exporter.add(
            FinishedSpan(
                identity: identity, parentSpanID: parentSpanID, name: finished.operationName, kind: kind,
                startNanoseconds: startNanoseconds, endNanoseconds: max(end, startNanoseconds),
                attributes: finished.attributes, events: finished.events, status: finished.status))
    }
}

/// A span as it ended, waiting for export.
struct FinishedSpan: Sendable {
    var identity: SpanIdentity
    var parentSpanID: [UInt8]?
    var name: String
    var kind: SpanKind
    var startNanoseconds: UInt64
    var endNanoseconds: UInt64
    var attributes: SpanAttributes
    var events: [SpanEvent]
    var status: SpanStatus?

    /// Writes the span as an OTLP `Span` (opentelemetry/proto/trace/v1/trace.proto; the field
    /// numbers are the proto's).
    func encode(into span: inout ProtobufWriter) {
        span.bytes(1, identity.traceID)
        span.bytes(2, identity.spanID)
        if let parentSpanID { span.bytes(4, parentSpanID) }
        span.string(5, name)
        let kind: UInt64 =
            switch self.kind {
            case .server: 2
            case .client: 3
            case .producer: 4
            case .consumer: 5
            default: 1  // internal
            }
        span.uint64(6, kind)
        span.fixed64(7, startNanoseconds)
        span.fixed64(8, endNanoseconds)
        Self.encode(attributes, field: 9, into: &span)
        for event in events {
            span.message(11) { otlp in
                otlp.fixed64(1, event.nanosecondsSinceEpoch)
                otlp.string(2, event.name)
                Self.encode(event.attributes, field: 3, into: &otlp)
            }
        }
        if let status {
            span.message(15) { otlp in
                otlp.string(2, status.message ?? "")
                otlp.uint64(3, status.code == .error ? 2 : 1)
            }
        }
    }

    /// Attributes as repeated `KeyValue` fields; a value is an `AnyValue` (a oneof, so a set
    /// member is written even when it is empty or zero).
    static func encode(_ attributes: SpanAttributes, field: Int, into message: inout ProtobufWriter) {
        attributes.forEach { key, attribute in
            message.message(field) { pair in
                pair.string(1, key)
                pair.message(2) { value in
                    switch attribute {
                    case .int32(let number): value.int64(3, Int64(number), present: true)
                    case .int64(let number): value.int64(3, number, present: true)
                    case .double(let number): value.double(4, number, present: true)
                    case .bool(let flag): value.bool(2, flag, present: true)
                    case .string(let text): value.string(1, text, present: true)
                    default: value.string(1, "\(attribute)", present: true)
                    }
                }
            }
        }
    }

    /// An `ExportTraceServiceRequest` of `spans` under one resource, ready to send.
    static func exportRequest(resource: [(String, String)], scope: String, spans: [FinishedSpan]) -> [UInt8] {
        var request = ProtobufWriter(capacity: 256 + spans.count * 512)
        request.message(1) { resourceSpans in
            resourceSpans.message(1) { otlp in
                for (key, text) in resource {
                    otlp.message(1) { pair in
                        pair.string(1, key)
                        pair.message(2) { $0.string(1, text, present: true) }
                    }
                }
            }
            resourceSpans.message(2) { scopeSpans in
                scopeSpans.message(1) { $0.string(1, scope) }
                for span in spans { scopeSpans.message(2) { span.encode(into: &$0) } }
            }
        }
        return request.bytes
    }
}
