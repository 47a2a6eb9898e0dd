import EdgetrailCore
import EdgetrailProto
import EdgetrailRuntime
import EdgetrailRedis
import Foundation
import Logging
import ServiceLifecycle

/// Which Redis the snapshot source watches.
public struct RedisSnapshotSourceConfiguration: Sendable, Hashable {
    /// `HOST:PORT`, or the Unix socket a node's Redis also listens on.
    public var endpoint: Endpoint
    public var database: Int = 0
    /// Keys to capture; μsrvs keep session state under `cookie:<hex>:<μsrv>:…`.
    public var keyPattern: String = "cookie:*"
    /// Wait between reconnection attempts after Redis went away.
    public var reconnectDelayMilliseconds: Int = 500
    /// Values larger than this are cut to it (a hash: whole fields by name until it is reached)
    /// and marked with their full size, so one huge value cannot stall the batch of its cookie.
    public var maxValueBytes: Int = 64 << 10

    public init(endpoint: Endpoint) {
        self.endpoint = endpoint
    }

    public init(host: String, port: Int) {
        self.init(endpoint: .tcp(host: host, port: port))
    }
}

/// What the snapshot source has seen; exported on /metrics.
public struct RedisSnapshotCounters: Sendable, Hashable {
    public var captured = 0
    /// Keys under the pattern whose second part is not a 16-hex-digit cookie.
    public var malformedKeys = 0
    /// Keys of a type other than string or hash: recorded with their event and type, without a value.
    public var unsupportedTypes = 0
    /// Values cut to `maxValueBytes`.
    public var truncatedValues = 0
    /// `expire` events whose value was just captured by the command that set it (SET … EX).
    public var repeatsSkipped = 0
    public var reconnects = 0
}

/// Captures the value of every key under `cookie:*` at each change: it subscribes to Redis
/// keyspace notifications and reads the key (GET for strings, HGETALL for hashes) right after
/// the change. Survives Redis restarts by reconnecting and subscribing again.
///
/// Blocking: drive it from one thread with `step` (`RedisSnapshotSource` does, for the collector).
public final class RedisSnapshotReader: @unchecked Sendable {
    public let configuration: RedisSnapshotSourceConfiguration
    public private(set) var counters = RedisSnapshotCounters()
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    private var subscriber: RedisConnection?
    private var reader: RedisConnection?
    private var nextAttempt: UInt64 = 0
    private var connectedOnce = false
    /// Keys whose value was captured since they were last deleted. An `expire` never changes a
    /// value, and every change of one raises its own notification before it: for these keys
    /// (`SET … EX`, or HSET then EXPIRE as the μsrvs write their state) it shows nothing new and
    /// is skipped without asking Redis. Bounded: forgotten all at once past `recentLimit`.
    private var captured = Set<String>()
    private let recentLimit = 100_000

