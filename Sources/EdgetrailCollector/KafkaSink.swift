import EdgetrailCore
import EdgetrailKafka
import EdgetrailProto
import EdgetrailSpool
import EdgetrailTelemetry
import Foundation
import Logging
import SwiftProtobuf
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the sink ships batches and where it spools them until the broker acknowledges.
public struct KafkaSinkConfiguration: Sendable {
    public var brokers: String
    public var topic: String = "edgetrail.telemetry"
    /// Partitions to create the topic with if it does not exist yet (nil: the broker's automatic
    /// creation decides). Central's instances in one consumer group share the partitions, so
    /// this is how many of them can consume at once. An existing topic is left as it is.
    public var partitions: Int?
    /// `lz4` or `zstd` (or `none`).
    public var compression: String = "lz4"
    public var spool: SpoolConfiguration
    /// When batches are outstanding, no acknowledgement came for this long, and yet the broker
    /// answers, the producer is taken to be stuck (e.g. a broker restarted empty no longer knows
    /// its idempotent sequence) and is replaced; every unacknowledged batch is sent again.
    public var stallMilliseconds: Int = 10_000
    /// Batches handed to librdkafka and not yet acknowledged, at most. Beyond it batches wait in
    /// the spool (a backlog read back from disk as acknowledgements come), so a long outage
    /// fills the spool, not memory, and never blocks the pipeline.
    public var maxInFlightBatches: Int = 20_000
    /// The largest Kafka message (key and value) the sink sends: librdkafka's
    /// `message.max.bytes`, which must not exceed the broker's and the topic's limit. The join
    /// cuts a cookie's batch into messages under it; a batch the broker still finds too large is
    /// split in two and sent again.
    public var maxMessageBytes: Int = 1_000_000

    public init(brokers: String, spoolDirectory: String) {
        self.brokers = brokers
        self.spool = SpoolConfiguration(directory: spoolDirectory)
    }
}

/// Counts the sink keeps; the collector exports them on /metrics.
public struct KafkaSinkCounters: Sendable, Hashable {
    /// Batches handed to the producer (including resends after a restart or a new producer).
    public var sent = 0
    /// Batches the broker acknowledged.
    public var acknowledged = 0
    /// Records in acknowledged batches.
    public var acknowledgedRecords = 0
    /// Batches refused because the spool was full, and the records in them.
    public var refusedBatches = 0
    public var refusedRecords = 0
    /// Batches sent again: recovered from the spool on start, or after the producer was replaced.
    public var resent = 0
    /// Times the producer hit a fatal error and was replaced.
    public var producerRestarts = 0
    /// Seconds from spooling to acknowledgement, summed, and how many were timed.
    public var deliverySecondsTotal = 0.0
    /// Batches the broker found too large, split in two and sent again.
    public var splitBatches = 0
    /// Records dropped because even alone they were too large for a message (counted, logged).
    public var tooLargeRecords = 0
}

/// Ships `CookieBatch`es to Kafka, keyed by the cookie as 16 hex digits, through a durable spool:
/// a batch is written to disk before it is handed to librdkafka and removed only when the broker
/// acknowledged it. Batches found in the spool on start (after a crash) are sent again.
///
/// Not thread-safe: one task drives it with `ship` and `pump`.
public final class KafkaSink {
    /// Bytes of a Kafka message besides the batch: the 16-byte key and librdkafka's framing of
    /// one message in a record batch.
    public static let messageOverheadBytes = 16 + 256

    public let configuration: KafkaSinkConfiguration
    public private(set) var counters = KafkaSinkCounters()
    private let spool: Spool
    private var producer: KafkaProducer
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    /// Spooled and not yet acknowledged (the payloads stay on disk only).
    private var inFlight: [UInt64: (records: Int, spooledAt: UInt64)] = [:]
    /// Spooled batches not handed to librdkafka yet, oldest first (`backlog[backlogHead...]`).
    private var backlog: [UInt64] = []
    private var backlogHead = 0
    /// When the last acknowledgement arrived (or the sink last had nothing outstanding).
    private var lastProgress: UInt64 = 0
    /// Since when the broker has answered, while batches wait; nil when it did not answer.
    private var reachableSince: UInt64?
    private var nextReachabilityCheck: UInt64 = 0
    /// Set once the topic exists as configured (or there is nothing to create); until then
    /// batches wait in the backlog, so the first produce does not auto-create the topic with
    /// the broker's default partition count.
    private let topic: TopicSetup

