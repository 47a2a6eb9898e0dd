import EdgetrailProto
import Foundation

/// What the pipeline hands released batches to. Called from the pipeline's thread only.
public protocol BatchSink: AnyObject {
    /// Takes a batch for delivery. Once this returns, the batch is the sink's to keep (the Kafka
    /// sink has spooled it to disk), so the records it carries may leave the intake journal.
    /// `encodedRecords`, when given, are the records' protobuf bytes, so nothing is encoded twice.
    func ship(_ batch: Edgetrail_V1_CookieBatch, encodedRecords: [[UInt8]]?) throws
    /// Moves deliveries along: sends what waits, collects acknowledgements. Never blocks long.
    func pump() throws
    /// Waits up to `timeoutMilliseconds` for everything shipped to be acknowledged; true when
    /// nothing is left. What is left stays for the next start.
    func drain(timeoutMilliseconds: Int) throws -> Bool
    /// The sink's figures for /metrics.
    var figures: BatchSinkFigures { get }
}

/// What a sink reports on /metrics.
public struct BatchSinkFigures: Sendable, Hashable {
    public var acknowledgedBatches = 0
    public var acknowledgedRecords = 0
    /// Records of batches refused because the spool was full (counted as dropped).
    public var refusedRecords = 0
    /// Records the broker found too large even alone (counted as dropped).
    public var tooLargeRecords = 0
    public var deliverySecondsTotal = 0.0
    public var producerRestarts = 0
    public var spoolBytes = 0
    /// Batches shipped and not yet acknowledged.
    public var pendingBatches = 0
    /// Spooled batches waiting on disk for room in the producer.
    public var backlogBatches = 0

    public init() {}
}

/// A sink that keeps every batch in memory and acknowledges it at once: for tests of the
/// pipeline (crash safety, rule reload) without a broker.
public final class MemoryBatchSink: BatchSink, @unchecked Sendable {
    private let lock = NSLock()
    private var received: [Edgetrail_V1_CookieBatch] = []
    private var counted = BatchSinkFigures()

    public init() {}

    /// Every batch shipped so far, in order.
    public var batches: [Edgetrail_V1_CookieBatch] { lock.withLock { received } }

    public func ship(_ batch: Edgetrail_V1_CookieBatch, encodedRecords: [[UInt8]]?) throws {
        // As a consumer of the topic would read it: with the records the bytes carry.
        var batch = batch
        if batch.records.isEmpty, let encodedRecords {
            batch.records = encodedRecords.compactMap { try? Edgetrail_V1_Record(serializedBytes: $0) }
        }
        lock.withLock {
            received.append(batch)
            counted.acknowledgedBatches += 1
            counted.acknowledgedRecords += batch.records.count
        }
    }

    public func pump() throws {}

    public func drain(timeoutMilliseconds: Int) throws -> Bool { true }

    public var figures: BatchSinkFigures { lock.withLock { counted } }
}
