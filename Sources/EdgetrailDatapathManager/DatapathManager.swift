import EdgetrailCore
import EdgetrailDatapath
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

    public static let defaultSocketPath = "/run/edgetrail/datapath.sock"

    public init(
        interface: String, networkNamespace: String? = nil, socketPath: String = Self.defaultSocketPath,
        objectPath: String = BPFDatapath.defaultObjectPath(), node: String = ProcessInfo.processInfo.hostName,
        idleTimeoutNanoseconds: UInt64 = 60_000_000_000, subscriberBuffer: Int = 65_536
    ) {
        self.interface = interface
        self.networkNamespace = networkNamespace
        self.socketPath = socketPath
        self.objectPath = objectPath
        self.node = node
        self.idleTimeoutNanoseconds = idleTimeoutNanoseconds
        self.subscriberBuffer = subscriberBuffer
    }
}

/// Owns the eBPF datapath of an edge node: loads and attaches the programs, applies rule sets,
/// binds flows to cookies, and fans the flow events out to every `StreamEvents` subscriber.
///
/// One lock guards the datapath; everything that names an interface runs inside the node's
/// network namespace. `run()` is the event pump (a blocking loop on its own thread): it waits on
/// the ring buffer without the lock, reads what arrived, sweeps idle flows once a second, and
/// carries the ring buffer's losses to the subscribers on their next event.
public final class DatapathManager: Sendable {
    public let configuration: DatapathManagerConfiguration
    private let logger: Logger
    private let state: State
    private let subscribers = Mutex(Subscribers())
    private let stopped = Atomic<Bool>(false)
    private let eventDescriptor: Int32

    /// The datapath and what goes with it; only touched with `lock` held.
    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var datapath: BPFDatapath?
        var pods: [Edgetrail_V1_PodEndpoint] = []
        var reportedRingLoss: UInt64 = 0

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
    }

    /// Loads the programs and attaches them; a kernel refusal says what the verifier said or
    /// which capability is missing.
    public init(configuration: DatapathManagerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let datapath = try BPFDatapath(objectPath: configuration.objectPath)
        try Self.inNamespace(configuration.networkNamespace) { () throws(DatapathError) in
            try datapath.attach(interface: configuration.interface)
        }
        eventDescriptor = try datapath.eventDescriptor()
        state = State(datapath: datapath)
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

    /// A live stream of flow events from now on. It ends when the manager shuts down or the
    /// consumer stops iterating.
    public func subscribe() -> AsyncStream<Edgetrail_V1_FlowEventMessage> {
        let (stream, continuation) = AsyncStream<Edgetrail_V1_FlowEventMessage>.makeStream(
            bufferingPolicy: .bufferingNewest(configuration.subscriberBuffer))
        let id = subscribers.withLock { subscribers in
            defer { subscribers.next += 1 }
            subscribers.byID[subscribers.next] = Subscriber(continuation: continuation)
            return subscribers.next
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.byID.removeValue(forKey: id) }
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

    /// Hands events to every subscriber; each event carries the losses its subscriber has not
    /// been told of yet.
    func publish(_ events: [Edgetrail_V1_FlowEventMessage], ringLoss: UInt64) {
        guard !events.isEmpty || ringLoss > 0 else { return }
        subscribers.withLock { subscribers in
            for id in subscribers.byID.keys {
                guard var subscriber = subscribers.byID[id] else { continue }
                subscriber.unreported += ringLoss
                for var event in events {
                    event.event.lostEvents = subscriber.unreported
                    subscriber.unreported = 0
                    switch subscriber.continuation.yield(event) {
                    case .dropped(let oldest):
                        // The subscriber fell behind: the oldest buffered event is gone; it and
                        // the losses it carried go on the next one.
                        subscriber.unreported += 1 + oldest.event.lostEvents
                    case .enqueued, .terminated: break
                    @unknown default: break
                    }
                }
                subscribers.byID[id] = subscriber
            }
        }
    }
}

/// The manager has detached its programs (it is shutting down): nothing can be asked of it.
public struct DatapathManagerStopping: Error, CustomStringConvertible {
    public var description: String { "the Datapath Manager is shutting down" }
}
