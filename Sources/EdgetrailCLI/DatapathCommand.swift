import ArgumentParser
import EdgetrailCore
import EdgetrailDatapath
import EdgetrailDatapathAPI
import EdgetrailDatapathManager
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Logging
import SwiftProtobuf

struct DatapathCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datapath",
        abstract: "Run the eBPF datapath of an edge node (Datapath Manager) and talk to it.",
        discussion: """
            'serve' loads the tc programs (bpf/.output/datapath.bpf.o, built by 'make build'), \
            attaches them to the node's client-facing interface and serves the Datapath Manager's \
            gRPC API on a Unix socket (\(DatapathManagerConfiguration.defaultSocketPath) by default). \
            The other subcommands are its clients: apply a rule set, list it, read the per-rule \
            counters, follow the flow events, bind a flow to a session cookie.
            """,
        subcommands: [
            DatapathServe.self, DatapathApply.self, DatapathList.self, DatapathStats.self, DatapathEvents.self,
            DatapathBind.self,
        ])
}

struct SocketOption: ParsableArguments {
    @Option(help: "The Datapath Manager's Unix socket.")
    var socket = DatapathManagerConfiguration.defaultSocketPath

    /// Runs a call against the manager; a failure is printed with what to do, exit 1.
    func call<Result: Sendable>(_ body: (DatapathManagerClient.Client) async throws -> Result) async throws -> Result {
        do {
            return try await DatapathManagerClient.with(socket: socket, body)
        } catch {
            printError("error: \(DatapathManagerClient.explain(error, socket: socket))")
            throw ExitCode.failure
        }
    }
}

struct DatapathServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Load and attach the datapath and serve the Datapath Manager (needs root).",
        discussion: """
            Runs until SIGINT/SIGTERM, then detaches the programs and removes the clsact qdisc it \
            added and its socket. Programs a crashed run left on the interface are taken over. \
            Flows idle longer than --idle-timeout are ended (reason idle) by a sweep once a second. \
            The newest --replay-buffer flow events are kept so a subscriber that reconnects (the \
            collector) resumes where it was; what it missed beyond them is counted on its next event.
            """)

    @Option(help: "The node's client-facing interface to attach to.")
    var interface: String

    @Option(help: "A named network namespace (ip netns) the interface lives in.")
    var netns: String?

    @Option(help: "The Unix socket to serve on.")
    var socket = DatapathManagerConfiguration.defaultSocketPath

    @Option(help: "The compiled datapath programs (default: bpf/.output/datapath.bpf.o found above the executable, or EDGETRAIL_BPF_OBJECT).")
    var object: String?

    @Option(help: "The node's name on flow events (default: the host name).")
    var node: String?

    @Option(help: "Seconds without a packet after which a flow is ended.")
    var idleTimeout: Double = 60

    @Option(help: "Flows the flow table holds; new flows beyond it pass unaccounted and are counted (default: 65536).")
    var flowTableSize: Int?

    @Option(help: "Flow events kept for subscribers that reconnect.")
    var replayBuffer = 16_384

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func validate() throws {
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be above zero seconds") }
        if let flowTableSize, !(1...BPFDatapath.maximumFlowTableSize).contains(flowTableSize) {
            throw ValidationError("--flow-table-size must be 1 to \(BPFDatapath.maximumFlowTableSize) flows")
        }
        guard (1...1_048_576).contains(replayBuffer) else {
            throw ValidationError("--replay-buffer must be 1 to 1048576 events")
        }
    }

    func run() async throws {
        let logger = makeLogger(label: "edgetrail.datapath", component: "datapath-manager", level: logLevel)
        let configuration = DatapathManagerConfiguration(
            interface: interface, networkNamespace: netns, socketPath: socket,
            objectPath: object ?? BPFDatapath.defaultObjectPath(), node: node ?? ProcessInfo.processInfo.hostName,
            idleTimeoutNanoseconds: UInt64(idleTimeout * 1e9), replayBuffer: replayBuffer, flowTableSize: flowTableSize)
        let server: DatapathManagerServer
        do {
            // Loading and attaching enter the node's namespace: on NIO's thread pool.
            server = try await Blocking.run { try DatapathManagerServer(configuration: configuration, logger: logger) }
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        try await server.run()
    }
}

struct DatapathApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Replace the active rule set with the one in FILE, atomically.",
        discussion: """
            FILE lists 'rules' in the CNF shorthand ("10.201.0.2 80 : redirect => [proxy]") and the \
            'pods' their labels point at (name, labels, interface, ip and/or mac); see \
            examples/datapath/rules.yaml. A set with any problem is refused whole, with every \
            problem, and the active rules stay.
            """)

    @Argument(help: "The rule set file (YAML).")
    var file: String

    @OptionGroup var connection: SocketOption

    func run() async throws {
        let request: Edgetrail_V1_ApplyRulesRequest
        do {
            request = try RuleSetFile.load(path: file)
        } catch {
            for diagnostic in error.diagnostics { print(diagnostic) }
            throw ExitCode.failure
        }
        let response = try await connection.call { try await $0.applyRules(request) }
        print("applied \(request.rules.count) rules; version \(response.version)")
    }
}

struct DatapathList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Print the active rule set in the shorthand, with its version.")

    @OptionGroup var connection: SocketOption

    func run() async throws {
        let response = try await connection.call { try await $0.listRules(Edgetrail_V1_ListRulesRequest()) }
        print("version \(response.version), \(response.rules.count) rules")
        let (rules, _) = DatapathMessages.rules(response.rules)
        for (message, rule) in zip(response.rules, rules) {
            print("\(String(message.id).leftPad(4))  \(rule.shorthand)")
        }
    }
}

