import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Flow events from the Datapath Manager on this node: follows its `StreamEvents` and hands
/// each event to the pipeline as a flow record, and publishes its `Stats` on /metrics. When the
/// manager is not there (not started yet, restarting) it retries every second and says so once
/// per outage; each reconnect is counted (`flows` / `datapath_reconnect`).
///
/// A reconnect resumes after the last event received (the manager numbers its events per run
/// and replays what it still holds), so a dropped connection loses nothing the manager kept;
/// what it no longer kept arrives as `lost_events` on the first event. The first connection
/// starts from the manager's last event at that moment (its `Stats`), so even events before the
/// first one received are resumed from. A manager that restarted in between is counted
/// (`flows` / `datapath_manager_restarted`): what the old run published after the last event
/// received cannot be known.
///
/// The ring buffer's losses, and the manager's own when this source fell behind, arrive on the
/// events (`lost_events`) and are counted as `flows` / `datapath_lost_events`. Handing a record
/// to a full pipeline suspends: the wait backs up into the manager's per-subscriber buffer, whose
/// overflow is counted the same way.
public struct DatapathFlowSource: Service {
    let socket: String
    let consumer: any RecordConsumer
    /// Where the manager's counters are published (the collector's /metrics).
    let metrics: MetricsRegistry
    let cnf: String
    let node: String
    let logger: Logger
    var statsInterval: Duration = .seconds(5)
    var retryInterval: Duration = .seconds(1)

