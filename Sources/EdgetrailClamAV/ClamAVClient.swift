#if canImport(Glibc)
import Glibc
#endif
import EdgetrailNet

/// What clamd said about a body.
public enum ScanVerdict: Sendable, Hashable {
    case clean
    /// The name of the signature that matched.
    case infected(signature: String)
}

/// clamd could not be reached or answered something unexpected.
public struct ClamAVError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case unreachable, timedOut, tooLarge, failed }
    public var message: String
    public var kind: Kind
    public init(_ message: String, kind: Kind = .failed) {
        self.message = message
        self.kind = kind
    }
    public var description: String { message }
}

/// Talks to clamd over its Unix socket with the null-terminated ("z") commands.
public struct ClamAVClient: Sendable {
    public var socketPath: String
    public var timeoutSeconds: Double
    /// clamd's StreamMaxLength default; bodies beyond it are refused before sending.
    public var maximumStreamBytes: Int

    public init(socketPath: String, timeoutSeconds: Double = 30, maximumStreamBytes: Int = 25 << 20) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
        self.maximumStreamBytes = maximumStreamBytes
    }

    /// True when clamd answers PONG.
    public func ping() throws(ClamAVError) -> Bool {
        try request(Array("zPING\0".utf8)) == "PONG"
    }

    /// clamd's version line, e.g. "ClamAV 1.4.3/…".
    public func version() throws(ClamAVError) -> String {
        try request(Array("zVERSION\0".utf8))
    }

    /// Streams `body` to clamd (INSTREAM) and returns its verdict.
    public func scan(_ body: [UInt8]) throws(ClamAVError) -> ScanVerdict {
        guard body.count <= maximumStreamBytes else {
            throw ClamAVError("body of \(body.count) bytes exceeds the \(maximumStreamBytes)-byte scan limit", kind: .tooLarge)
        }
        var message = Array("zINSTREAM\0".utf8)
        message.reserveCapacity(message.count + body.count + 16)
        let chunk = 64 * 1024
        var start = 0
        while start < body.count {
            let end = min(start + chunk, body.count)
            message += bigEndianBytes(UInt32(end - start))
            message += body[start..<end]
            start = end
        }
        message += bigEndianBytes(0)
        let reply = try request(message)
        // "stream: OK", "stream: <signature> FOUND", "INSTREAM size limit exceeded. ERROR"
        if reply.hasSuffix(" OK") { return .clean }
        if reply.hasSuffix(" FOUND") {
            var signature = reply.dropLast(" FOUND".count)
            if signature.hasPrefix("stream: ") { signature = signature.dropFirst("stream: ".count) }
            return .infected(signature: String(signature))
        }
        throw ClamAVError("clamd could not scan the body: \(reply)")
    }

    private func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    private func request(_ bytes: [UInt8]) throws(ClamAVError) -> String {
        let fd = UnixSocket.connect(path: socketPath)
        guard fd >= 0 else {
            throw ClamAVError(
                "cannot reach clamd at \(socketPath): \(String(cString: strerror(errno))); is it up ('edgetrail infra status')?",
                kind: .unreachable)
        }
        defer { close(fd) }
        SocketIO.setTimeout(fd, seconds: timeoutSeconds)
        guard SocketIO.writeAll(fd, bytes) else {
            if errno == EAGAIN || errno == EWOULDBLOCK {
                throw ClamAVError("clamd took no data for \(timeoutSeconds) s", kind: .timedOut)
            }
            throw ClamAVError("sending to clamd failed: \(String(cString: strerror(errno)))", kind: .unreachable)
        }
        errno = 0
        guard let reply = SocketIO.readUntil(fd, terminator: 0) else {
            if errno == EAGAIN || errno == EWOULDBLOCK {
                throw ClamAVError("clamd did not answer within \(timeoutSeconds) s", kind: .timedOut)
            }
            throw ClamAVError("clamd closed the connection without an answer", kind: .unreachable)
        }
        return String(decoding: reply, as: UTF8.self)
    }
}
