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

    var otlp: Opentelemetry_Proto_Trace_V1_Span {
        var span = Opentelemetry_Proto_Trace_V1_Span()
        span.traceID = Data(identity.traceID)
        span.spanID = Data(identity.spanID)
        if let parentSpanID { span.parentSpanID = Data(parentSpanID) }
        span.name = name
        span.kind =
            switch kind {
            case .server: .server
            case .client: .client
            case .producer: .producer
            case .consumer: .consumer
            default: .internal
            }
        span.startTimeUnixNano = startNanoseconds
        span.endTimeUnixNano = endNanoseconds
        span.attributes = Self.keyValues(attributes)
        span.events = events.map { event in
            var otlp = Opentelemetry_Proto_Trace_V1_Span.Event()
            otlp.name = event.name
            otlp.timeUnixNano = event.nanosecondsSinceEpoch
            otlp.attributes = Self.keyValues(event.attributes)
            return otlp
        }
        if let status {
            span.status.code = status.code == .error ? .error : .ok
            span.status.message = status.message ?? ""
        }
        return span
    }

    static func keyValues(_ attributes: SpanAttributes) -> [Opentelemetry_Proto_Common_V1_KeyValue] {
        var result: [Opentelemetry_Proto_Common_V1_KeyValue] = []
        attributes.forEach { key, attribute in
            var pair = Opentelemetry_Proto_Common_V1_KeyValue()
            pair.key = key
            switch attribute {
            case .int32(let value): pair.value.intValue = Int64(value)
            case .int64(let value): pair.value.intValue = value
            case .double(let value): pair.value.doubleValue = value
            case .bool(let value): pair.value.boolValue = value
            case .string(let value): pair.value.stringValue = value
            default: pair.value.stringValue = "\(attribute)"
            }
            result.append(pair)
        }
        return result.sorted { $0.key < $1.key }
    }
}
