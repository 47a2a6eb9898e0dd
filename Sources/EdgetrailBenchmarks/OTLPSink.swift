import EdgetrailCore
import EdgetrailOTLP
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

/// An OTLP/gRPC receiver that takes each export and counts its spans: where the proxy's spans go
/// when a benchmark measures a μsrv alone. It walks the request's wire form to count them
/// instead of decoding it (decoding would put a collector's cost on the clients' core).
final class OTLPSink: Sendable {
    private final class Counter: RegistrableRPCService {
        let spans = Atomic<Int>(0)

        func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
            router.registerHandler(
                forMethod: Opentelemetry_Proto_Collector_Trace_V1_TraceService.Method.Export.descriptor,
                deserializer: SpanCount(), serializer: EmptyMessage()
            ) { request, _ in
                for try await count in request.messages { self.spans.add(count, ordering: .relaxed) }
                return StreamingServerResponse(single: ServerResponse(message: ()))
            }
        }
    }

    /// The number of spans in an `ExportTraceServiceRequest`: its `resource_spans` (1), their
    /// `scope_spans` (2), their `spans` (2).
    private struct SpanCount: MessageDeserializer {
        func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> Int {
            try bytes.withUnsafeBytes { buffer in
                var count = 0
                try Self.fields(buffer, 1) { resource in
                    try Self.fields(resource, 2) { scope in try Self.fields(scope, 2) { _ in count += 1 } }
                }
                return count
            }
        }

        /// Calls `body` with each length-delimited field `number` of `message`, skipping the others.
        static func fields(_ message: UnsafeRawBufferPointer, _ number: UInt64, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
            var reader = ProtobufReader(message)
            do {
                while let (field, type) = try reader.next() {
                    if field == number, type == .lengthDelimited { try body(try reader.bytes()) } else { try reader.skip(type) }
                }
            } catch let error as ProtobufReader.Malformed {
                throw RPCError(code: .invalidArgument, message: "\(error)")
            }
        }
    }

    /// An empty `ExportTraceServiceResponse`.
    private struct EmptyMessage: MessageSerializer {
        func serialize<Bytes: GRPCContiguousBytes>(_ message: Void) throws -> Bytes { Bytes(repeating: 0, count: 0) }
    }

    private let counter: Counter
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    let address: String

    private init(counter: Counter, server: GRPCServer<HTTP2ServerTransport.Posix>, address: String) {
        self.counter = counter
        self.server = server
        self.address = address
    }

    var spans: Int { counter.spans.load(ordering: .relaxed) }

    /// Listens on a free port of 127.0.0.1.
    static func start() async throws -> OTLPSink {
        let counter = Counter()
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
            services: [counter])
        Task { try? await server.serve() }
        guard let address = try await server.listeningAddress?.ipv4 else { throw BenchmarkError("the OTLP sink did not start") }
        return OTLPSink(counter: counter, server: server, address: "\(address.host):\(address.port)")
    }

    /// `start` for a caller that is not a task (a benchmark's main thread).
    static func startBlocking() throws -> OTLPSink {
        let started = Mutex<Result<OTLPSink, any Error>>(.failure(BenchmarkError("the OTLP sink did not start")))
        let ready = DispatchSemaphore(value: 0)
        Task {
            do {
                let sink = try await start()
                started.withLock { $0 = .success(sink) }
            } catch {
                started.withLock { $0 = .failure(error) }
            }
            ready.signal()
        }
        ready.wait()
        return try started.withLock { $0 }.get()
    }

    func stop() { server.beginGracefulShutdown() }
}
