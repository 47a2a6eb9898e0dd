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
/// keyspace notifications and reads the key (GET for strings, HGETALL for hashes) within a couple
/// of milliseconds of the change. Survives Redis restarts by reconnecting and subscribing again.
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
    private let connectionLog = LogThrottle()
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
        channelPrefix = "__keyspace@\(configuration.database)__:"
        channelPrefixBytes = Array(channelPrefix.utf8)
        source =
            switch configuration.endpoint {
            case .tcp(let host, let port): "redis://\(host):\(port)/\(configuration.database)"
            case .unix(let path): "redis+unix://\(path)?db=\(configuration.database)"
            }
    }

    /// True while subscribed.
    public var isConnected: Bool { subscriber != nil }

    /// How long changes are gathered after the first one before they are read and handed in.
    static let gatherNanoseconds: UInt64 = 2_000_000
    private let channelPrefix: String
    private let channelPrefixBytes: [UInt8]
    /// Where snapshots say they come from: `redis://HOST:PORT/DB` or `redis+unix://PATH?db=DB`.
    private let source: String

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
        var gatherUntil: UInt64?
        do {
            while true {
                guard let message = try subscriber.nextReply(timeoutMilliseconds: wait) else {
                    // Nothing within the wait: done, unless the gathering window is still open.
                    guard let until = gatherUntil, clock() < until else { break }
                    continue
                }
                if gatherUntil == nil {
                    // Changes come in bursts (each μsrv writes its state in pipelines): the
                    // bursts of a couple of milliseconds are read in one round trip and handed in
                    // as one intake (one journal write). A key changed twice within that window
                    // shows its later value in both snapshots.
                    gatherUntil = clock() + Self.gatherNanoseconds
                    wait = 1
                }
                guard let (record, value) = capture(message) else { continue }
                if let value { unread.append((records.count, value)) }
                records.append(record)
                if records.count >= 1000 || gatherUntil.map({ clock() >= $0 }) == true { break }
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
            // Retried every reconnect delay; said once per 10 s (reconnects are counted on /metrics).
            if connectionLog.due(now: now) {
                logger.warning(
                    "cannot subscribe to Redis; retrying",
                    metadata: ["redis": "\(source)", "error": "\(error)",
                               "retry_ms": "\(configuration.reconnectDelayMilliseconds)"])
            }
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
    /// the type of the value still to be read (nil: nothing to read). Read from the message's
    /// bytes: the source sees two messages per key the μsrvs write (the change, then its expiry).
    private func capture(_ message: RedisValue) -> (Edgetrail_V1_Record, ValueType?)? {
        guard case .array(let parts) = message, parts.count == 4, case .string(let kind) = parts[0],
            kind.elementsEqual("pmessage".utf8), case .string(let channel) = parts[2], let event = parts[3].text,
            channel.starts(with: channelPrefixBytes)
        else { return nil }
        let key = channel[channelPrefixBytes.count...]
        // cookie:<16 hex digits>[:<μsrv>[:…]]
        let colon = UInt8(ascii: ":")
        let prefix = "cookie:".utf8
        let hexStart = key.startIndex + prefix.count
        guard key.count >= prefix.count + 16, key.starts(with: prefix),
            key.count == prefix.count + 16 || key[hexStart + 16] == colon,
            let cookie = Cookie(hexBytes: key[hexStart..<hexStart + 16])
        else {
            counters.malformedKeys += 1
            logger.trace("key under the pattern without a cookie", metadata: ["key": "\(String(decoding: key, as: UTF8.self))"])
            return nil
        }
        let keyText = String(decoding: key, as: UTF8.self)
        let deletes = event == "del" || event == "expired" || event == "evicted" || event == "rename_from"
        if !deletes, event == "expire", captured.contains(keyText) {
            counters.repeatsSkipped += 1
            return nil
        }
        var record = Edgetrail_V1_Record()
        record.cookie = cookie.rawValue
        let serviceStart = hexStart + 17
        if serviceStart <= key.endIndex {
            let rest = key[serviceStart...]
            record.service = String(decoding: rest.prefix { $0 != colon }, as: UTF8.self)
        }
        let now = clock()
        record.acceptedAtNs = now
        var snapshot = Edgetrail_V1_Snapshot()
        snapshot.key = keyText
        snapshot.event = event
        snapshot.atNs = now
        snapshot.source = source
        if deletes {
            snapshot.deleted = true
            captured.remove(keyText)
            record.snapshot = snapshot
            return (record, nil)
        }
        if captured.count >= recentLimit { captured.removeAll(keepingCapacity: true) }
        captured.insert(keyText)
        record.snapshot = snapshot
        return (record, ValueType(event: event))
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
