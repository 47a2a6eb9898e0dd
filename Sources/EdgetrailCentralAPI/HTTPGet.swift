import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// Plain HTTP GETs: central's queries, its live feed, and the `/metrics` pages the portal scrapes.
///
/// Why not URLSession: on Linux its async calls do not always end when their task is cancelled,
/// so a portal scraping metrics or following central's live feed could hang on SIGTERM (seen in
/// about one stop in five), and a delegate-driven stream can outlive its reader. AsyncHTTPClient
/// ends a cancelled request at once and closes its connection.
public enum HTTPGet {
    /// One client for the process, never shut down. A refused connection fails the request at
    /// once instead of being retried until the deadline: "is it running?" is the answer a user
    /// needs, not a ten-second wait.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }()

    public struct Response: Sendable {
        public var status: Int
        public var body: Data
    }

    /// The whole answer to `GET url`, its body at most `limit` bytes. Throws `HTTPGetError` when the
    /// address cannot be reached or does not answer within `timeout`.
    public static func fetch(_ url: String, timeout: Duration = .seconds(30), limit: Int = 256 << 20) async throws(HTTPGetError) -> Response {
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .init(timeout))
            let body = try await response.body.collect(upTo: limit)
            return Response(status: Int(response.status.code), body: Data(body.readableBytesView))
        } catch {
            throw HTTPGetError(describing: error)
        }
    }

    /// The status of `GET url` and its body as it arrives, for streams that do not end (server-sent
    /// events). Cancelling the task that reads the body closes the connection.
    public static func open(_ url: String, timeout: Duration = .seconds(30)) async throws(HTTPGetError) -> (status: Int, body: HTTPClientResponse.Body) {
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .init(timeout))
            return (Int(response.status.code), response.body)
        } catch {
            throw HTTPGetError(describing: error)
        }
    }
}

/// Why a GET got no answer, in words: "connection refused", "timed out", "cancelled".
public struct HTTPGetError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public var cancelled: Bool

    init(describing error: any Error) {
        cancelled = error is CancellationError || (error as? HTTPClientError) == .cancelled
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: description = "it did not answer in time"
            case .cancelled: description = "the request was cancelled"
            case .remoteConnectionClosed: description = "it closed the connection"
            case .bodyLengthMismatch: description = "its answer was cut short"
            default: description = "\(error)"
            }
        } else if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            description = Self.words(first.error)
        } else if error is NIOTooManyBytesError {
            description = "its answer was larger than expected"
        } else if error is CancellationError {
            description = "the request was cancelled"
        } else {
            description = Self.words(error)
        }
    }

    /// `Connection refused` rather than `connect(descriptor:addr:size:): Connection refused (errno: 111)`.
    static func words(_ error: any Error) -> String {
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode)).lowercased()
        }
        if case .some(.connectTimeout) = error as? ChannelError { return "it did not answer in time" }
        return "\(error)"
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