    public init(
        configuration: RedisSnapshotSourceConfiguration, logger: Logger,
        clock: @escaping @Sendable () -> UInt64 = wallClockNanoseconds
    ) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
    }

    /// True while subscribed.
    public var isConnected: Bool { subscriber != nil }

    private var channelPrefix: String { "__keyspace@\(configuration.database)__:" }

    private var source: String {
        switch configuration.endpoint {
        case .tcp(let host, let port): "redis://\(host):\(port)/\(configuration.database)"
        case .unix(let path): "redis+unix://\(path)?db=\(configuration.database)"
        }
    }

    /// Waits up to `timeoutMilliseconds` for changes and returns their snapshots. Connection
    /// problems are handled here (logged, retried after the reconnect delay), never thrown.
    public func step(timeoutMilliseconds: Int32) -> [Edgetrail_V1_Record] {
        guard let subscriber = connectIfNeeded() else {
            usleep(useconds_t(min(Int(timeoutMilliseconds), configuration.reconnectDelayMilliseconds)) * 1000)
            return []
        }
        // The notifications that arrived together are read back together: one round trip for
        // their types and one for their values, however many there are.
        var records: [Edgetrail_V1_Record] = []
        var unread: [(index: Int, type: ValueType)] = []
        var wait = timeoutMilliseconds
        do {
            while let message = try subscriber.nextReply(timeoutMilliseconds: wait) {
                wait = 0
                guard let (record, value) = capture(message) else { continue }
                if let value { unread.append((records.count, value)) }
                records.append(record)
                if records.count >= 1000 { break }
            }
        } catch {
            disconnect(reason: "\(error)")
        }
        do {
            try readValues(of: unread, in: &records)
        } catch {
            // Their values cannot be read: the changes are reported without them, as deletions
            // would be wrong and dropping them would lose that the key changed.
            for (index, _) in unread { records[index].snapshot.unsupportedType = "unread: \(error)" }
            disconnect(reason: "\(error)")
        }
        counters.captured += records.count
        return records
    }

    private func connectIfNeeded() -> RedisConnection? {
        if let subscriber { return subscriber }
        let now = clock()
        guard now >= nextAttempt else { return nil }
        nextAttempt = now + UInt64(configuration.reconnectDelayMilliseconds) * 1_000_000
        do {
            let reader = try RedisConnection(configuration.endpoint)
            try ensureNotifications(reader)
            if configuration.database != 0 { try reader.command("SELECT", String(configuration.database)) }
            let subscriber = try RedisConnection(configuration.endpoint)
            let reply = try subscriber.command("PSUBSCRIBE", channelPrefix + configuration.keyPattern)
            guard case .array = reply else { throw RedisError("PSUBSCRIBE answered \(reply)") }
            self.reader = reader
            self.subscriber = subscriber
            if connectedOnce {
                counters.reconnects += 1
                logger.notice("reconnected to Redis", metadata: ["redis": "\(source)"])
            }
            connectedOnce = true
            return subscriber
        } catch {
            logger.warning(
                "cannot subscribe to Redis; retrying",
                metadata: ["redis": "\(source)", "error": "\(error)",
                           "retry_ms": "\(configuration.reconnectDelayMilliseconds)"])
            return nil
        }
    }

    /// Keyspace events must be on for key events (K), generic (g), strings ($), hashes (h),
    /// expired (x) and evicted (e); turn on what is missing.
    private func ensureNotifications(_ connection: RedisConnection) throws {
        guard case .array(let parts) = try connection.command("CONFIG", "GET", "notify-keyspace-events"),
            parts.count == 2, let current = parts[1].text
        else { return }
        let flags = Set(current)
        var wanted = current
        for flag in "Kg$hxe" where !flags.contains(flag) && !(flag != "K" && flags.contains("A")) {
            wanted.append(flag)
        }
        guard wanted != current else { return }
        if case .error(let message) = try connection.command("CONFIG", "SET", "notify-keyspace-events", wanted) {
            throw RedisError("keyspace notifications are off and cannot be turned on: \(message)")
        }
        logger.notice("turned on Redis keyspace notifications", metadata: ["flags": "\(wanted)"])
    }

    private func disconnect(reason: String) {
        if subscriber != nil {
            logger.warning("lost the Redis connection; reconnecting", metadata: ["redis": "\(source)", "error": "\(reason)"])
        }
        subscriber = nil
        reader = nil
        nextAttempt = clock() + UInt64(configuration.reconnectDelayMilliseconds) * 1_000_000
    }

    /// What a changed key holds, as far as its event tells.
    enum ValueType: Equatable {
        case string
        case hash
        /// The event does not say (`expire`, `rename_to`, `restore`, …): Redis is asked (TYPE).
        case unknown

        /// The commands that raise these events work on one type only, so the value can be read
        /// without asking Redis for the key's type first (half the round trips and commands).
        init(event: String) {
            switch event {
            case "set", "setrange", "append", "incrby", "decrby", "incrbyfloat": self = .string
            case "hset", "hdel", "hincrby", "hincrbyfloat": self = .hash
            default: self = .unknown
            }
        }
    }

    /// A keyspace message `[pmessage, pattern, __keyspace@0__:KEY, EVENT]` to a snapshot, and
    /// the type of the value still to be read (nil: nothing to read).
    private func capture(_ message: RedisValue) -> (Edgetrail_V1_Record, ValueType?)? {
        guard case .array(let parts) = message, parts.count == 4, parts[0].text == "pmessage",
            let channel = parts[2].text, let event = parts[3].text, channel.hasPrefix(channelPrefix)
        else { return nil }
        let key = String(channel.dropFirst(channelPrefix.count))
        let pieces = key.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        guard pieces.count >= 2, pieces[0] == "cookie", let cookie = Cookie(hex: pieces[1]) else {
            counters.malformedKeys += 1
            logger.trace("key under the pattern without a cookie", metadata: ["key": "\(key)"])
            return nil
        }
        var record = Edgetrail_V1_Record()
        record.cookie = cookie.rawValue
        record.service = pieces.count >= 3 ? String(pieces[2]) : ""
        record.acceptedAtNs = clock()
        record.snapshot.key = key
        record.snapshot.event = event
        record.snapshot.atNs = record.acceptedAtNs
        record.snapshot.source = source
        switch event {
        case "del", "expired", "evicted", "rename_from":
            record.snapshot.deleted = true
            captured.remove(key)
            return (record, nil)
        case "expire" where captured.contains(key):
            counters.repeatsSkipped += 1
            return nil
        default:
            if captured.count >= recentLimit { captured.removeAll(keepingCapacity: true) }
            captured.insert(key)
            return (record, ValueType(event: event))
        }
    }

    /// Reads the values of the `unread` records, pipelined: GET for strings, HGETALL for hashes.
    /// Keys whose event does not tell their type are asked for it first (TYPE), and so is a key
    /// whose type changed since its event (its read answered WRONGTYPE).
    private func readValues(of unread: [(index: Int, type: ValueType)], in records: inout [Edgetrail_V1_Record]) throws {
        guard let reader, !unread.isEmpty else { return }
        let keys = unread.map { Array(records[$0.index].snapshot.key.utf8) }
        var types = unread.map { $0.type == .string ? "string" : $0.type == .hash ? "hash" : "" }
        func askTypes(_ positions: [Int]) throws {
            guard !positions.isEmpty else { return }
            let answers = try reader.pipeline(positions.map { [Self.typeCommand, keys[$0]] })
            for (position, answer) in zip(positions, answers) { types[position] = answer.text ?? "none" }
        }
        try askTypes(types.indices.filter { types[$0].isEmpty })
        var values = try read(keys, types: types, with: reader)
        let changed = values.keys.filter { if case .error? = values[$0] { return true } else { return false } }
        if !changed.isEmpty {
            try askTypes(changed)
            let again = try read(changed.map { keys[$0] }, types: changed.map { types[$0] }, with: reader)
            for (offset, position) in changed.enumerated() { values[position] = again[offset] }
        }
        for (position, item) in unread.enumerated() {
            apply(type: types[position], value: values[position], to: &records[item.index].snapshot)
        }
    }

    private static let typeCommand = Array("TYPE".utf8)
    private static let getCommand = Array("GET".utf8)
    private static let hashCommand = Array("HGETALL".utf8)

    /// One pipeline reading `keys` by their `types`; the answers by position (none for a type
    /// that is not read).
    private func read(_ keys: [[UInt8]], types: [String], with reader: RedisConnection) throws -> [Int: RedisValue] {
        var reads: [[[UInt8]]] = []
        var readers: [Int] = []
        for (position, type) in types.enumerated() {
            switch type {
            case "string": reads.append([Self.getCommand, keys[position]])
            case "hash": reads.append([Self.hashCommand, keys[position]])
            default: continue
            }
            readers.append(position)
        }
        guard !reads.isEmpty else { return [:] }
        var values: [Int: RedisValue] = [:]
        for (position, value) in zip(readers, try reader.pipeline(reads)) { values[position] = value }
        return values
    }

    private func apply(type: String, value: RedisValue?, to snapshot: inout Edgetrail_V1_Snapshot) {
        let limit = configuration.maxValueBytes
        switch type {
        case "string":
            if case .string(let bytes)? = value {
                if bytes.count > limit {
                    snapshot.fullSize = UInt64(bytes.count)
                    snapshot.stringValue = Data(bytes.prefix(limit))
                    counters.truncatedValues += 1
                } else {
                    snapshot.stringValue = Data(bytes)
                }
            } else {
                // Changed and gone again before it could be read.
                snapshot.deleted = true
            }
        case "hash":
            // Redis keeps no empty hash: no fields means the key went (its last field deleted,
            // or the key itself) before it could be read.
            if case .array(let items)? = value, !items.isEmpty {
                var all: [(String, [UInt8])] = []
                var index = 0
                while index + 1 < items.count {
                    if let name = items[index].text, case .string(let value) = items[index + 1] {
                        all.append((name, value))
                    }
                    index += 2
                }
                let fullSize = all.reduce(0) { $0 + $1.0.utf8.count + $1.1.count }
                var fields = Edgetrail_V1_HashFields()
                var kept = 0
                for (name, value) in all.sorted(by: { $0.0 < $1.0 }) {
                    let size = name.utf8.count + value.count
                    guard kept + size <= limit else { break }
                    fields.fields[name] = Data(value)
                    kept += size
                }
                if fullSize > limit {
                    snapshot.fullSize = UInt64(fullSize)
                    counters.truncatedValues += 1
                }
                snapshot.hashFields = fields
            } else {
                snapshot.deleted = true
            }
        case "none":
            // Changed and gone again before it could be read.
            snapshot.deleted = true
        default:
            snapshot.unsupportedType = type
            counters.unsupportedTypes += 1
        }
    }
}

