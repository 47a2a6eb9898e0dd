import DequeModule
import Synchronization

/// A bounded queue between the request path and a sender that works in batches (spans to the
/// collector, state to Redis): adding never waits; when the sender falls behind, the oldest items
/// go first and the caller counts them.
public final class WorkQueue<Element: Sendable>: Sendable {
    public let capacity: Int
    private let items = Mutex<Deque<Element>>([])
    private let waiter = Mutex<CheckedContinuation<Void, Never>?>(nil)

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds an item; returns how many old items it pushed out, and the queue's length.
    public func add(_ item: Element) -> (dropped: Int, count: Int) {
        items.withLock { items in
            items.append(item)
            let dropped = max(0, items.count - capacity)
            if dropped > 0 { items.removeFirst(dropped) }
            return (dropped, items.count)
        }
    }

    /// Puts back a batch the sender could not deliver, ahead of newer items; returns how many
    /// items that pushed out.
    public func requeue(_ batch: [Element]) -> Int {
        items.withLock { items in
            items.prepend(contentsOf: batch)
            let dropped = max(0, items.count - capacity)
            if dropped > 0 { items.removeFirst(dropped) }
            return dropped
        }
    }

    public func takeBatch(_ limit: Int) -> [Element]? {
        items.withLock { items in
            guard !items.isEmpty else { return nil }
            let batch = Array(items.prefix(limit))
            items.removeFirst(batch.count)
            return batch
        }
    }

    public var count: Int { items.withLock { $0.count } }

    /// Ends the sender's current `wait`.
    public func wake() {
        waiter.withLock { $0.take() }?.resume()
    }

    /// Waits until `wake` or until `interval` passed.
    public func wait(upTo interval: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    self.waiter.withLock { $0 = continuation }
                }
            }
            group.addTask {
                try? await Task.sleep(for: interval)
                self.wake()
            }
            // Whichever ends first; the other is woken (a cancelled timer wakes the waiter, a
            // woken waiter leaves the timer to end on its cancellation).
            await group.next()
            group.cancelAll()
        }
    }
}