    public init(
        configuration: KafkaSinkConfiguration, logger: Logger,
        clock: @escaping @Sendable () -> UInt64 = wallClockNanoseconds
    ) throws {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        self.spool = try Spool(configuration: configuration.spool)
        self.producer = try Self.makeProducer(configuration)
        self.topic = TopicSetup(configuration: configuration, producer: producer, logger: logger)
        for path in spool.repairedSegments {
            logger.warning("cut off a torn entry at the end of the spool segment", metadata: ["segment": "\(path)"])
        }
        if !spool.recovered.isEmpty {
            logger.notice(
                "sending batches recovered from the spool",
                metadata: ["batches": "\(spool.recovered.count)", "bytes": "\(spool.usedBytes)"])
        }
        let now = clock()
        lastProgress = now
        for entry in spool.recovered {
            inFlight[entry.id] = (Self.recordCount(entry.payload), now)
            backlog.append(entry.id)
            counters.resent += 1
        }
        try refill()
    }

    private static func makeProducer(_ configuration: KafkaSinkConfiguration) throws -> KafkaProducer {
        var producerConfiguration = KafkaProducerConfiguration(brokers: configuration.brokers)
        producerConfiguration.compression = configuration.compression
        producerConfiguration.idempotent = true
        // A node ships one small batch per session spread over the topic's partitions: with
        // librdkafka's few milliseconds nearly every batch was a produce request (and a compressed
        // message set) of its own, which cost the collector and the broker more than the batches'
        // bytes. Sessions already wait out the join's settle window; 50 ms more fills requests.
        producerConfiguration.lingerMilliseconds = 50
        // Never give up on a message: the spool holds it until the broker takes it.
        producerConfiguration.messageTimeoutMilliseconds = 0
        producerConfiguration.properties["queue.buffering.max.messages"] = String(configuration.maxInFlightBatches + 1000)
        producerConfiguration.properties["message.max.bytes"] = String(configuration.maxMessageBytes)
        return try KafkaProducer(configuration: producerConfiguration)
    }

    /// Bytes the spool holds for batches not yet acknowledged.
    public var spoolBytes: Int { spool.usedBytes }
    /// Batches spooled and not yet acknowledged.
    public var pendingBatches: Int { spool.pendingCount }
    /// Spooled batches waiting to be handed to librdkafka.
    public var backlogBatches: Int { backlog.count - backlogHead }
    private var sentOutstanding: Int { inFlight.count - backlogBatches }

    /// Spools and sends one batch. Throws `SpoolError.full` (after counting and logging what it
    /// refused) when the spool has no room; nothing is lost silently. With `encodedRecords`
    /// (each record's bytes, in order) the records are framed as they are, not encoded again.
    public func ship(_ batch: Edgetrail_V1_CookieBatch, encodedRecords: [[UInt8]]? = nil) throws {
        // The join may hand over the records as bytes only.
        let recordCount = encodedRecords?.count ?? batch.records.count
        let key = Array(Cookie(batch.cookie).hex.utf8)
        let payload: [UInt8]
        if let encodedRecords {
            payload = RecordWire.batchBytes(batch, encoded: encodedRecords, prefix: key)
        } else {
            payload = key + (try batch.serializedBytes() as [UInt8])
        }
        let id: UInt64
        do {
            id = try spool.append(payload)
        } catch {
            counters.refusedBatches += 1
            counters.refusedRecords += recordCount
            logger.warning(
                "spool full: refused a batch",
                metadata: [
                    "cookie": "\(Cookie(batch.cookie))", "seq": "\(batch.seq)", "records": "\(recordCount)",
                    "error": "\(error)",
                ])
            throw error
        }
        inFlight[id] = (recordCount, clock())
        if backlogBatches == 0, sentOutstanding <= configuration.maxInFlightBatches, topic.ready {
            try send(id: id, payload: payload)
        } else {
            backlog.append(id)
        }
    }

    /// Hands backlog batches to librdkafka while there is room, reading them back from the spool.
    private func refill() throws {
        guard topic.ready else { return }
        while backlogBatches > 0 {
            let room = configuration.maxInFlightBatches - sentOutstanding
            guard room > 0 else { return }
            let take = min(room, 5000, backlogBatches)
            let ids = Array(backlog[backlogHead..<backlogHead + take])
            backlogHead += take
            for entry in try spool.entries(ids: ids) where inFlight[entry.id] != nil {
                try send(id: entry.id, payload: entry.payload)
            }
        }
        backlog.removeAll(keepingCapacity: true)
        backlogHead = 0
    }