struct DatapathStats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Print packets, bytes and drops per rule, open flows and lost flow events.")

    @OptionGroup var connection: SocketOption

    func run() async throws {
        let (rules, stats) = try await connection.call { client in
            (try await client.listRules(Edgetrail_V1_ListRulesRequest()), try await client.stats(Edgetrail_V1_StatsRequest()))
        }
        let (parsed, _) = DatapathMessages.rules(rules.rules)
        print("rule  packets        bytes          drops      shorthand")
        for (index, counters) in stats.rules.enumerated() {
            let shorthand = index < parsed.count ? parsed[index].shorthand : "?"
            print(
                "\(String(counters.ruleID).leftPad(4))  \(String(counters.packets).rightPad(13))  "
                    + "\(String(counters.bytes).rightPad(13))  \(String(counters.drops).rightPad(9))  \(shorthand)")
        }
        print("open flows: \(stats.openFlows) of \(stats.flowTableSize)")
        print("new flows not tracked (flow table full): \(stats.flowsUntracked)")
        print("flow events lost (ring buffer full): \(stats.ringBufferLost)")
    }
}

struct DatapathEvents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Follow the flow events (start, end) as the datapath reports them.",
        discussion: """
            With --json each event is a line of protobuf JSON (FlowEventMessage): a recording the \
            collector's flow source can replay ('replay: FILE' under sources.flows).
            """)

    @OptionGroup var connection: SocketOption

    @Flag(help: "One JSON object per line instead of text.")
    var json = false

    @Option(help: "Stop after this many events.")
    var count: Int?

    func run() async throws {
        let json = self.json
        let limit = count
        try await connection.call { client in
            try await client.streamEvents(Edgetrail_V1_StreamEventsRequest()) { response in
                var seen = 0
                for try await message in response.messages {
                    let line = json ? ((try? message.jsonString()) ?? "{}") : FlowEventText.line(message)
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                    seen += 1
                    if let limit, seen >= limit { break }
                }
            }
        }
    }
}

struct DatapathBind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bind",
        abstract: "Bind a flow to a session cookie; its flow events carry the cookie from then on.",
        discussion: "Example: edgetrail datapath bind tcp 10.200.0.2:40000 10.201.0.2:80 00000000000000ab")

    @Argument(help: "tcp or udp.")
    var proto: String

    @Argument(help: "The client's address:port.")
    var source: String

    @Argument(help: "The server's address:port.")
    var destination: String

    @Argument(help: "The session cookie, 16 hex digits.")
    var cookie: String

    @OptionGroup var connection: SocketOption

    func run() async throws {
        var request = Edgetrail_V1_BindFlowRequest()
        do {
            request.tuple = try FlowEventText.tuple(proto: proto, source: source, destination: destination)
        } catch {
            throw ValidationError("\(error)")
        }
        guard let value = Cookie(hex: cookie) else {
            throw ValidationError("'\(cookie)' is not a cookie (16 hex digits)")
        }
        request.cookie = value.rawValue
        let response = try await connection.call { try await $0.bindFlow(request) }
        print(response.flowSeen ? "bound; the flow is open" : "bound; the flow has not been seen yet, its events will carry the cookie")
    }
}

/// Flow events and tuples as people read and write them.
enum FlowEventText {
    static func protocolName(_ number: UInt32) -> String {
        IPProtocolName.known(number) ?? "proto \(number)"
    }

    static func line(_ message: Edgetrail_V1_FlowEventMessage) -> String {
        let flow = message.event
        let tuple = flow.tuple
        var text = flow.phase == .start ? "start" : "end  "
        text += " \(protocolName(tuple.protocol)) \(IPPrefix.format(Array(tuple.srcIp))):\(tuple.srcPort)"
        text += " -> \(IPPrefix.format(Array(tuple.dstIp))):\(tuple.dstPort)"
        text += " \(actionName(flow.action))"
        if flow.ruleID != 0 { text += " (rule \(flow.ruleID))" }
        text += " cookie \(Cookie(message.cookie).hex)"
        if flow.phase == .end {
            let reason = ["", "fin", "rst", "idle"][min(flow.endReason.rawValue, 3)]
            text += " \(reason) in \(flow.packetsIn) pkts \(flow.bytesIn) B, out \(flow.packetsOut) pkts \(flow.bytesOut) B"
            if flow.drops > 0 { text += ", \(flow.drops) dropped" }
            if flow.endNs > flow.startNs {
                text += String(format: ", %.1f ms", Double(flow.endNs - flow.startNs) / 1e6)
            }
        }
        if flow.lostEvents > 0 { text += " [\(flow.lostEvents) events lost before this one]" }
        return text
    }

    static func actionName(_ action: Edgetrail_V1_DatapathAction) -> String {
        action.ruleName
    }

    struct BadTuple: Error, CustomStringConvertible { var description: String }

    static func tuple(proto: String, source: String, destination: String) throws -> Edgetrail_V1_FiveTuple {
        var tuple = Edgetrail_V1_FiveTuple()
        guard let number = IPProtocolName.number(proto) else {
            throw BadTuple(description: "'\(proto)' is not \(IPProtocolName.named.map(\.name).joined(separator: " or "))")
        }
        tuple.protocol = number
        func endpoint(_ text: String) throws -> (Data, UInt32) {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let address = IPPrefix.parseAddress(String(parts[0])), address.count == 4,
                let port = UInt16(parts[1])
            else { throw BadTuple(description: "'\(text)' is not an IPv4 address:port like 10.200.0.2:40000") }
            return (Data(address), UInt32(port))
        }
        (tuple.srcIp, tuple.srcPort) = try endpoint(source)
        (tuple.dstIp, tuple.dstPort) = try endpoint(destination)
        return tuple
    }
}

extension String {
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
    func rightPad(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
