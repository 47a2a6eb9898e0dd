import CBPF
import EdgetrailCore
import Foundation

// Stats, cookies, flow events and the idle sweep.
extension BPFDatapath {
    /// Counters per rule of the active set, by the rule's index in it.
    public func stats() -> [DatapathRuleStats] {
        ruleIDs[Int(generation)].map { id in
            var key = Self.statsSlot(id)
            var values = [et_rule_stats](repeating: et_rule_stats(), count: possibleCPUs)
            var total = DatapathRuleStats()
            if bpf_map_lookup_elem(mapFD(.ruleStats), &key, &values) == 0 {
                for value in values {
                    total.packets += value.packets
                    total.bytes += value.bytes
                    total.drops += value.drops
                }
            }
            return total
        }
    }

    /// Flow events the ring buffer had no room for, since load.
    public func lostEvents() -> UInt64 {
        perCPUTotal(.lost)
    }

    /// New flows the full flow table had no room for, since load: their packets went on under
    /// the rules, unaccounted and without events.
    public func untrackedFlows() -> UInt64 {
        perCPUTotal(.flowsUntracked)
    }

    /// The sum over CPUs of a one-counter per-CPU array.
    func perCPUTotal(_ map: DatapathMap) -> UInt64 {
        var key: UInt32 = 0
        var values = [UInt64](repeating: 0, count: possibleCPUs)
        guard bpf_map_lookup_elem(mapFD(map), &key, &values) == 0 else { return 0 }
        return values.reduce(0, +)
    }

    /// How many flows the flow table holds.
    public var flowTableSize: Int {
        Int(bpf_map__max_entries(maps[.flows]!.map))
    }

    /// The largest flow table the manager accepts (16 M flows, ~1.6 GB of kernel memory).
    public static let maximumFlowTableSize = 1 << 24

    /// Flows the datapath is tracking now.
    public func openFlows() -> Int {
        flowKeys().count
    }

    /// Binds a flow to a session cookie; its events carry it from now on.
    public func bind(_ tuple: FlowTuple, cookie: UInt64) throws(DatapathError) {
        try update(.cookies, tuple.raw, cookie)
    }

    /// Whether the datapath is tracking a flow now.
    public func isTracking(_ tuple: FlowTuple) -> Bool {
        var key = tuple.raw
        var flow = et_flow()
        return bpf_map_lookup_elem(mapFD(.flows), &key, &flow) == 0
    }

    private func openRingBuffer() throws(DatapathError) -> OpaquePointer {
        if let ringBuffer { return ringBuffer }
        let context = Unmanaged.passUnretained(self).toOpaque()
        let opened = ring_buffer__new(mapFD(.events), { context, data, size in
            guard let context, let data, size >= MemoryLayout<et_event>.size else { return 0 }
            let datapath = Unmanaged<BPFDatapath>.fromOpaque(context).takeUnretainedValue()
            datapath.pendingEvents.append(data.loadUnaligned(as: et_event.self))
            return 0
        }, context, nil)
        guard let opened else { throw .system("cannot open the flow event ring buffer", errno) }
        ringBuffer = opened
        return opened
    }

    /// A descriptor that becomes readable when flow events are waiting: a caller can wait on it
    /// with poll(2) without holding the datapath, then `poll(timeoutMilliseconds: 0)`.
    public func eventDescriptor() throws(DatapathError) -> Int32 {
        ring_buffer__epoll_fd(try openRingBuffer())
    }

    /// Waits up to `timeoutMilliseconds` for a batch of flow events to be signalled, then returns
    /// every event waiting (signalled or not).
    public func poll(timeoutMilliseconds: Int32) throws(DatapathError) -> [DatapathFlowEvent] {
        let ringBuffer = try openRingBuffer()
        // The programs wake the reader only once a batch is waiting (see datapath.bpf.c), so
        // after the wait whatever is there is read, woken or not.
        if timeoutMilliseconds > 0 {
            let waited = ring_buffer__poll(ringBuffer, timeoutMilliseconds)
            guard waited >= 0 || waited == -EINTR else { throw .system("reading flow events failed", waited) }
        }
        let result = ring_buffer__consume(ringBuffer)
        guard result >= 0 || result == -EINTR else { throw .system("reading flow events failed", result) }
        let raw = pendingEvents
        pendingEvents.removeAll()
        return raw.map(event)
    }