    private func send(id: UInt64, payload: [UInt8]) throws {
        do {
            try producer.send(topic: configuration.topic, message: payload, keyLength: 16, id: id)
        } catch let error where error.isMessageTooLarge {
            try splitOrDrop(id: id, payload: payload, reason: error.message)
            return
        }
        counters.sent += 1
    }

    /// A spooled batch the client or the broker refused as too large: sending it again can never
    /// succeed, so it is replaced in the spool by its two halves (same cookie and `seq`; central
    /// stores records, not batches), each sent at once and split again if need be. A single
    /// record too large for any message is dropped, counted and logged. (Batches from the join
    /// are already under the limit; this catches a spool written under a larger limit, or a
    /// broker whose limit is below `maxMessageBytes`.)
    private func splitOrDrop(id: UInt64, payload: [UInt8], reason: String) throws {
        guard let entry = inFlight[id] else { return }
        let key = Array(payload.prefix(16))
        let batch = try? Edgetrail_V1_CookieBatch(serializedBytes: Array(payload.dropFirst(16)))
        guard let batch, batch.records.count > 1 else {
            let records = batch?.records.count ?? entry.records
            counters.tooLargeRecords += records
            logger.error(
                "the broker refused a record as too large for any message; dropped",
                metadata: [
                    "cookie": "\(String(decoding: key, as: UTF8.self))", "bytes": "\(payload.count)",
                    "max_message_bytes": "\(configuration.maxMessageBytes)", "error": "\(reason)",
                    "hint": "raise the broker's message.max.bytes and the collector's sinks.kafka.max_message_bytes",
                ])
            inFlight[id] = nil
            spool.acknowledge([id])
            return
        }
        let middle = batch.records.count / 2
        var halves = [batch, batch]
        halves[0].records = Array(batch.records[..<middle])
        halves[0].final = false
        halves[1].records = Array(batch.records[middle...])
        var pieces: [(UInt64, [UInt8], Int)] = []
        for half in halves {
            let bytes = key + (try half.serializedBytes() as [UInt8])
            // Appended before the original goes: a crash in between ships records twice, never none.
            pieces.append((try spool.append(bytes), bytes, half.records.count))
        }
        inFlight[id] = nil
        spool.acknowledge([id])
        counters.splitBatches += 1
        logger.notice(
            "a batch was too large for the broker; split in two and sent again",
            metadata: [
                "cookie": "\(String(decoding: key, as: UTF8.self))", "seq": "\(batch.seq)",
                "records": "\(batch.records.count)", "bytes": "\(payload.count)", "error": "\(reason)",
            ])
        for (pieceID, bytes, records) in pieces {
            inFlight[pieceID] = (records, entry.spooledAt)
            try send(id: pieceID, payload: bytes)
        }
    }

    /// Collects acknowledgements (waiting up to `timeoutMilliseconds`), removes acknowledged
    /// batches from the spool, and replaces the producer if it failed fatally.
    public func pump(timeoutMilliseconds: Int32 = 0) throws {
        try handle(producer.poll(timeoutMilliseconds: timeoutMilliseconds))
        try refill()
        if let fatal = producer.fatalError {
            try replaceProducer(reason: fatal)
            return
        }
        let now = clock()
        let stall = UInt64(configuration.stallMilliseconds) * 1_000_000
        if inFlight.isEmpty {
            lastProgress = now
            reachableSince = nil
        } else if topic.ready, now &- lastProgress > stall, now >= nextReachabilityCheck {
            // Stuck only if the broker has answered for a whole stall period meanwhile: right
            // after an outage the producer gets that long to deliver what it holds.
            nextReachabilityCheck = now + 2_000_000_000
            if producer.brokerReachable(timeoutMilliseconds: 2000) {
                let since = reachableSince ?? now
                reachableSince = since
                if since >= lastProgress, now &- since >= stall {
                    try replaceProducer(
                        reason: "no acknowledgement for \(configuration.stallMilliseconds) ms while the broker answers")
                }
            } else {
                reachableSince = nil
            }
        }
    }

    private func replaceProducer(reason: String) throws {
        logger.warning(
            "Kafka producer stuck or failed; replacing it and sending every unacknowledged batch again",
            metadata: ["reason": "\(reason)", "batches": "\(inFlight.count)"])
        counters.producerRestarts += 1
        producer = try Self.makeProducer(configuration)
        lastProgress = clock()
        reachableSince = nil
        // Everything unacknowledged goes out again, in spool order, through the backlog.
        backlog = inFlight.keys.sorted()
        backlogHead = 0
        counters.resent += backlog.count
        try refill()
    }

