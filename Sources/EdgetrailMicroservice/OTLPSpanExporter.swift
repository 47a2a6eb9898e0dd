import EdgetrailCore
import EdgetrailOTLP
import GRPCCore
import GRPCProtobuf
import GRPCNIOTransportHTTP2
import EdgetrailRuntime
import Logging
import ServiceLifecycle
import Synchronization

/// Sends a μsrv's finished spans to the node's collector over OTLP/gRPC, in batches, off the
/// request path: `add` only queues. While the collector is unreachable spans wait in a bounded
/// queue (the oldest go first, counted); the queue is flushed when the μsrv stops. Without an
/// endpoint (`--otlp none`: tracing off) spans are not exported at all: nothing is queued or
/// encoded.
public final class OTLPSpanExporter: Service, Sendable {
    public struct Counts: Sendable, Equatable {
        public var exported = 0
        /// Spans dropped because the queue was full while the collector did not take them.
        public var dropped = 0
        public var failedExports = 0
    }

    public let endpoint: EdgetrailCore.Endpoint?
    let resource: [(String, String)]
    let batchSize: Int
    let interval: Duration
    let logger: Logger
    /// At most one warning per 10 s while the failure lasts.
    private let warnings = LogThrottle()
    private let queue: WorkQueue<FinishedSpan>
    private let counts = Mutex(Counts())

    /// - Parameters:
    ///   - resource: the OTLP resource attributes (`service.name`, the CNF, the μsrv's kind).
    public init(
        endpoint: EdgetrailCore.Endpoint?, resource: [(String, String)], logger: Logger, capacity: Int = 20_000, batchSize: Int = 512,
        interval: Duration = .milliseconds(100)
    ) {
        self.endpoint = endpoint
        self.resource = resource
        self.logger = logger
        self.queue = WorkQueue(capacity: capacity)
        self.batchSize = batchSize
        self.interval = interval
    }

    public var exportCounts: Counts { counts.withLock { $0 } }

    /// Queues a finished span.
    func add(_ span: FinishedSpan) {
        guard endpoint != nil else { return }
        let (dropped, count) = queue.add(span)
        if dropped > 0 { counts.withLock { $0.dropped += dropped } }
        if count >= batchSize { queue.wake() }
    }

    /// Wakes the sender now instead of at its next interval.
    func flushSoon() { queue.wake() }

    public func run() async throws {
        guard let endpoint else {
            try? await gracefulShutdown()
            return
        }
        let transport: HTTP2ClientTransport.Posix
        switch endpoint {
        case .tcp(let host, let port):
            transport = try HTTP2ClientTransport.Posix(target: .dns(host: host, port: port), transportSecurity: .plaintext)
        case .unix(let path):
            transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
        }
        let stopping = Atomic<Bool>(false)
        try await withGRPCClient(transport: transport) { client in
            await withGracefulShutdownHandler {
                // A batch the collector did not take waits here, encoded once, and is sent again
                // after a pause that grows while the collector stays away (up to 5 s).
                var unsent: (request: [UInt8], count: Int)?
                var pause = interval
                while true {
                    let last = stopping.load(ordering: .acquiring)
                    while true {
                        if unsent == nil, let batch = queue.takeBatch(batchSize) { unsent = (await request(batch), batch.count) }
                        guard let pending = unsent else { break }
                        do {
                            var options = CallOptions.defaults
                            options.timeout = .seconds(5)
                            try await client.unary(
                                request: ClientRequest(message: pending.request),
                                descriptor: Opentelemetry_Proto_Collector_Trace_V1_TraceService.Method.Export.descriptor,
                                serializer: EncodedMessage(), deserializer: ProtobufDeserializer<ExportResponse>(),
                                options: options
                            ) { _ = try $0.message }
                            counts.withLock { $0.exported += pending.count }
                            unsent = nil
                            pause = interval
                            // A short batch waits for the interval: sending each span as it ends
                            // costs a call per span and keeps the event loop busy.
                            if !last && queue.count < batchSize { break }
                        } catch {
                            counts.withLock { $0.failedExports += 1 }
                            unsent = pending
                            pause = min(pause * 2, .seconds(5))
                            if warnings.due() {
                                logger.warning(
                                    "cannot send spans to the collector; they wait in a queue of \(queue.capacity)",
                                    metadata: ["otlp": "\(endpoint)", "error": "\(error)"])
                            }
                            break
                        }
                    }
                    if last {
                        if let unsent { counts.withLock { $0.dropped += unsent.count + queue.count } }
                        return
                    }
                    if unsent != nil {
                        let pause = pause
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                    } else {
                        await queue.wait(upTo: interval)
                    }
                }
            } onGracefulShutdown: {
                stopping.store(true, ordering: .releasing)
                self.flushSoon()
            }
        }
    }

    /// Spans are encoded straight into the request's bytes (`FinishedSpan.exportRequest`): building
    /// the generated messages first cost the proxy about a tenth of its CPU. The encoding runs on
    /// NIO's thread pool: a μsrv's tasks run on its event loop, whose requests would otherwise
    /// wait behind a whole batch (the proxy's p99).
    private func request(_ spans: [FinishedSpan]) async -> [UInt8] {
        let resource = self.resource
        let encode = { @Sendable in FinishedSpan.exportRequest(resource: resource, scope: "edgetrail.microservice", spans: spans) }
        return (try? await Blocking.run(encode)) ?? encode()
    }
}

private typealias ExportResponse = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse

/// A message sent as the bytes it was already encoded to.
private struct EncodedMessage: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}