    /// Ends flows with no packet for `idleNanoseconds`: returns their end events (reason idle)
    /// and forgets them. The programs keep no last-seen time (see datapath.h): a flow is idle
    /// when its packet counts have not moved since this sweep last saw them move, so the end
    /// time is accurate to the interval between sweeps (a flow of one packet: its start).
    public func sweepIdle(idleNanoseconds: UInt64) -> [DatapathFlowEvent] {
        var monotonic = timespec()
        clock_gettime(CLOCK_MONOTONIC, &monotonic)
        let now = UInt64(monotonic.tv_sec) * 1_000_000_000 + UInt64(monotonic.tv_nsec)
        var ended: [DatapathFlowEvent] = []
        var stillOpen: [FlowTuple: FlowActivity] = [:]
        for key in flowKeys() {
            var tuple = key
            var flow = et_flow()
            guard bpf_map_lookup_elem(mapFD(.flows), &tuple, &flow) == 0 else { continue }
            let flowTuple = FlowTuple(key)
            let packets = flow.packets_in &+ flow.packets_out
            var activity = activity[flowTuple] ?? FlowActivity(packets: packets, since: packets <= 1 ? flow.start_ns : now)
            if activity.packets != packets { activity = FlowActivity(packets: packets, since: now) }
            guard now > activity.since, now - activity.since > idleNanoseconds else {
                stillOpen[flowTuple] = activity
                continue
            }
            var cookie: UInt64 = 0
            _ = bpf_map_lookup_elem(mapFD(.cookies), &tuple, &cookie)
            var raw = et_event()
            raw.type = UInt32(ET_EVENT_FLOW_END.rawValue)
            raw.reason = UInt32(ET_END_IDLE.rawValue)
            raw.tuple = key
            raw.rule_id = flow.rule_id
            raw.action = flow.action
            raw.cookie = cookie
            raw.start_ns = flow.start_ns
            raw.end_ns = max(activity.since, flow.start_ns)
            raw.packets_in = flow.packets_in
            raw.packets_out = flow.packets_out
            raw.bytes_in = flow.bytes_in
            raw.bytes_out = flow.bytes_out
            raw.drops = flow.drops
            _ = bpf_map_delete_elem(mapFD(.flows), &tuple)
            ended.append(event(raw))
        }
        activity = stillOpen
        return ended
    }

    private func flowKeys() -> [et_tuple] {
        var keys: [et_tuple] = []
        var current = et_tuple()
        var next = et_tuple()
        var result = bpf_map_get_next_key(mapFD(.flows), nil, &next)
        while result == 0 {
            keys.append(next)
            current = next
            result = bpf_map_get_next_key(mapFD(.flows), &current, &next)
        }
        return keys
    }

    private func event(_ raw: et_event) -> DatapathFlowEvent {
        let index = ruleIDs[Int(generation)].firstIndex(of: raw.rule_id)
        func unix(_ monotonic: UInt64) -> UInt64 {
            monotonic == 0 ? 0 : UInt64(Int64(monotonic) + monotonicToUnix)
        }
        return DatapathFlowEvent(
            kind: raw.type == UInt32(ET_EVENT_FLOW_END.rawValue) ? .end : .start,
            reason: DatapathFlowEvent.EndReason(rawValue: raw.reason) ?? .none,
            tuple: FlowTuple(raw.tuple), ruleIndex: index, action: Self.action(code: raw.action),
            cookie: raw.cookie, startNs: unix(raw.start_ns), endNs: unix(raw.end_ns),
            packetsIn: raw.packets_in, packetsOut: raw.packets_out, bytesIn: raw.bytes_in, bytesOut: raw.bytes_out,
            drops: raw.drops)
    }
}
