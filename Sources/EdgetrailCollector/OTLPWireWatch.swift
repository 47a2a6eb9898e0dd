import EdgetrailRuntime
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOHTTP2

/// Counts and logs what the gRPC transport refuses before any RPC exists, so an interceptor
/// never sees it: connections that do not speak HTTP/2 (`otlp` / `connection_not_http2`) and
/// export requests larger than `max_request_bytes` (`otlp` / `export_too_large`), which the
/// transport answers by resetting the stream. Both only look at the first bytes and then step
/// out of the pipeline; the transport still does the refusing.
final class OTLPWireWatch: Sendable {
    let consumer: any RecordConsumer
    let logger: Logger
    let maxRequestBytes: Int
    /// At most one line per 10 s and kind of refusal, however many.
    private let log = LogThrottle()

    init(consumer: any RecordConsumer, logger: Logger, maxRequestBytes: Int) {
        self.consumer = consumer
        self.logger = logger
        self.maxRequestBytes = maxRequestBytes
    }

    /// The transport's hooks: one watcher per connection and one per stream.
    var callbacks: HTTP2ServerTransport.Config.ChannelDebuggingCallbacks {
        let watch = self
        return HTTP2ServerTransport.Config.ChannelDebuggingCallbacks(
            onBindTCPListener: nil,
            onAcceptTCPConnection: { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PrefaceWatch(watch: watch), position: .first)
                }
            },
            onAcceptHTTP2Stream: { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(MessageSizeWatch(watch: watch), position: .first)
                }
            })
    }

    func refused(_ event: SourceEvent, _ message: String, metadata: Logger.Metadata) {
        consumer.count(event)
        if log.due(event.event) { logger.warning("\(message)", metadata: metadata) }
    }
}

/// Reads a connection's first bytes: anything but the HTTP/2 client preface is counted once.
private final class PrefaceWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (RFC 9113, 3.4).
    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let watch: OTLPWireWatch
    private var seen: [UInt8] = []

    init(watch: OTLPWireWatch) {
        self.watch = watch
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let wanted = Self.preface.count - seen.count
        seen += buffer.getBytes(at: buffer.readerIndex, length: min(wanted, buffer.readableBytes)) ?? []
        let matches = seen.elementsEqual(Self.preface.prefix(seen.count))
        if !matches {
            watch.refused(
                .connectionNotHTTP2, "refused a connection to the OTLP port that does not speak HTTP/2 (gRPC)",
                metadata: [
                    "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")",
                    "first_bytes": "\(String(decoding: seen.prefix(16), as: UTF8.self).debugDescription)",
                    "hint": "send OTLP over gRPC (an OpenTelemetry OTLP/gRPC exporter), not HTTP/1.1",
                ])
        }
        context.fireChannelRead(data)
        if !matches || seen.count == Self.preface.count {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

/// Reads the length prefix of a stream's first gRPC message: one over the limit is counted.
private final class MessageSizeWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    private let watch: OTLPWireWatch
    /// The compression flag and the 4-byte big-endian length that open every gRPC message.
    private var prefix: [UInt8] = []

    init(watch: OTLPWireWatch) {
        self.watch = watch
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .data(let frame) = unwrapInboundIn(data), case .byteBuffer(let buffer) = frame.data {
            prefix += buffer.getBytes(at: buffer.readerIndex, length: min(5 - prefix.count, buffer.readableBytes)) ?? []
        }
        context.fireChannelRead(data)
        guard prefix.count == 5 else { return }
        let length = prefix[1...].reduce(0) { $0 << 8 | Int($1) }
        if length > watch.maxRequestBytes {
            watch.refused(
                .exportTooLarge, "refused an OTLP export larger than max_request_bytes",
                metadata: [
                    "peer": "\(context.channel.parent?.remoteAddress.map { "\($0)" } ?? "?")",
                    "bytes": "\(length)", "max_request_bytes": "\(watch.maxRequestBytes)",
                    "hint": "export smaller batches (the SDK's max export batch size) or raise sources.otlp.max_request_bytes",
                ])
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
