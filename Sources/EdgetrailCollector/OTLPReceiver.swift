import EdgetrailOTLP
import EdgetrailProto
import EdgetrailTelemetry
import GRPCCore
import Logging
import Synchronization

/// The OTLP/gRPC trace receiver: any OpenTelemetry SDK can export spans to it. Spans become
/// Edgetrail span records keyed by their cookie and go to the pipeline; when the pipeline is
/// full the exporter is told to retry (UNAVAILABLE), so nothing it sent is lost.
public final class OTLPReceiver: Opentelemetry_Proto_Collector_Trace_V1_TraceService.ServiceProtocol, Sendable {
    private let pipeline: CollectorPipeline
    private let converter: Mutex<SpanConverter>
    private let clock: @Sendable () -> UInt64

    public init(
        pipeline: CollectorPipeline, configuration: OTLPSourceConfiguration,
        clock: @escaping @Sendable () -> UInt64 = wallClockNanoseconds
    ) {
        self.pipeline = pipeline
        self.clock = clock
        self.converter = Mutex(
            SpanConverter(
                cnf: pipeline.configuration.join.cnf, node: pipeline.configuration.join.node,
                noCookie: configuration.noCookie, holdsTraces: configuration.hold.holdNanoseconds > 0))
    }

    public func export(
        request: GRPCCore.ServerRequest<Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest>,
        context: GRPCCore.ServerContext
    ) async throws -> GRPCCore.ServerResponse<Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceResponse> {
        let baggage = request.metadata[stringValues: "baggage"].first { _ in true }
        let now = clock()
        let converted = converter.withLock { $0.convert(request.message, baggage: baggage, now: now) }
        pipeline.count("otlp", "span_without_cookie_dropped", converted.droppedWithoutCookie)
        pipeline.count("otlp", "span_without_cookie_bucketed", converted.bucketedWithoutCookie)
        pipeline.count("otlp", "span_without_cookie_held", converted.heldWithoutCookie)
        switch pipeline.accept(converted.records, source: "otlp") {
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
                        + "(\(pipeline.largestRecordBytes) bytes encoded) and were dropped")
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
