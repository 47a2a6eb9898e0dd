import ArgumentParser
import EdgetrailCNF
import EdgetrailInfra
import EdgetrailNodeAgentAPI
import EdgetrailProto
import Foundation
import GRPCCore
import SwiftProtobuf

/// Which node's agent a `cnf` lifecycle command talks to.
struct AgentOptions: ParsableArguments {
    @Option(help: "The edge node to work on (its agent's socket is RUN/nodes/NODE/agent.sock).")
    var node = "edge-1"

    @Option(help: "The node's folder, if 'node up' was given one (default RUN/nodes/NODE, RUN being ./.run or $EDGETRAIL_RUN_DIR).")
    var runDir: String?

    var socket: String {
        runDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path + "/agent.sock" }
            ?? NodeAgentClient.socket(node: node, runDirectory: InfraConfiguration.fromEnvironment().runDirectory)
    }

    /// Runs `body` against the agent; a failed call is an error saying what to do.
    func call<T: Sendable>(_ body: (NodeAgentClient.Client) async throws -> T) async throws -> T {
        guard FileManager.default.fileExists(atPath: socket) else {
            throw commandFailure("the node \(node) has no agent at \(socket); bring the node up first: sudo edgetrail node up --name \(node)")
        }
        do {
            return try await NodeAgentClient.with(socket: socket, body)
        } catch {
            throw commandFailure(NodeAgentClient.explain(error, socket: socket, node: node))
        }
    }
}

/// A CNF as `deploy` and `update` send it: the spec (a file, or `cnf.yaml` in a folder) and the
/// handler files it names. Checked here first, so mistakes are reported at the operator's paths
/// before anything reaches the node.
struct CNFBundle {
    var request = Edgetrail_V1_DeployRequest()

    init(_ given: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: given, isDirectory: &isDirectory) else {
            throw commandFailure("\(given): no such file or folder")
        }
        let path = isDirectory.boolValue ? (given as NSString).appendingPathComponent("cnf.yaml") : given
        let spec: CNFSpec
        do {
            spec = try CNFSpecReader.load(path: path)
        } catch {
            for diagnostic in error.diagnostics { print(diagnostic) }
            throw commandFailure("\(path) is not a valid CNF spec; nothing was sent to the node")
        }
        request.specPath = path
        request.specYaml = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let folder = (path as NSString).deletingLastPathComponent
        for file in spec.files {
            let onDisk = file.hasPrefix("/") || folder.isEmpty ? file : "\(folder)/\(file)"
            guard let contents = FileManager.default.contents(atPath: onDisk) else {
                throw commandFailure("\(onDisk): cannot read it")
            }
            request.files[file] = contents
        }
    }
}

extension CNFCommand {
    /// Sends a bundle to `deploy` or `update`, printing progress as it comes; exits 1 when it failed.
    static func send(_ bundle: CNFBundle, update: Bool, options: AgentOptions) async throws {
        let request = bundle.request
        let outcome = try await options.call { client in
            try await deploy(request, update: update, client: client, indent: "  ")
        }
        if outcome.ok {
            print("\(outcome.cnf) version \(outcome.version) is running on \(options.node)")
            return
        }
        printError(outcome.error)
        if outcome.rolledBack {
            throw commandFailure("the update failed and was rolled back: \(outcome.cnf) version \(outcome.version) keeps running")
        }
        throw commandFailure("\(update ? "update" : "deploy") failed")
    }

    /// A deploy (or update) through `client`, each step printed after `indent` (`nil`: not
    /// printed); its outcome.
    static func deploy(
        _ request: Edgetrail_V1_DeployRequest, update: Bool, client: NodeAgentClient.Client, indent: String?
    ) async throws -> Edgetrail_V1_DeployOutcome {
        try await NodeAgentClient.deploy(request, update: update, client: client) { step in
            if let indent { print(indent + step) }
        }
    }

