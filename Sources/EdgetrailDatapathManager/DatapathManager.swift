import EdgetrailCore
import EdgetrailDatapath
import EdgetrailDatapathAPI
import EdgetrailNet
import EdgetrailProto
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How a Datapath Manager runs on its node.
public struct DatapathManagerConfiguration: Sendable {
    /// The node's client-facing interface the programs attach to.
    public var interface: String
    /// A named network namespace (`ip netns`) the interface lives in; `nil`: this process's own.
    public var networkNamespace: String?
    /// Where the gRPC service listens.
    public var socketPath: String
    /// The compiled programs (`bpf/.output/datapath.bpf.o`).
    public var objectPath: String
    /// The node's name, carried on every flow event.
    public var node: String
    /// A flow with no packet for this long is ended (reason idle) by the sweep.
    public var idleTimeoutNanoseconds: UInt64
    /// Events buffered per `StreamEvents` subscriber before the oldest are dropped (and counted).
    public var subscriberBuffer: Int
    /// The newest events kept for subscribers that reconnect and resume (`FlowEventLog`).
    public var replayBuffer: Int
    /// Flows the flow table holds; `nil`: the programs' own size (`ET_MAX_FLOWS`, 65,536).
    public var flowTableSize: Int?

    public static let defaultSocketPath = "/run/edgetrail/datapath.sock"

    public init(
        interface: String, networkNamespace: String? = nil, socketPath: String = Self.defaultSocketPath,
        objectPath: String = BPFDatapath.defaultObjectPath(), node: String = ProcessInfo.processInfo.hostName,
        idleTimeoutNanoseconds: UInt64 = 60_000_000_000, subscriberBuffer: Int = 65_536,
        replayBuffer: Int = 16_384, flowTableSize: Int? = nil
    ) {
        self.interface = interface
        self.networkNamespace = networkNamespace
        self.socketPath = socketPath
        self.objectPath = objectPath
        self.node = node
        self.idleTimeoutNanoseconds = idleTimeoutNanoseconds
        self.subscriberBuffer = subscriberBuffer
        self.replayBuffer = replayBuffer
        self.flowTableSize = flowTableSize
    }
}

/// Owns the eBPF datapath of an edge node: loads and attaches the programs, applies rule sets,
/// binds flows to cookies, and fans the flow events out to every `StreamEvents` subscriber.
///
/// One lock guards the datapath; everything that names an interface runs inside the node's
/// network namespace. `run()` is the event pump (a blocking loop on its own thread): it waits on
/// the ring buffer without the lock, reads what arrived, sweeps idle flows once a second, and
/// carries the ring buffer's losses to the subscribers on their next event. Events are numbered
/// per run and the newest kept, so a subscriber that reconnects resumes where it was.
public final class DatapathManager: Sendable {
    public let configuration: DatapathManagerConfiguration
    private let logger: Logger
    private let state: State
    private let subscribers: Mutex<Subscribers>
    private let stopped = Atomic<Bool>(false)
    private let eventDescriptor: Int32

    /// The datapath and what goes with it; only touched with `lock` held.
    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var datapath: BPFDatapath?
        var pods: [Edgetrail_V1_PodEndpoint] = []
        var reportedRingLoss: UInt64 = 0
        var reportedUntracked: UInt64 = 0

