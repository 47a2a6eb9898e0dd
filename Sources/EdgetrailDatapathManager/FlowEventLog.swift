import EdgetrailProto

/// The flow events a manager published last, numbered, so a subscriber that lost its stream
/// (the collector restarting its connection, a network hiccup on the socket) can resume where
/// it was instead of missing what happened while it was away.
///
/// Pure logic, driven by the manager's event pump: `append` numbers what the pump publishes,
/// `replay` answers a subscriber that names the last event it received. It holds the newest
/// `capacity` events; what a resuming subscriber asks for beyond them is not replayed but
/// counted, and the count travels on the first replayed (or next live) event's `lost_events` —
/// never silent, as with the ring buffer's own losses.
struct FlowEventLog {
    /// Random per manager run: a subscriber's sequence number means nothing in another run.
    let run: UInt64
    let capacity: Int
    /// The sequence number of the last event appended (0: none yet).
    private(set) var lastSequence: UInt64 = 0
    /// The held events, oldest first, as a ring over `storage`.
    private var storage: [Edgetrail_V1_FlowEventMessage] = []
    private var oldest = 0
    /// Ring-buffer losses reported while no event was published: they go on the next event.
    private var carriedRingLoss: UInt64 = 0

    init(run: UInt64, capacity: Int) {
        self.run = run
        self.capacity = max(capacity, 1)
    }

    /// What a subscriber that resumes gets.
    struct Replay: Equatable {
        var events: [Edgetrail_V1_FlowEventMessage]
        /// Events after the subscriber's last that are no longer held (or of another run).
        var notReplayed: UInt64
        /// The subscriber's run is not this one: the manager restarted since.
        var otherRun: Bool
    }

    /// Numbers `events` and keeps them. Each returned event's `lost_events` holds the ring
    /// buffer's losses it reports (`ringLoss` on the first, with any carried from a poll that
    /// had no events); a subscriber adds its own losses to it.
    mutating func append(_ events: [Edgetrail_V1_FlowEventMessage], ringLoss: UInt64) -> [Edgetrail_V1_FlowEventMessage] {
        carriedRingLoss += ringLoss
        guard !events.isEmpty else { return [] }
        var numbered = events
        for index in numbered.indices {
            lastSequence += 1
            numbered[index].sequence = lastSequence
            numbered[index].managerRun = run
            numbered[index].event.lostEvents = index == 0 ? carriedRingLoss : 0
            keep(numbered[index])
        }
        carriedRingLoss = 0
        return numbered
    }

    private mutating func keep(_ event: Edgetrail_V1_FlowEventMessage) {
        if storage.count < capacity {
            storage.append(event)
        } else {
            storage[oldest] = event
            oldest = (oldest + 1) % capacity
        }
    }

    /// The held events after `after` of `run`. Run 0 asks for nothing (a subscriber that
    /// starts live). Another run replays this run's held events from its first and counts those
    /// of this run no longer held.
    func replay(run requested: UInt64, after: UInt64) -> Replay {
        guard requested != 0 else { return Replay(events: [], notReplayed: 0, otherRun: false) }
        let otherRun = requested != run
        let from = otherRun ? 0 : min(after, lastSequence)
        let held = storage.count
        let firstHeld = lastSequence - UInt64(held) + 1
        let wanted = lastSequence - from
        let notReplayed = wanted > UInt64(held) ? wanted - UInt64(held) : 0
        let start = max(from + 1, firstHeld)
        var events: [Edgetrail_V1_FlowEventMessage] = []
        if start <= lastSequence {
            events.reserveCapacity(Int(lastSequence - start + 1))
            for sequence in start...lastSequence {
                events.append(storage[(oldest + Int(sequence - firstHeld)) % held])
            }
        }
        return Replay(events: events, notReplayed: notReplayed, otherRun: otherRun)
    }
}