    struct Deploy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deploy a CNF to an edge node, printing each step (pods, handlers, rules, health).",
            discussion: """
                Takes a spec file or a folder with cnf.yaml; the spec and every handler file it names go \
                to the node's agent, which checks them whole (the spec, each handler loaded as its \
                sidecar would), starts a pod per μsrv (its own network namespace joined to the node, \
                the μsrv and its handler sidecar inside), waits until every pod is healthy and applies \
                the CNF's datapath rules. What fails part-way is undone. This is version 1; change it \
                with 'edgetrail cnf update'.
                """)

        @Argument(help: "The CNF: a spec file, or a folder with cnf.yaml.")
        var spec: String

        @OptionGroup var options: AgentOptions

        func run() async throws {
            try await CNFCommand.send(try CNFBundle(spec), update: false, options: options)
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deploy a new version of a running CNF; rolls back by itself when it fails.",
            discussion: """
                Changes as little as it can: new μsrvs get pods, removed ones are stopped once the new \
                version runs, a μsrv whose kind, labels, events, settings file or handler bindings \
                changed is restarted, and one whose handlers' code alone changed keeps running while its sidecar \
                loads the new files. When the new version is not healthy in time (or a handler does \
                not load, or the spec is invalid) the running version is put back and keeps serving; \
                the command says why and exits 1.
                """)

        @Argument(help: "The CNF's new version: a spec file, or a folder with cnf.yaml.")
        var spec: String

        @OptionGroup var options: AgentOptions

        func run() async throws {
            try await CNFCommand.send(try CNFBundle(spec), update: true, options: options)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a CNF from a node: its rules, its pods and their namespaces.")

        @Argument(help: "The CNF's name.")
        var name: String

        @OptionGroup var options: AgentOptions

        func run() async throws {
            let response = try await options.call { client in
                var request = Edgetrail_V1_DeleteRequest()
                request.cnf = name
                return try await client.delete(request)
            }
            for line in response.removed { print("  \(line)") }
            print("\(name) deleted from \(options.node)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The CNFs a node runs: version, pods healthy, when deployed.")

        @OptionGroup var options: AgentOptions

        @Flag(help: "One JSON object per CNF (node.proto's CNFSummary).")
        var json = false

        func run() async throws {
            let response = try await options.call { client in try await client.list(Edgetrail_V1_ListRequest()) }
            if json {
                for cnf in response.cnfs { print(try cnf.jsonString()) }
                return
            }
            guard !response.cnfs.isEmpty else {
                print("no CNF runs on \(options.node); deploy one with: edgetrail cnf deploy examples/edgesecurity --node \(options.node)")
                return
            }
            var rows = [["CNF", "VERSION", "PODS", "DEPLOYED", "LAST UPDATE"]]
            for cnf in response.cnfs {
                rows.append([
                    cnf.name, "\(cnf.version)", "\(cnf.podsHealthy)/\(cnf.pods) healthy", Self.time(cnf.deployedAt),
                    cnf.lastError.isEmpty ? "ok" : "failed, rolled back: " + (cnf.lastError.split(separator: "\n").first.map(String.init) ?? ""),
                ])
            }
            printTable(rows)
        }

        static func time(_ seconds: Int64) -> String {
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
            return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A CNF's pods: μsrv, kind, IP, state, restarts, handlers bound. Exits 1 when a pod is not running.")

        @Argument(help: "The CNF's name.")
        var name: String

        @OptionGroup var options: AgentOptions

        @Flag(help: "node.proto's CNFStatus as JSON.")
        var json = false

        func run() async throws {
            let status = try await options.call { client in
                var request = Edgetrail_V1_StatusRequest()
                request.cnf = name
                return try await client.status(request)
            }
            if json {
                print(try status.jsonString())
            } else {
                for line in Self.render(status) { print(line) }
            }
            if status.pods.contains(where: { $0.state != .running }) { throw ExitCode.failure }
        }

        /// The status as `cnf status` prints it: a heading, a row per pod, the rules.
        static func render(_ status: Edgetrail_V1_CNFStatus) -> [String] {
            let cnf = status.cnf
            var lines = [
                "\(cnf.name) version \(cnf.version) on \(status.node): \(cnf.podsHealthy)/\(cnf.pods) pods healthy, deployed \(List.time(cnf.deployedAt))"
            ]
            var rows = [["POD", "μSRV", "KIND", "IP", "STATE", "RESTARTS", "HANDLERS"]]
            for pod in status.pods {
                let restarts = pod.sidecarRestarts > 0 ? "\(pod.restarts) (sidecar \(pod.sidecarRestarts))" : "\(pod.restarts)"
                let events = pod.handlers.map { String($0.split(separator: "=").first ?? "") }.joined(separator: ",")
                let handlers = pod.handlers.isEmpty ? "-" : events + (pod.handlersAttached ? " (attached)" : " (not attached)")
                rows.append([pod.namespace, pod.name, pod.kind, pod.ip, state(pod.state), restarts, handlers])
            }
            lines += table(rows)
            for pod in status.pods where !pod.message.isEmpty { lines.append("  \(pod.name): \(pod.message)") }
            lines.append("datapath (rule set version \(status.datapathVersion)):")
            for rule in status.rules { lines.append("  \(rule)") }
            if !cnf.lastError.isEmpty { lines.append("last update failed and was rolled back:\n\(cnf.lastError)") }
            return lines
        }

        static func state(_ state: Edgetrail_V1_PodState) -> String {
            switch state {
            case .running: "running"
            case .starting: "starting"
            case .restarting: "restarting"
            case .unhealthy: "unhealthy"
            case .stopped: "stopped"
            default: "unknown"
            }
        }
    }
}

/// Prints rows as columns, each as wide as its widest cell.
func printTable(_ rows: [[String]]) {
    for line in table(rows) { print(line) }
}

/// Rows as lines of columns, each as wide as its widest cell.
func table(_ rows: [[String]]) -> [String] {
    guard let first = rows.first else { return [] }
    var widths = first.map(\.count)
    for row in rows { for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) } }
    return rows.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
}
