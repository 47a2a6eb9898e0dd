import EdgetrailDatapathManager
import EdgetrailProto
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Flow events from the Datapath Manager on this node: follows its `StreamEvents` and hands
/// each event to the pipeline as a flow record. When the manager is not there (not started
/// yet, restarting) it retries every second and says so once per outage; each reconnect is
/// counted (`flows` / `datapath_reconnect`), because events while disconnected are not seen.
///
/// The ring buffer's losses, and the manager's own when this source fell behind, arrive on the
/// events (`lost_events`) and are counted as `flows` / `datapath_lost_events`. Handing a record
/// to a full pipeline waits: the wait backs up into the manager's per-subscriber buffer, whose
/// overflow is counted the same way.
struct DatapathFlowSource: Service {
    let socket: String
    let pipeline: CollectorPipeline
    let cnf: String
    let node: String
    let logger: Logger
    var retryInterval: Duration = .seconds(1)

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            await follow()
        }
    }

    /// Whether the stream was ever up, and whether an outage was reported since.
    private final class LinkState: Sendable {
        let value = Mutex((connectedBefore: false, outageReported: false))

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
                    try await client.streamEvents(Edgetrail_V1_StreamEventsRequest()) { response in
                        for try await message in response.messages {
                            let change = link.up()
                            if change.first {
                                logger.info("following the Datapath Manager's flow events", metadata: ["socket": "\(socket)"])
                            }
                            if change.reconnect { pipeline.count("flows", "datapath_reconnect") }
                            let record = FlowReplaySource.record(message, cnf: cnf, node: node, now: wallClockNanoseconds())
                            _ = pipeline.accept([record], source: "flows", wait: true)
                            pipeline.count("flows", "datapath_lost_events", Int(message.event.lostEvents))
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
