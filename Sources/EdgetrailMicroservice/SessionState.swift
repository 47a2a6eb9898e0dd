import EdgetrailCore
import EdgetrailRedis
import EdgetrailRuntime
import Logging
import ServiceLifecycle
import Synchronization

/// A μsrv's per-session state in Redis, under `cookie:<16 hex>:<μsrv>:<what>` (a hash), where the
/// collector snapshots it into the session. Writes are queued and sent in batches off the
/// request path; while Redis is unreachable they wait in a bounded queue (the oldest go first,
/// counted). Each key expires after `retention`, so sessions do not pile up in Redis.
public final class SessionState: Service, Sendable {
    public struct Counts: Sendable, Equatable {
        public var written = 0
        /// Writes dropped because the queue was full while Redis did not take them.
        public var dropped = 0
        public var failedBatches = 0
    }

    struct Write: Sendable {
        var key: String
        var fields: [(String, String)]
    }

    public let microservice: String
    /// Redis: `HOST:PORT`, or a Unix socket (what a pod uses).
    public let redis: Endpoint
    let retentionSeconds: Int
    let logger: Logger
    /// At most one warning per 10 s while the failure lasts.
    private let warnings = LogThrottle()
    private let queue = WorkQueue<Write>(capacity: 50_000)
    static let batchSize = 64
    private let counts = Mutex(Counts())
    /// Used by the sender alone, on NIO's thread pool.
    private let connection = Mutex<RedisConnection?>(nil)

    public init(microservice: String, redis: Endpoint, retentionSeconds: Int = 3600, logger: Logger) {
        self.microservice = microservice
        self.redis = redis
        self.retentionSeconds = retentionSeconds
        self.logger = logger
    }

    /// The key of one piece of this μsrv's state for a session.
    public func key(_ cookie: Cookie, _ what: String) -> String { "\(cookie.redisKeyPrefix)\(microservice):\(what)" }

    /// Queues `fields` to be written into the session's hash `what`.
    public func set(_ cookie: Cookie, _ what: String, _ fields: [(String, String)]) {
        let (dropped, count) = queue.add(Write(key: key(cookie, what), fields: fields))
        if dropped > 0 { counts.withLock { $0.dropped += dropped } }
        if count >= Self.batchSize / 2 { queue.wake() }
    }

    public var writeCounts: Counts { counts.withLock { $0 } }

    public func run() async throws {
        let stopping = Atomic<Bool>(false)
        await withGracefulShutdownHandler {
            while true {
                let last = stopping.load(ordering: .acquiring)
                while let batch = queue.takeBatch(Self.batchSize) {
                    do {
                        try await Blocking.run { [self] in try write(batch) }
                        counts.withLock { $0.written += batch.count }
                        // A short batch waits for the interval (a round trip per write would
                        // cost a thread hop per request).
                        if !last && queue.count < Self.batchSize / 2 { break }
                    } catch {
                        connection.withLock { $0 = nil }
                        counts.withLock { $0.failedBatches += 1 }
                        let dropped = queue.requeue(batch)
                        if dropped > 0 { counts.withLock { $0.dropped += dropped } }
                        if warnings.due() {
                            logger.warning(
                                "cannot write session state to Redis; writes wait in a queue of \(queue.capacity)",
                                metadata: ["redis": "\(redis)", "error": "\(error)"])
                        }
                        break
                    }
                }
                if last { return }
                await queue.wait(upTo: .milliseconds(50))
            }
        } onGracefulShutdown: {
            stopping.store(true, ordering: .releasing)
            self.queue.wake()
        }
    }

    private func write(_ batch0: [Write]) throws {
        try connection.withLock { connection in
            if connection == nil { connection = try RedisConnection(redis, timeoutSeconds: 2) }
            var batch = RESPBatch()
            let retention = "\(retentionSeconds)"
            for write in batch0 {
                batch.command(arguments: 2 + write.fields.count * 2)
                batch.argument("HSET")
                batch.argument(write.key)
                for (field, value) in write.fields {
                    batch.argument(field)
                    batch.argument(value)
                }
                batch.append(["EXPIRE", write.key, retention])
            }
            for reply in try connection!.pipeline(batch) {
                if case .error(let message) = reply { throw RedisError(message) }
            }
        }
    }
}