        init(datapath: BPFDatapath) { self.datapath = datapath }
    }

    private struct Subscriber {
        var continuation: AsyncStream<Edgetrail_V1_FlowEventMessage>.Continuation
        /// Losses not yet reported to this subscriber (ring buffer and its own overflow).
        var unreported: UInt64 = 0
    }

    private struct Subscribers {
        var next = 0
        var byID: [Int: Subscriber] = [:]
        var log: FlowEventLog
    }

    /// Loads the programs and attaches them; a kernel refusal says what the verifier said or
    /// which capability is missing.
    public init(configuration: DatapathManagerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let datapath = try BPFDatapath(objectPath: configuration.objectPath, flowTableSize: configuration.flowTableSize)
        try Self.inNamespace(configuration.networkNamespace) { () throws(DatapathError) in
            try datapath.attach(interface: configuration.interface)
        }
        eventDescriptor = try datapath.eventDescriptor()
        state = State(datapath: datapath)
        subscribers = Mutex(
            Subscribers(log: FlowEventLog(run: UInt64.random(in: 1...UInt64.max), capacity: configuration.replayBuffer)))
        logger.info(
            "datapath attached",
            metadata: [
                "interface": "\(configuration.interface)",
                "netns": "\(configuration.networkNamespace ?? "-")", "object": "\(configuration.objectPath)",
            ])
    }

    /// Detaches the programs and removes the qdisc the manager added. Idempotent.
    public func shutdown() {
        stop()
        let datapath = state.lock.withLock { () -> BPFDatapath? in
            defer { state.datapath = nil }
            return state.datapath
        }
        endStreams()
        guard let datapath else { return }
        try? Self.inNamespace(configuration.networkNamespace) { datapath.detach() }
        logger.info("datapath detached", metadata: ["interface": "\(configuration.interface)"])
    }

    private static func inNamespace<T, E: Error>(_ name: String?, _ body: () throws(E) -> T) throws -> T {
        guard let name else { return try body() }
        return try NetworkNamespace.run(named: name, body)
    }

    /// Runs `body` with the datapath, under the lock, inside the node's namespace.
    private func withDatapath<T>(_ body: (BPFDatapath, State) throws -> T) throws -> T {
        try state.lock.withLock {
            guard let datapath = state.datapath else { throw DatapathManagerStopping() }
            return try Self.inNamespace(configuration.networkNamespace) { try body(datapath, state) }
        }
    }

    // MARK: Rules

    /// Makes `request`'s rules active, atomically; a set with problems is refused whole with
    /// every problem, and the active set stays.
    public func apply(_ request: Edgetrail_V1_ApplyRulesRequest) throws -> UInt64 {
        do {
            return try applyChecked(request)
        } catch {
            logger.warning("rule set refused", metadata: ["reason": "\(error)"])
            throw error
        }
    }

    private func applyChecked(_ request: Edgetrail_V1_ApplyRulesRequest) throws -> UInt64 {
        let (rules, conversionProblems) = DatapathMessages.rules(request.rules)
        guard conversionProblems.isEmpty else {
            throw DatapathError("rule set refused, the active rules stay:\n  " + conversionProblems.joined(separator: "\n  "))
        }
        return try withDatapath { datapath, state in
            var pods: [DatapathPod] = []
            var problems: [String] = []
            for (index, pod) in request.pods.enumerated() {
                switch NeighborTable.pod(pod, index: index) {
                case .success(let resolved): pods.append(resolved)
                case .failure(let problem): problems.append(problem.message)
                }
            }
            guard problems.isEmpty else {
                throw DatapathError("rule set refused, the active rules stay:\n  " + problems.joined(separator: "\n  "))
            }
            let version = try datapath.apply(rules, pods: pods)
            state.pods = request.pods
            logger.info("rules applied", metadata: ["version": "\(version)", "rules": "\(rules.count)"])
            return version
        }
    }

    public func listRules() throws -> Edgetrail_V1_ListRulesResponse {
        try withDatapath { datapath, _ in
            var response = Edgetrail_V1_ListRulesResponse()
            response.version = datapath.version
            response.rules = datapath.rules.enumerated().map { DatapathMessages.message($1, id: UInt32($0 + 1)) }
            return response
        }
    }

    public func stats() throws -> Edgetrail_V1_StatsResponse {
        try withDatapath { datapath, _ in
            var response = Edgetrail_V1_StatsResponse()
            response.rules = datapath.stats().enumerated().map { index, counters in
                var stats = Edgetrail_V1_RuleStats()
                stats.ruleID = UInt32(index + 1)
                stats.packets = counters.packets
                stats.bytes = counters.bytes
                stats.drops = counters.drops
                return stats
            }
            response.ringBufferLost = datapath.lostEvents()
            response.openFlows = UInt64(datapath.openFlows())
            response.flowsUntracked = datapath.untrackedFlows()
            response.flowTableSize = UInt64(datapath.flowTableSize)
            (response.managerRun, response.lastSequence) = subscribers.withLock { ($0.log.run, $0.log.lastSequence) }
            return response
        }
    }

    /// Binds a flow (client to server) to a cookie; returns whether the flow is already known.
    public func bind(_ request: Edgetrail_V1_BindFlowRequest) throws -> Bool {
        let tuple = try DatapathMessages.tuple(request.tuple)
        return try withDatapath { datapath, _ in
            try datapath.bind(tuple, cookie: request.cookie)
            return datapath.isTracking(tuple)
        }
    }

    // MARK: Events

    /// A stream of flow events: with `resumeRun` 0, those published from now on; otherwise first
    /// the held events after `after` of that run (see `FlowEventLog.replay`), what is no longer
    /// held counted on the first event. It ends when the manager shuts down or the consumer stops
    /// iterating.
    public func subscribe(resumeRun: UInt64 = 0, after: UInt64 = 0) -> AsyncStream<Edgetrail_V1_FlowEventMessage> {
        let (stream, continuation) = AsyncStream<Edgetrail_V1_FlowEventMessage>.makeStream(
            bufferingPolicy: .bufferingNewest(configuration.subscriberBuffer))
        // Replayed and registered under one lock: no event published meanwhile is missed or
        // sent twice.
        let (id, replay) = subscribers.withLock { subscribers in
            let replay = subscribers.log.replay(run: resumeRun, after: after)
            var subscriber = Subscriber(continuation: continuation, unreported: replay.notReplayed)
            for event in replay.events { Self.deliver(event, to: &subscriber) }
            defer { subscribers.next += 1 }
            subscribers.byID[subscribers.next] = subscriber
            return (subscribers.next, replay)
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.byID.removeValue(forKey: id) }
        }
        if resumeRun != 0 {
            var metadata: Logger.Metadata = ["replayed": "\(replay.events.count)", "not_replayed": "\(replay.notReplayed)"]
            if replay.otherRun { metadata["note"] = "the subscriber followed an earlier run of the manager" }
            let level: Logger.Level = replay.notReplayed > 0 || replay.otherRun ? .warning : .info
            logger.log(level: level, "a subscriber resumed the flow event stream", metadata: metadata)
        }
        return stream
    }

    /// Ends every event stream (their consumers see the end, not an error).
    public func endStreams() {
        let ending = subscribers.withLock { subscribers in
            defer { subscribers.byID = [:] }
            return Array(subscribers.byID.values)
        }
        for subscriber in ending { subscriber.continuation.finish() }
    }

    public var subscriberCount: Int { subscribers.withLock { $0.byID.count } }

    /// The event pump; returns after `stop()`.
    public func run() {
        var lastSweep = DispatchTime.now().uptimeNanoseconds
        while !stopped.load(ordering: .relaxed) {
            var descriptor = pollfd(fd: eventDescriptor, events: Int16(POLLIN), revents: 0)
            _ = Glibc.poll(&descriptor, 1, 100)
            let now = DispatchTime.now().uptimeNanoseconds
            let sweep = now - lastSweep >= 1_000_000_000
            if sweep { lastSweep = now }
            let result: (events: [DatapathFlowEvent], ringLoss: UInt64)
            do {
                result = try withDatapath { datapath, state in
                    var events = try datapath.poll(timeoutMilliseconds: 0)
                    if sweep { events += datapath.sweepIdle(idleNanoseconds: configuration.idleTimeoutNanoseconds) }
                    let lost = datapath.lostEvents()
                    defer { state.reportedRingLoss = lost }
                    let untracked = datapath.untrackedFlows()
                    if untracked != state.reportedUntracked {
                        logger.warning(
                            "the flow table is full: new flows pass under the rules but are not accounted and give no events",
                            metadata: [
                                "untracked": "\(untracked &- state.reportedUntracked)",
                                "flow_table_size": "\(datapath.flowTableSize)",
                            ])
                        state.reportedUntracked = untracked
                    }
                    return (events, lost &- state.reportedRingLoss)
                }
            } catch {
                if !stopped.load(ordering: .relaxed) { logger.error("reading flow events failed", metadata: ["error": "\(error)"]) }
                continue
            }
            if result.ringLoss > 0 {
                logger.warning("the flow event ring buffer was full", metadata: ["lost": "\(result.ringLoss)"])
            }
            publish(result.events.map { DatapathMessages.message($0, node: configuration.node) }, ringLoss: result.ringLoss)
        }
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    /// Numbers events, keeps them for replay, and hands them to every subscriber; each event
    /// carries the losses its subscriber has not been told of yet.
    func publish(_ events: [Edgetrail_V1_FlowEventMessage], ringLoss: UInt64) {
        guard !events.isEmpty || ringLoss > 0 else { return }
        subscribers.withLock { subscribers in
            let numbered = subscribers.log.append(events, ringLoss: ringLoss)
            guard !numbered.isEmpty else { return }
            for id in subscribers.byID.keys {
                guard var subscriber = subscribers.byID[id] else { continue }
                for event in numbered { Self.deliver(event, to: &subscriber) }
                subscribers.byID[id] = subscriber
            }
        }
    }

    /// Yields one event (whose `lost_events` holds the ring buffer's losses it reports) with the
    /// subscriber's own unreported losses added.
    private static func deliver(_ event: Edgetrail_V1_FlowEventMessage, to subscriber: inout Subscriber) {
        var event = event
        event.event.lostEvents += subscriber.unreported
        subscriber.unreported = 0
        switch subscriber.continuation.yield(event) {
        case .dropped(let oldest):
            // The subscriber fell behind: the oldest buffered event is gone; it and the losses
            // it carried go on the next one.
            subscriber.unreported += 1 + oldest.event.lostEvents
        case .enqueued, .terminated: break
        @unknown default: break
        }
    }
}

/// The manager has detached its programs (it is shutting down): nothing can be asked of it.
public struct DatapathManagerStopping: Error, CustomStringConvertible {
    public var description: String { "the Datapath Manager is shutting down" }
}
