import EdgetrailCore
import CHiredis
#if canImport(Glibc)
import Glibc
#endif

/// A reply from Redis.
public indirect enum RedisValue: Sendable, Hashable {
    case string([UInt8])
    case integer(Int64)
    case array([RedisValue])
    case null
    case status(String)
    case error(String)

    /// The value as UTF-8 text, for strings and statuses.
    public var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }
}

/// Redis could not be reached, or the connection broke.
public struct RedisError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One blocking connection to Redis through hiredis. Not for sharing between tasks: use one
/// connection per task (a subscribed connection can only wait for messages).
public final class RedisConnection: @unchecked Sendable {
    private let context: UnsafeMutablePointer<redisContext>
    public let host: String
    /// 0 for a Unix socket.
    public let port: Int
    /// `HOST:PORT` or the socket's path, for messages.
    public let address: String

    /// Connects over TCP, failing after `timeoutSeconds`.
    public convenience init(host: String, port: Int, timeoutSeconds: Double = 5) throws(RedisError) {
        try self.init(.tcp(host: host, port: port), timeoutSeconds: timeoutSeconds)
    }

    /// Connects over TCP or a Unix socket (which crosses network namespaces: a pod reaches the
    /// node's Redis through it), failing after `timeoutSeconds`.
    public init(_ endpoint: Endpoint, timeoutSeconds: Double = 5) throws(RedisError) {
        let timeout = timeval(
            tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - Double(Int(timeoutSeconds))) * 1e6))
        let connected: UnsafeMutablePointer<redisContext>?
        switch endpoint {
        case .tcp(let host, let port):
            (self.host, self.port) = (host, port)
            connected = redisConnectWithTimeout(host, Int32(port), timeout)
        case .unix(let path):
            (self.host, self.port) = (path, 0)
            connected = redisConnectUnixWithTimeout(path, timeout)
        }
        address = endpoint.description
        guard let context = connected else {
            throw RedisError("could not allocate a Redis connection")
        }
        if context.pointee.err != 0 {
            let reason = Self.errorText(context)
            redisFree(context)
            throw RedisError("could not connect to Redis at \(endpoint): \(reason)")
        }
        redisSetTimeout(context, timeout)
        self.context = context
    }

    deinit {
        redisFree(context)
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { buffer in
            String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Sends one command (binary-safe arguments) and waits for its reply.
    @discardableResult
    public func command(_ arguments: [[UInt8]]) throws(RedisError) -> RedisValue {
        let reply = withArgv(arguments) { argc, argv, lengths in
            redisCommandArgv(context, argc, argv, lengths)
        }
        guard let reply else {
            throw RedisError("Redis at \(address): \(Self.errorText(context))")
        }
        defer { freeReplyObject(reply) }
        return Self.convert(reply.assumingMemoryBound(to: redisReply.self))
    }

    /// Sends several commands at once and reads their replies in order (one round trip, not one
    /// per command).
    public func pipeline(_ commands: [[[UInt8]]]) throws(RedisError) -> [RedisValue] {
        var batch = RESPBatch()
        for arguments in commands { batch.append(arguments) }
        return try pipeline(batch)
    }

    /// Sends a batch written in Redis's wire form and reads its replies in order.
    public func pipeline(_ batch: RESPBatch) throws(RedisError) -> [RedisValue] {
        let commands = 0..<batch.count
        guard !commands.isEmpty else { return [] }
        let status = batch.bytes.withUnsafeBytes { bytes in
            redisAppendFormattedCommand(context, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        guard status == REDIS_OK else { throw RedisError("Redis at \(address): \(Self.errorText(context))") }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var reply: UnsafeMutableRawPointer?
            guard redisGetReply(context, &reply) == REDIS_OK, let reply else {
                throw RedisError("Redis at \(address): \(Self.errorText(context))")
            }
            replies.append(Self.convert(reply.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
        return replies
    }

    /// Sends one command given as text arguments.
    @discardableResult
    public func command(_ arguments: String...) throws(RedisError) -> RedisValue {
        try command(arguments.map { Array($0.utf8) })
    }

    /// Waits up to `timeoutMilliseconds` for the next pushed reply (a pub/sub message);
    /// `nil` when none arrived in time.
    public func nextReply(timeoutMilliseconds: Int32) throws(RedisError) -> RedisValue? {
        var reply: UnsafeMutableRawPointer?
        if redisGetReplyFromReader(context, &reply) != REDIS_OK {
            throw RedisError("Redis at \(address): \(Self.errorText(context))")
        }
        if reply == nil {
            var descriptor = pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, timeoutMilliseconds)
            if ready == 0 { return nil }
            if ready < 0 { throw RedisError("waiting for Redis failed: \(String(cString: strerror(errno)))") }
            if redisGetReply(context, &reply) != REDIS_OK {
                throw RedisError("Redis at \(address): \(Self.errorText(context))")
            }
        }
        guard let reply else { return nil }
        defer { freeReplyObject(reply) }
        return Self.convert(reply.assumingMemoryBound(to: redisReply.self))
    }

    private func withArgv<Result>(
        _ arguments: [[UInt8]],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> Result
    ) -> Result {
        // Copies keep each argument's bytes alive and contiguous for the call.
        let copies = arguments.map { bytes -> UnsafeMutablePointer<CChar> in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
            bytes.withUnsafeBytes { source in
                if let base = source.baseAddress {
                    UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: bytes.count)
                }
            }
            return pointer
        }
        defer { copies.forEach { $0.deallocate() } }
        var argv: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
        let lengths = arguments.map(\.count)
        return argv.withUnsafeMutableBufferPointer { argvBuffer in
            lengths.withUnsafeBufferPointer { lengthBuffer in
                body(Int32(arguments.count), argvBuffer.baseAddress!, lengthBuffer.baseAddress!)
            }
        }
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .string(bytes(value.str, value.len))
        case REDIS_REPLY_INTEGER:
            return .integer(value.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisValue] = []
            items.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                if let element = value.element[index] { items.append(convert(element)) }
            }
            return .array(items)
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(value.str, value.len), as: UTF8.self))
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }
}

/// Commands written straight into Redis's wire form (RESP), for `RedisConnection.pipeline`:
/// no intermediate copies of the arguments.
public struct RESPBatch: Sendable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var count = 0

    public init() {}

    public mutating func append(_ arguments: [[UInt8]]) {
        command(arguments: arguments.count)
        for argument in arguments {
            header(UInt8(ascii: "$"), argument.count)
            bytes += argument
            bytes.append(13)
            bytes.append(10)
        }
    }

    public mutating func append(_ arguments: [String]) {
        command(arguments: arguments.count)
        for argument in arguments { self.argument(argument) }
    }

    /// Starts a command of `arguments` arguments (its name first), each then given to `argument`:
    /// for a caller that would otherwise build an array of them only to have it copied here.
    public mutating func command(arguments: Int) {
        header(UInt8(ascii: "*"), arguments)
        count += 1
    }

    public mutating func argument(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            header(UInt8(ascii: "$"), utf8.count)
            bytes.append(contentsOf: utf8)
        }
        bytes.append(13)
        bytes.append(10)
    }

    private mutating func header(_ kind: UInt8, _ number: Int) {
        bytes.append(kind)
        // The decimal digits, written without making a String of them.
        var value = UInt(max(0, number))
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var first = digits.count
            repeat {
                first -= 1
                digits[first] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            } while value > 0
            bytes.append(contentsOf: digits[first...])
        }
        bytes.append(13)
        bytes.append(10)
    }
}
