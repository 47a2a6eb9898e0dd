import EdgetrailRuntime
import EdgetrailCore
import EdgetrailOTLP
import EdgetrailProto
import EdgetrailTelemetry
import GRPCCore
import GRPCProtobuf
import Logging
import Synchronization

/// The OTLP/gRPC trace receiver: any OpenTelemetry SDK can export spans to it. Spans become
/// Edgetrail span records keyed by their cookie and go to the pipeline; when the pipeline is
/// full the exporter is told to retry (UNAVAILABLE), so nothing it sent is lost.
///
/// Requests are read from their wire form straight into Edgetrail spans (`SpanConverter.read`),
/// on the connection's event loop, without SwiftProtobuf's OTLP messages in between.
public final class OTLPReceiver: RegistrableRPCService, Sendable {
    private let consumer: any RecordConsumer
    private let converter: Mutex<SpanConverter>
    private let clock: @Sendable () -> UInt64
    private let logger: Logger
    /// When a malformed cookie was last logged: at most one line per 10 s, however many exports.
    private let malformedLog = LogThrottle()

    public init(
        consumer: any RecordConsumer, configuration: OTLPSourceConfiguration, cnf: String, node: String,
        logger: Logger, clock: @escaping @Sendable () -> UInt64 = wallClockNanoseconds
    ) {
        self.consumer = consumer
        self.clock = clock
        self.logger = logger
        self.converter = Mutex(
            SpanConverter(
                cnf: cnf, node: node,
                noCookie: configuration.noCookie, holdsTraces: configuration.hold.holdNanoseconds > 0))
    }

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Opentelemetry_Proto_Collector_Trace_V1_TraceService.Method.Export.descriptor,
            deserializer: ExportReader(),
            serializer: ProtobufSerializer<Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse>()
        ) { request, context in
            StreamingServerResponse(single: try await self.export(request: ServerRequest(stream: request), context: context))
        }
    }

    /// An export request read into spans; one that cannot be read is refused as INVALID_ARGUMENT.
    struct ExportReader: MessageDeserializer {
        func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> ReadExport {
            do {
                return try bytes.withUnsafeBytes { buffer throws(ProtobufReader.Malformed) in
                    try SpanConverter.read(exportRequest: buffer)
                }
            } catch {
                throw RPCError(code: .invalidArgument, message: "not an ExportTraceServiceRequest: \(error)")
            }
        }
    }

    public func export(
        request: GRPCCore.ServerRequest<ReadExport>, context: GRPCCore.ServerContext
    ) async throws -> GRPCCore.ServerResponse<Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse> {
        let baggage = request.metadata[stringValues: "baggage"].first { _ in true }
        let now = clock()
        let converted = converter.withLock { $0.convert(request.message, baggage: baggage, now: now) }
        consumer.count(.spanWithoutCookieDropped, converted.droppedWithoutCookie)
        consumer.count(.spanWithoutCookieBucketed, converted.bucketedWithoutCookie)
        consumer.count(.spanWithoutCookieHeld, converted.heldWithoutCookie)
        for (reason, count) in converted.malformedCookies {
            consumer.count(.cookieAttribute(reason), count)
        }
        if let example = converted.malformedExample, malformedLog.due(now: now) {
            logger.warning(
                "spans carry an edgetrail.cookie that is not a cookie (16 hex digits in a string); taken as having none",
                metadata: [
                    "example": "\(example)",
                    "spans": "\(converted.malformedCookies.values.reduce(0, +))",
                ])
        }
        switch consumer.offer(converted.records, from: .otlp) {
        case .accepted(let tooLarge):
            var response = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse()
            var reasons: [String] = []
            if converted.droppedWithoutCookie > 0 {
                reasons.append(
                    "\(converted.droppedWithoutCookie) spans had no edgetrail.cookie attribute or baggage and were dropped")
            }
            if tooLarge > 0 {
                reasons.append(
                    "\(tooLarge) spans were larger than the collector ships in one message "
                        + "(\(consumer.largestRecordBytes) bytes encoded) and were dropped")
            }
            if !reasons.isEmpty {
                response.partialSuccess.rejectedSpans = Int64(converted.droppedWithoutCookie + tooLarge)
                response.partialSuccess.errorMessage = reasons.joined(separator: "; ")
            }
            return ServerResponse(message: response)
        case .full(let reason):
            throw RPCError(code: .unavailable, message: reason)
        }
    }
}

/// Counts and logs the export calls the OTLP receiver refuses before its handler sees a span:
/// requests that are not an export request (`export_unreadable`) and, when the transport lets
/// the call start, requests over `max_request_bytes` (`export_too_large`; most are reset by the
/// HTTP/2 transport before any call exists, and those are not seen here). The exporter gets the
/// gRPC error; the operator gets `source="otlp"` events on /metrics and a log line (at most one
/// per 10 s).
final class OTLPRefusals: ServerInterceptor {
    let consumer: any RecordConsumer
    let logger: Logger
    private let log = LogThrottle()

    init(consumer: any RecordConsumer, logger: Logger) {
        self.consumer = consumer
        self.logger = logger
    }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        do {
            return try await next(request, context)
        } catch let error as RPCError {
            // Exports over max_request_bytes never get here: OTLPWireWatch counts those.
            guard error.code == .invalidArgument else { throw error }
            consumer.count(.exportUnreadable)
            if log.due() {
                logger.warning(
                    "refused an OTLP export that is not a readable ExportTraceServiceRequest",
                    metadata: ["peer": "\(context.remotePeer)", "error": "\(error.message)"])
            }
            throw error
        }
    }
}