    /// Waits until every spooled batch is acknowledged or `timeoutMilliseconds` pass; true when
    /// nothing is pending.
    public func drain(timeoutMilliseconds: Int) throws -> Bool {
        let deadline = clock() + UInt64(timeoutMilliseconds) * 1_000_000
        while !inFlight.isEmpty, clock() < deadline {
            try pump(timeoutMilliseconds: 50)
        }
        return inFlight.isEmpty
    }

    private func handle(_ reports: [DeliveryReport]) throws {
        guard !reports.isEmpty else { return }
        var acknowledged: [UInt64] = []
        let now = clock()
        for report in reports {
            if report.isMessageTooLarge, let error = report.error {
                for entry in try spool.entries(ids: [report.id]) {
                    try splitOrDrop(id: entry.id, payload: entry.payload, reason: error)
                }
                continue
            }
            if let error = report.error {
                // With no message timeout this is rare (a purge or a fatal error); the batch
                // stays spooled and in flight, and goes out again with the next producer.
                logger.warning("the broker refused a batch; it stays spooled", metadata: ["error": "\(error)"])
                continue
            }
            guard let entry = inFlight.removeValue(forKey: report.id) else { continue }
            lastProgress = now
            reachableSince = nil
            acknowledged.append(report.id)
            counters.acknowledged += 1
            counters.acknowledgedRecords += entry.records
            counters.deliverySecondsTotal += Double(now &- entry.spooledAt) / 1e9
        }
        spool.acknowledge(acknowledged)
    }

    deinit {
        topic.stop()
    }

    private static func recordCount(_ payload: [UInt8]) -> Int {
        (try? Edgetrail_V1_CookieBatch(serializedBytes: Array(payload.dropFirst(16))))?.records.count ?? 0
    }
}

extension KafkaSink: BatchSink {
    public func pump() throws {
        try pump(timeoutMilliseconds: 0)
    }

    public var figures: BatchSinkFigures {
        var figures = BatchSinkFigures()
        figures.acknowledgedBatches = counters.acknowledged
        figures.acknowledgedRecords = counters.acknowledgedRecords
        figures.refusedRecords = counters.refusedRecords
        figures.tooLargeRecords = counters.tooLargeRecords
        figures.deliverySecondsTotal = counters.deliverySecondsTotal
        figures.producerRestarts = counters.producerRestarts
        figures.spoolBytes = spoolBytes
        figures.pendingBatches = pendingBatches
        figures.backlogBatches = backlogBatches
        return figures
    }
}

/// Creates the sink's topic with the configured partition count before its first batch, on a
/// thread of its own (a broker that does not answer must not hold up the pipeline): tried again
/// every 2 s while the broker cannot be reached. A broker that refuses (no permission, no
/// CreateTopics) is logged and shipping starts anyway, with the topic as the broker makes it.
final class TopicSetup: Sendable {
    private let state = Mutex<(ready: Bool, stopped: Bool)>((false, false))

    init(configuration: KafkaSinkConfiguration, producer: KafkaProducer, logger: Logger) {
        guard let partitions = configuration.partitions else {
            state.withLock { $0.ready = true }
            return
        }
        let topic = configuration.topic
        Thread.detachNewThread { [self] in
            while !state.withLock({ $0.stopped }) {
                do {
                    switch try producer.ensureTopic(topic, partitions: partitions, timeoutMilliseconds: 5000) {
                    case .created:
                        logger.notice("created the topic", metadata: ["topic": "\(topic)", "partitions": "\(partitions)"])
                    case .existed(let existing) where existing != partitions:
                        logger.warning(
                            "the topic exists with another partition count; it is left as it is",
                            metadata: [
                                "topic": "\(topic)", "partitions": "\(existing)", "configured": "\(partitions)",
                                "hint": "Kafka can add partitions but not remove them, and adding moves cookies to other partitions",
                            ])
                    case .existed:
                        break
                    }
                } catch let error as KafkaError where error.isUnreachable {
                    Thread.sleep(forTimeInterval: 2)
                    continue
                } catch {
                    logger.warning(
                        "could not create the topic; shipping anyway, the broker decides its partitions",
                        metadata: ["topic": "\(topic)", "partitions": "\(partitions)", "error": "\(error)"])
                }
                state.withLock { $0.ready = true }
                return
            }
        }
    }

    var ready: Bool { state.withLock { $0.ready } }

    func stop() {
        state.withLock { $0.stopped = true }
    }
}
