import EdgetrailCentralAPI
import EdgetrailProto
import Foundation
import Synchronization

/// Stored batches, handed to the readers of `GET /v1/live` as they are stored. Each reader has
/// a bounded queue: one that falls behind loses the oldest entries and is told how many, and
/// never slows ingest down.
public final class LiveFeed: Sendable {
    /// Entries a reader may have waiting before the oldest are dropped.
    public let queueLimit: Int

    struct Reader {
        var cnf: String?
        var waiting: [LiveSession] = []
        var lost = 0
        let wake: AsyncStream<Void>.Continuation
    }

    private let readers = Mutex<[UUID: Reader]>([:])

    public init(queueLimit: Int = 20_000) {
        self.queueLimit = queueLimit
    }

    public var readerCount: Int { readers.withLock { $0.count } }

    /// Offers a stored batch to every reader whose CNF it matches.
    public func publish(_ batch: Edgetrail_V1_CookieBatch) {
        guard readerCount > 0 else { return }
        let session = LiveSession(batch)
        readers.withLock { readers in
            for key in readers.keys {
                guard readers[key]!.cnf == nil || readers[key]!.cnf == session.cnf else { continue }
                readers[key]!.waiting.append(session)
                if readers[key]!.waiting.count > queueLimit {
                    let excess = readers[key]!.waiting.count - queueLimit
                    readers[key]!.waiting.removeFirst(excess)
                    readers[key]!.lost += excess
                }
                readers[key]!.wake.yield()
            }
        }
    }

    /// A reader's stream of events: each holds what was stored since the previous one; an empty
    /// one comes every 15 s when nothing was stored.
    /// `interval` is the least time between two events (what batches them).
    public func subscribe(cnf: String?, interval: Duration = .milliseconds(200)) -> AsyncStream<LiveSessions> {
        let key = UUID()
        let (wake, wakeContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        readers.withLock { $0[key] = Reader(cnf: cnf, wake: wakeContinuation) }
        let (events, continuation) = AsyncStream<LiveSessions>.makeStream(bufferingPolicy: .bufferingNewest(4))
        let task = Task { [self] in
            for await _ in wake {
                let taken = self.readers.withLock { readers -> LiveSessions? in
                    guard var reader = readers[key] else { return nil }
                    defer { reader.waiting = []; reader.lost = 0; readers[key] = reader }
                    return LiveSessions(sessions: reader.waiting, lost: reader.lost)
                }
                guard let taken else { break }
                // An empty event is a heartbeat: writing it finds a reader that went away.
                continuation.yield(taken)
                try? await Task.sleep(for: interval)
            }
            continuation.finish()
        }
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(15))
                wakeContinuation.yield()
            }
        }
        continuation.onTermination = { [self] _ in
            task.cancel()
            heartbeat.cancel()
            wakeContinuation.finish()
            _ = self.readers.withLock { $0.removeValue(forKey: key) }
        }
        return events
    }
}
