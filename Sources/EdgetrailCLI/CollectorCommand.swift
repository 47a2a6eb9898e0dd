import ArgumentParser
import EdgetrailCollector
import EdgetrailCore
import EdgetrailFilters
import Logging

struct CollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collector",
        abstract: "Run the edge collector: spans, flow events and Redis snapshots joined on the cookie, shipped to Kafka.",
        discussion: """
            Reads a pipeline file (see collectors/edge.yaml): sources (OTLP/gRPC spans, flow events from the Datapath \
            Manager or a recording, Redis snapshots under cookie:*), the cookie join, filter rules, and the Kafka sink \
            with its on-disk spool. Accepted records are journaled before they are acknowledged, and a \
            batch leaves the spool only once the broker acknowledged it, so a crash or a broker outage \
            loses nothing accepted. Metrics on http://127.0.0.1:9464/metrics by default. \
            SIGINT/SIGTERM shut down gracefully: sources stop, the join is emptied, the spool drained.
            """)

    @Option(help: "The pipeline file.")
    var config = "collectors/edge.yaml"

    @Flag(help: "Only validate the pipeline file: print 'ok' or every problem as FILE:LINE:COLUMN: message.")
    var check = false

    @Option(help: "Also append every batch the join releases (before cookie rules) to this capture file, for 'edgetrail filters test'.")
    var capture: String?

    @Option(help: "The node's name on every record, instead of the pipeline file's collector.node (one file for many nodes, as a DaemonSet has it).")
    var node: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        var configuration: CollectorConfiguration
        do {
            configuration = try CollectorConfiguration.load(path: config)
            configuration.captureFile = capture
        } catch {
            for diagnostic in error.diagnostics { print(diagnostic) }
            throw ExitCode.failure
        }
        if let node {
            guard !node.isEmpty, node.count <= 253, !node.contains(where: \.isWhitespace) else {
                throw commandFailure("--node '\(node)' is not a node name (1-253 characters, no spaces)")
            }
            configuration.join.node = node
        }
        do {
            _ = try RuleCompiler.load(paths: configuration.filterFiles)
        } catch {
            for diagnostic in error.diagnostics { print(diagnostic) }
            throw ExitCode.failure
        }
        if check {
            print("ok")
            return
        }
        let logger = makeLogger(label: "edgetrail.collector", component: "collector", level: logLevel)
        do {
            let collector = try Collector(configuration: configuration, logger: logger)
            logger.notice(
                "collector started",
                metadata: ["cnf": "\(configuration.join.cnf)", "node": "\(configuration.join.node)",
                           "brokers": "\(configuration.kafka.brokers)", "topic": "\(configuration.kafka.topic)"])
            try await collector.run()
            logger.notice("collector stopped")
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }
}