    public init(
        socket: String, consumer: any RecordConsumer, metrics: MetricsRegistry, cnf: String, node: String,
        logger: Logger, statsInterval: Duration = .seconds(5)
    ) {
        self.socket = socket
        self.consumer = consumer
        self.metrics = metrics
        self.cnf = cnf
        self.node = node
        self.logger = logger
        self.statsInterval = statsInterval
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await follow() }
                group.addTask { await publishStats() }
            }
        }
    }

    static func declareMetrics(_ metrics: MetricsRegistry) {
        metrics.declare(
            "edgetrail_datapath_rule_packets_total", .counter,
            help: "Packets each datapath rule matched (from the Datapath Manager; a new rule set starts again at 0).")
        metrics.declare("edgetrail_datapath_rule_bytes_total", .counter, help: "Bytes each datapath rule matched.")
        metrics.declare(
            "edgetrail_datapath_rule_drops_total", .counter, help: "Packets each datapath rule dropped (deny, ratelimit).")
        metrics.declare(
            "edgetrail_datapath_ring_buffer_lost_total", .counter,
            help: "Flow events the datapath's ring buffer had no room for.")
        metrics.declare("edgetrail_datapath_open_flows", .gauge, help: "Flows the datapath tracks now.")
        metrics.declare("edgetrail_datapath_flow_table_size", .gauge, help: "Flows the datapath's flow table holds.")
        metrics.declare(
            "edgetrail_datapath_flows_untracked_total", .counter,
            help: "New flows the full flow table had no room for: they passed under the rules, unaccounted and without events.")
        metrics.declare("edgetrail_datapath_rules_version", .gauge, help: "Version of the active datapath rule set.")
        metrics.declare(
            "edgetrail_datapath_flows_total", .counter,
            help: "Flows the datapath started, by the action its rules gave them (from the flow events followed).")
    }

    /// Flow starts seen, by action, for `edgetrail_datapath_flows_total`.
    private final class FlowCounts: Sendable {
        let byAction = Mutex<[String: Int]>([:])
    }

    private let flowCounts = FlowCounts()

    private func countFlow(_ message: Edgetrail_V1_FlowEventMessage) {
        guard message.event.phase == .start else { return }
        let action = message.event.action.ruleName
        let count = flowCounts.byAction.withLock { counts -> Int in
            counts[action, default: 0] += 1
            return counts[action]!
        }
        metrics.set("edgetrail_datapath_flows_total", [("action", action)], to: Double(count))
    }

    /// Reads the manager's counters every `statsInterval` into /metrics (rules by position and
    /// shorthand). Quiet while the manager is away; `follow` reports that.
    private func publishStats() async {
        Self.declareMetrics(metrics)
        while !Task.isCancelled {
            if let (rules, stats) = try? await DatapathManagerClient.with(socket: socket, { client in
                (try await client.listRules(Edgetrail_V1_ListRulesRequest()), try await client.stats(Edgetrail_V1_StatsRequest()))
            }) {
                let (parsed, _) = DatapathMessages.rules(rules.rules)
                func labels(_ counters: Edgetrail_V1_RuleStats) -> [(String, String)] {
                    let index = Int(counters.ruleID) - 1
                    return [
                        ("rule", String(counters.ruleID)),
                        ("match", parsed.indices.contains(index) ? parsed[index].shorthand : "?"),
                    ]
                }
                let values: [(String, (Edgetrail_V1_RuleStats) -> UInt64)] = [
                    ("packets", \.packets), ("bytes", \.bytes), ("drops", \.drops),
                ]
                for (name, value) in values {
                    metrics.replace(
                        "edgetrail_datapath_rule_\(name)_total",
                        with: stats.rules.map { (labels($0), Double(value($0))) })
                }
                metrics.set("edgetrail_datapath_ring_buffer_lost_total", to: Double(stats.ringBufferLost))
                metrics.set("edgetrail_datapath_open_flows", to: Double(stats.openFlows))
                metrics.set("edgetrail_datapath_flow_table_size", to: Double(stats.flowTableSize))
                metrics.set("edgetrail_datapath_flows_untracked_total", to: Double(stats.flowsUntracked))
                metrics.set("edgetrail_datapath_rules_version", to: Double(rules.version))
            }
            try? await Task.sleep(for: statsInterval)
        }
    }

    /// Whether the stream was ever up, whether an outage was reported since, and the last event
    /// received (where a reconnect resumes).
    private final class LinkState: Sendable {
        let value = Mutex((connectedBefore: false, outageReported: false))
        let resume = Mutex<(run: UInt64, after: UInt64)?>(nil)

        /// Notes the last event received: a reconnect resumes after it.
        func received(_ message: Edgetrail_V1_FlowEventMessage) {
            resume.withLock { $0 = (message.managerRun, message.sequence) }
        }

        /// Marks the stream up; true when this is a reconnect (after an outage).
        func up() -> (first: Bool, reconnect: Bool) {
            value.withLock { state in
                defer { state = (true, false) }
                return (!state.connectedBefore || state.outageReported, state.connectedBefore && state.outageReported)
            }
        }

        /// Marks an outage; true the first time since the stream was last up.
        func down() -> Bool {
            value.withLock { state in
                defer { state.outageReported = true }
                return !state.outageReported
            }
        }
    }

    private func follow() async {
        let link = LinkState()
        while !Task.isCancelled {
            do {
                try await DatapathManagerClient.with(socket: socket) { client in
                    // The manager answering its Stats is the link up; its run and last event
                    // say where a first connection starts and whether it restarted since.
                    let stats = try await client.stats(Edgetrail_V1_StatsRequest())
                    let change = link.up()
                    if change.first {
                        logger.info("following the Datapath Manager's flow events", metadata: ["socket": "\(socket)"])
                    }
                    if change.reconnect { consumer.count(.datapathReconnect) }
                    let resume = link.resume.withLock { resume -> (run: UInt64, after: UInt64) in
                        let point = resume ?? (stats.managerRun, stats.lastSequence)
                        resume = point
                        return point
                    }
                    if resume.run != stats.managerRun {
                        consumer.count(.datapathManagerRestarted)
                        logger.warning(
                            "the Datapath Manager restarted: flow events of its previous run after the last one received are not known",
                            metadata: ["socket": "\(socket)"])
                    }
                    var request = Edgetrail_V1_StreamEventsRequest()
                    (request.resumeRun, request.resumeAfter) = resume
                    try await client.streamEvents(request) { response in
                        for try await message in response.messages {
                            link.received(message)
                            countFlow(message)
                            let record = FlowReplaySource.record(message, cnf: cnf, node: node, now: wallClockNanoseconds())
                            // Suspends while the pipeline is full: the wait backs up into the
                            // manager's per-subscriber buffer, not onto a thread.
                            _ = await consumer.deliver([record], from: .flows)
                            consumer.count(.datapathLostEvents, Int(message.event.lostEvents))
                        }
                    }
                }
                if !Task.isCancelled, link.down() {
                    logger.warning("the Datapath Manager ended the flow event stream; reconnecting", metadata: ["socket": "\(socket)"])
                }
            } catch {
                if Task.isCancelled { break }
                if link.down() {
                    logger.warning(
                        "cannot follow the Datapath Manager's flow events; retrying every second",
                        metadata: ["socket": "\(socket)", "error": "\(DatapathManagerClient.explain(error, socket: socket))"])
                }
            }
            try? await Task.sleep(for: retryInterval)
        }
    }
}
