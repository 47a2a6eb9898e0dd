import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Each request's context carries the client's address, so the origin can say who reached it.
public struct OriginContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// A real HTTP/1.1 origin for a local edge node, the tests and the benchmarks: serves the files
/// of a folder (`examples/origin/`: a page, a download, the EICAR test file) with keep-alive, plus
///
/// - `GET /_origin/bytes/N`: N bytes with a `Content-Length`, streamed in 64 KiB pieces;
/// - `GET /_origin/chunked/N`: N bytes sent chunked (no length announced);
/// - `POST /_origin/upload`: reads the body and says how many bytes arrived;
/// - `GET /_origin/clients`: the distinct client addresses it has served, one per line (what a
///   transparent proxy must leave as the proxy's own).
public final class OriginServer: Sendable {
    public let directory: String?
    private let clients = Mutex<[String]>([])

    public init(directory: String?) {
        self.directory = directory
    }

    /// The client addresses seen so far, in order of first appearance.
    public var clientAddresses: [String] { clients.withLock { $0 } }

    public func application(
        host: String, port: Int, logger: Logger, onRunning: @escaping @Sendable (SocketAddress?) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: OriginContext.self)
        router.middlewares.add(ClientRecorder(origin: self))
        router.middlewares.add(DeclaredType())
        if let directory { router.middlewares.add(FileMiddleware(directory, searchForIndexHtml: true, logger: logger)) }
        router.get("/_origin/bytes/:count") { _, context -> Response in
            let count = try Self.count(context)
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody(contentLength: count) { writer in try await Self.write(count, to: &writer) })
        }
        router.get("/_origin/chunked/:count") { _, context -> Response in
            let count = try Self.count(context)
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody { writer in try await Self.write(count, to: &writer) })
        }
        router.post("/_origin/upload") { request, _ -> String in
            var received = 0
            for try await chunk in request.body { received += chunk.readableBytes }
            return "received \(received) bytes\n"
        }
        router.get("/_origin/clients") { [self] _, _ -> String in
            clientAddresses.map { $0 + "\n" }.joined()
        }
        var quiet = logger
        quiet.logLevel = .warning
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "edgetrail-origin"),
            onServerRunning: { channel in await onRunning(channel.localAddress) }, logger: quiet)
    }

    func saw(_ address: SocketAddress?) {
        guard let ip = address?.ipAddress else { return }
        clients.withLock { if !$0.contains(ip) { $0.append(ip) } }
    }

    private static func count(_ context: OriginContext) throws -> Int {
        guard let text = context.parameters.get("count"), let count = Int(text), (0...(4 << 30)).contains(count) else {
            throw HTTPError(.badRequest, message: "give a byte count from 0 to 4 GiB")
        }
        return count
    }

    private static func write(_ count: Int, to writer: inout any ResponseBodyWriter) async throws {
        let piece = ByteBuffer(repeating: UInt8(ascii: "e"), count: 64 * 1024)
        var left = count
        while left > 0 {
            let size = min(left, piece.readableBytes)
            try await writer.write(piece.getSlice(at: 0, length: size)!)
            left -= size
        }
        try await writer.finish(nil)
    }
}

/// A file whose extension names no media type (`eicar.com`) is declared as what it is to the
/// origin, `application/octet-stream`: a download, as a browser would take it. Without a type,
/// a client (and content-inspect) would guess from the bytes.
struct DeclaredType: RouterMiddleware {
    typealias Context = OriginContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if response.status == .ok, response.headers[.contentType] == nil {
            response.headers[.contentType] = "application/octet-stream"
        }
        return response
    }
}

struct ClientRecorder: RouterMiddleware {
    typealias Context = OriginContext
    let origin: OriginServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        origin.saw(context.remoteAddress)
        return try await next(request, context)
    }
}
