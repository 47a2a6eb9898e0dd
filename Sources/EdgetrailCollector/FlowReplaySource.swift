import EdgetrailCore
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Logging
import ServiceLifecycle
import SwiftProtobuf

/// Replays recorded flow events: a file of JSON lines, each a `FlowEventMessage` in protobuf's
/// JSON form (what `edgetrail datapath events --json` records): replays a capture of the Datapath
/// Manager's event stream, for tests and for trying rules without a datapath.
///
/// The datapath's lost-event counts (`lost_events`) are carried through: summed into the
/// `datapath_lost_events` source counter, and kept on each record. A replay that reached the end
/// of its file is done; the service then returns.
public struct FlowReplaySource: Service {
    public let configuration: FlowReplaySourceConfiguration
    let consumer: any RecordConsumer
    let cnf: String
    let node: String
    let logger: Logger

    public init(
        configuration: FlowReplaySourceConfiguration, consumer: any RecordConsumer, cnf: String, node: String,
        logger: Logger
    ) {
        self.configuration = configuration
        self.consumer = consumer
        self.cnf = cnf
        self.node = node
        self.logger = logger
    }

    public func run() async throws {
        let stop = StopFlag()
        let replay = self
        try await ThreadService(
            name: "flows",
            run: {
                replay.run(
                    cnf: replay.cnf, node: replay.node, logger: replay.logger, clock: wallClockNanoseconds,
                    shouldStop: { stop.isSet }
                ) { records, lost, malformed in
                    _ = replay.consumer.put(records, from: .flows)
                    replay.consumer.count(.datapathLostEvents, lost)
                    replay.consumer.count(.malformedLine, malformed)
                }
            }, stop: { stop.set() }
        ).run()
    }

    /// A flow event as a record of the pipeline; an event without a node gets the collector's.
    static func record(_ message: Edgetrail_V1_FlowEventMessage, cnf: String, node: String, now: UInt64) -> Edgetrail_V1_Record {
        var record = Edgetrail_V1_Record()
        record.cookie = message.cookie
        record.cnf = cnf
        record.node = message.node.isEmpty ? node : message.node
        record.acceptedAtNs = now
        record.flow = message.event
        return record
    }

    /// Reads the file and hands each event to `deliver` (blocking), paced to the configured rate.
    /// A malformed line is reported with its line number and skipped.
    func run(
        cnf: String, node: String, logger: Logger, clock: @Sendable () -> UInt64,
        shouldStop: () -> Bool, deliver: ([Edgetrail_V1_Record], _ lost: Int, _ malformed: Int) -> Void
    ) {
        guard let text = try? String(contentsOfFile: configuration.path, encoding: .utf8) else {
            logger.error("cannot read the flow recording", metadata: ["path": "\(configuration.path)"])
            return
        }
        let started = Date()
        var sent = 0
        var batch: [Edgetrail_V1_Record] = []
        var lost = 0
        var malformed = 0
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if shouldStop() { break }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let message: Edgetrail_V1_FlowEventMessage
            do {
                message = try Edgetrail_V1_FlowEventMessage(jsonString: trimmed)
            } catch {
                malformed += 1
                logger.warning(
                    "skipped a malformed flow event",
                    metadata: ["location": "\(configuration.path):\(index + 1)", "error": "\(error)"])
                continue
            }
            lost += Int(message.event.lostEvents)
            batch.append(Self.record(message, cnf: cnf, node: node, now: clock()))
            sent += 1
            if configuration.eventsPerSecond > 0 {
                let due = started.addingTimeInterval(Double(sent) / configuration.eventsPerSecond)
                let wait = due.timeIntervalSinceNow
                if wait > 0 {
                    deliver(batch, lost, malformed)
                    batch.removeAll()
                    lost = 0
                    malformed = 0
                    Thread.sleep(forTimeInterval: wait)
                }
            }
            if batch.count >= 500 {
                deliver(batch, lost, malformed)
                batch.removeAll()
                lost = 0
                malformed = 0
            }
        }
        if !batch.isEmpty || lost > 0 || malformed > 0 { deliver(batch, lost, malformed) }
        logger.info("flow recording replayed", metadata: ["events": "\(sent)", "path": "\(configuration.path)"])
    }
}
