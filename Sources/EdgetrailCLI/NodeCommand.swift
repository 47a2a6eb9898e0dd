import ArgumentParser
import EdgetrailInfra
import EdgetrailNodeAgent
import Foundation
import Logging

/// Options every `node` subcommand shares.
struct NodeOptions: ParsableArguments {
    @Option(help: "The node's name: its namespace, and the prefix of its client's and origin's.")
    var name = "edge-1"

    @Option(help: "Folder for the node's pids, logs, sockets and collector data (default: RUN/nodes/NAME, RUN being ./.run or $EDGETRAIL_RUN_DIR).")
    var runDir: String?

    var infra: InfraConfiguration { InfraConfiguration.fromEnvironment() }

    var node: LocalNode {
        let directory = runDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "\(infra.runDirectory)/nodes/\(name)"
        return LocalNode(name: name, runDirectory: directory, executable: selfExecutable(), infra: infra)
    }
}

struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Build, check and remove a local edge node (network namespaces, the eBPF datapath, the collector).",
        discussion: """
            'up' builds the node NAME (default edge-1) as DESIGN.md lays it out: the namespaces NAME, \
            NAME-client (10.200.0.2) and NAME-origin (10.201.0.2, a real HTTP origin serving \
            examples/origin/), and starts on the node its Datapath Manager (eBPF on the client's link) \
            its edge collector (spans on 127.0.0.1:4317 and RUN/otlp.sock, Redis, the manager's \
            flow events, shipping to the local broker) and its node agent (RUN/agent.sock, which \
            'edgetrail cnf deploy' talks to). The local infrastructure must be up \
            ('edgetrail infra up'). Needs root. Client traffic is plain: \
            ip netns exec edge-1-client curl http://10.201.0.2/
            """,
        subcommands: [Up.self, Status.self, Down.self, Agent.self])

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Build the node and start its parts, saying what and where.")

        @OptionGroup var options: NodeOptions

        @Option(help: "Where the node's collector takes OTLP/gRPC spans, HOST:PORT (also on RUN/otlp.sock).")
        var otlp = "127.0.0.1:4317"

        @Option(help: "Where the node's collector serves its metrics, HOST:PORT.")
        var metrics = "127.0.0.1:9464"

        @Option(help: "The topic the node's collector ships to.")
        var topic = "edgetrail.telemetry"

        @Option(help: "The Python with the SDK for the handler sidecars (default: $EDGETRAIL_PYTHON, else .venv/bin/python as 'make setup' makes it).")
        var python: String?

        @Flag(help: "No collector, and the pods export no spans (what 'bench chain' compares tracing with).")
        var noTelemetry = false

        func run() throws {
            var node = options.node
            node.python = try sdkPython(python)
            node.telemetry = !noTelemetry
            node.otlpListen = otlp
            node.metricsListen = metrics
            node.topic = topic
            do {
                try node.up { print($0) }
            } catch {
                throw commandFailure(error.message)
            }
            print("node \(node.name) is up; 'edgetrail node status --name \(node.name)' checks it, 'edgetrail node down --name \(node.name)' removes it")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A line per part of the node: up or down. Exits 1 when any is down.")

        @OptionGroup var options: NodeOptions

        func run() throws {
            let lines = options.node.status()
            for line in lines { print(line) }
            if lines.contains(where: { !$0.up }) { throw ExitCode.failure }
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the node's processes and remove its namespaces (their eBPF programs go with them); harmless when nothing is there.")

        @OptionGroup var options: NodeOptions

        func run() throws {
            let node = options.node
            if node.down(progress: { print($0) }).isEmpty { print("node \(node.name): nothing to remove") }
        }
    }
}

/// The Python with the SDK installed: `--python`, else `EDGETRAIL_PYTHON`, else `.venv/bin/python`
/// (as 'make setup' makes it); made absolute, for processes started elsewhere.
func sdkPython(_ given: String?) throws -> String {
    let python = given ?? ProcessInfo.processInfo.environment["EDGETRAIL_PYTHON"] ?? ".venv/bin/python"
    let path = python.contains("/") ? URL(fileURLWithPath: python).standardizedFileURL.path : python
    if python.contains("/"), !FileManager.default.isExecutableFile(atPath: path) {
        throw ValidationError("\(python) is not there; run 'make setup' (it makes .venv with the SDK) or pass --python")
    }
    return path
}

extension NodeCommand {
    struct Agent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a node's agent (what 'node up' starts): it deploys CNFs as pods and keeps them running.",
            discussion: """
                Serves node.proto on RUN/agent.sock. Each CNF deployed becomes one network namespace per \
                μsrv, joined to the node, with the μsrv and its handler sidecar inside; its datapath \
                rules go to the node's Datapath Manager (RUN/datapath.sock), spans to the node's \
                collector (RUN/otlp.sock). SIGTERM stops every pod and removes their namespaces. Needs root.
                """)

        @OptionGroup var options: NodeOptions

        @Option(help: "The Python with the SDK for the handler sidecars.")
        var python: String?

        @Option(help: "Redis for the pods, as a Unix socket (pods are other network namespaces). Default: the local infrastructure's.")
        var redis: String?

        @Option(help: "Seconds a deploy or update waits for its pods to be healthy before it gives up (and an update rolls back).")
        var healthTimeout = 30

        @Option(help: "clamd's Unix socket, for anti-virus pods. Default: the local infrastructure's.")
        var clamd: String?

        @Flag(help: "The pods export no spans (the node has no collector).")
        var noTelemetry = false

        func run() async throws {
            let node = options.node
            var configuration = NodeAgentConfiguration(
                node: node.name, runDirectory: node.runDirectory, executable: selfExecutable(), python: try sdkPython(python),
                redisSocket: redis ?? options.infra.redisSocket, otlpSocket: noTelemetry ? "none" : node.otlpSocket, datapathSocket: node.datapathSocket,
                clamdSocket: clamd ?? options.infra.clamdSocket)
            configuration.healthTimeout = .seconds(healthTimeout)
            var logger = Logger(label: "edgetrail.node-agent")
            logger.logLevel = .info
            do {
                try await NodeAgentServer(configuration: configuration, logger: logger).run()
            } catch let error as NodeAgentError {
                throw commandFailure(error.description)
            }
        }
    }
}