/// The snapshot source of the collector: a `RedisSnapshotReader` on a thread of its own, handing
/// what it captures to the pipeline (waiting while the pipeline is full: Redis cannot be asked to
/// resend) and its own counts to the source-event counters.
public struct RedisSnapshotSource: Service {
    let reader: RedisSnapshotReader
    let consumer: any RecordConsumer

    public init(configuration: RedisSnapshotSourceConfiguration, consumer: any RecordConsumer, logger: Logger) {
        self.reader = RedisSnapshotReader(configuration: configuration, logger: logger)
        self.consumer = consumer
    }

    public func run() async throws {
        let stop = StopFlag()
        let (reader, consumer) = (self.reader, self.consumer)
        try await ThreadService(
            name: "snapshots",
            run: {
                var reported = RedisSnapshotCounters()
                while !stop.isSet {
                    let records = reader.step(timeoutMilliseconds: 100)
                    if !records.isEmpty { _ = consumer.put(records, from: .snapshots) }
                    let counters = reader.counters
                    consumer.count(.malformedKey, counters.malformedKeys - reported.malformedKeys)
                    consumer.count(.unsupportedType, counters.unsupportedTypes - reported.unsupportedTypes)
                    consumer.count(.redisReconnect, counters.reconnects - reported.reconnects)
                    consumer.count(.valueTruncated, counters.truncatedValues - reported.truncatedValues)
                    consumer.count(.repeatSkipped, counters.repeatsSkipped - reported.repeatsSkipped)
                    reported = counters
                }
            }, stop: { stop.set() }
        ).run()
    }
}
