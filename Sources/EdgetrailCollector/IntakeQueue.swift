import EdgetrailProto
import Foundation

/// Records accepted by a source, tagged with the intake journal entry that holds them.
public struct IntakeItem: Sendable {
    public var records: [Edgetrail_V1_Record]
    /// Each record's protobuf bytes (as journaled); empty when they are to be encoded later.
    public var encoded: [[UInt8]]
    public var origin: UInt64
    public var source: RecordSource
}

/// The bounded buffer between the sources and the pipeline. Sources that can push back on
/// their sender (OTLP answers "unavailable, retry") use `offer`; sources that cannot use `put`,
/// which waits for room.
public final class IntakeQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [IntakeItem] = []
    private var records = 0
    private var closed = false
    /// Async deliveries waiting for room; resumed when the pipeline takes what is queued.
    private var roomWaiters: [CheckedContinuation<Void, Never>] = []
    /// Records the queue holds before it counts as full.
    public let capacity: Int

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// True when another `offer` would be refused.
    public var isFull: Bool {
        condition.lock()
        defer { condition.unlock() }
        return records >= capacity
    }

    /// Adds without waiting; false when full or closed.
    @discardableResult
    public func offer(_ item: IntakeItem) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, records < capacity else { return false }
        items.append(item)
        records += item.records.count
        condition.broadcast()
        return true
    }

    /// Adds, waiting while full; false only when closed.
    @discardableResult
    public func put(_ item: IntakeItem) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !closed, records >= capacity { condition.wait() }
        guard !closed else { return false }
        items.append(item)
        records += item.records.count
        condition.broadcast()
        return true
    }

    /// Adds even when full (the caller waited for room with `waitForRoom`); false only when closed.
    @discardableResult
    public func force(_ item: IntakeItem) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return false }
        items.append(item)
        records += item.records.count
        condition.broadcast()
        return true
    }

    /// Returns once the queue has room (or is closed), suspending meanwhile without holding a thread.
    public func waitForRoom() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            guard !closed, records >= capacity else {
                condition.unlock()
                continuation.resume()
                return
            }
            roomWaiters.append(continuation)
            condition.unlock()
        }
    }

    private func resumeRoomWaiters() {
        condition.lock()
        let waiters = roomWaiters
        roomWaiters.removeAll()
        condition.unlock()
        for waiter in waiters { waiter.resume() }
    }

    /// Everything queued, waiting up to `timeout` seconds for something to arrive.
    public func take(timeout: Double) -> [IntakeItem] {
        condition.lock()
        if items.isEmpty, !closed { _ = condition.wait(until: Date().addingTimeInterval(timeout)) }
        let taken = items
        items.removeAll(keepingCapacity: true)
        records = 0
        condition.broadcast()
        let waiters = roomWaiters
        roomWaiters.removeAll()
        condition.unlock()
        for waiter in waiters { waiter.resume() }
        return taken
    }

    /// Wakes every waiter; later `offer`/`put` are refused.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
        resumeRoomWaiters()
    }
}
