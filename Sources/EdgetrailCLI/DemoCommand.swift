import ArgumentParser
import EdgetrailCNF
import EdgetrailCentral
import EdgetrailCentralAPI
import EdgetrailClamAV
import EdgetrailCollector
import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailDatapathManager
import EdgetrailKafka
import EdgetrailProto
import EdgetrailRedis
import EdgetrailNet
import EdgetrailInfra
import EdgetrailTelemetry
import Foundation
import Logging
import ServiceLifecycle
import SwiftProtobuf

/// The main job on embedded defaults: bring the local infra up, validate the example CNF,
/// run the telemetry spine (collector and central) and reconstruct one session end to end,
/// then stop what it started.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Bring the infra up, validate the example CNF, and follow one session through the telemetry spine.",
        discussion: """
            Starts Redis, the Kafka-protocol broker and clamd under the run directory and validates \
            examples/edgesecurity/cnf.yaml. Then starts an edge collector (OTLP on 127.0.0.1:4317, \
            metrics on 127.0.0.1:9464) and central (API on 127.0.0.1:7070, SQLite in the run \
            directory), and plays one session of the CNF: as root, a real edge node (network \
            namespaces, the eBPF datapath with the CNF's rules, the client's request redirected into \
            the proxy pod, its flow events from the kernel; otherwise a recorded flow), the μsrvs' \
            state in Redis, clamd scanning the response, and the μsrvs' spans over OTLP. Central's reconstruction of the session is printed the way 'edgetrail trace' \
            shows it. The local infrastructure the demo started is stopped at the end unless --keep-infra.
            """)

    @OptionGroup var options: InfraOptions

    @Option(help: "The CNF spec to validate.")
    var spec = "examples/edgesecurity/cnf.yaml"

    @Option(help: "Kafka topic to ship the sample batch to.")
    var topic = "edgetrail.telemetry"

    @Flag(help: "Leave the local infrastructure (Redis, the broker, clamd) running afterwards.")
    var keepInfra = false

    func run() async throws {
        let configuration = options.configuration
        let infra = LocalInfra(configuration: configuration)
        let alreadyUp = Set(infra.status().filter(\.isUp).map(\.kind))
        step("starting the local infrastructure in \(configuration.runDirectory)")
        do {
            try infra.up(InfraKind.defaults) { print("    \($0)") }
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        defer {
            if !keepInfra {
                step("stopping the local infrastructure this demo started")
                infra.down(InfraKind.defaults.filter { !alreadyUp.contains($0) }) { print("    \($0)") }
            }
        }
        for line in infra.status(InfraKind.defaults) { print("    \(line)") }

        step("validating \(spec)")
        let cnf: CNFSpec
        do {
            cnf = try CNFSpecReader.load(path: spec)
            print("    ok: CNF '\(cnf.name)' for node '\(cnf.node)'")
            for microservice in cnf.microservices {
                print("      μsrv \(microservice.name) (\(microservice.kind.rawValue)) publishes \(microservice.events.joined(separator: ", "))")
            }
            for handler in cnf.handlers {
                print("      handler \(handler.file) on \(handler.microservice).\(handler.event)")
            }
            for rule in cnf.datapath { print("      rule \(rule.shorthand)") }
        } catch {
            for diagnostic in error.diagnostics { print("    \(diagnostic)") }
            throw ExitCode.failure
        }

        do {
            try await followOneSession(configuration: configuration, cnf: cnf)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        step("done")
    }

    /// Runs collector and central in this process and follows one session through them.
    private func followOneSession(configuration: InfraConfiguration, cnf: CNFSpec) async throws {
        let cookie = Cookie(UInt64.random(in: 1...UInt64.max))
        var session = DemoSession(cookie: cookie)
        let work = configuration.runDirectory + "/demo"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let recording = work + "/flows.jsonl"
        try session.flowRecording().write(toFile: recording, atomically: true, encoding: .utf8)

        var collectorConfiguration = CollectorConfiguration(
            cnf: cnf.name, node: cnf.node, brokers: configuration.brokers, dataDirectory: work + "/collector")
        collectorConfiguration.kafka.topic = topic
        collectorConfiguration.otlp = OTLPSourceConfiguration()
        collectorConfiguration.snapshots = RedisSnapshotSourceConfiguration(
            host: configuration.host, port: configuration.redisPort)
        var logger = Logger(label: "edgetrail.demo")
        logger.logLevel = .warning
        // As root the flow events come from a real edge node; otherwise from a recording.
        let edge: DemoEdgeNode?
        if let reason = DemoEdgeNode.unavailable() {
            step("edge node: flow events replayed from a recording (\(reason))")
            edge = nil
        } else {
            do {
                edge = try DemoEdgeNode.start(cnf: cnf, work: work, logger: logger)
            } catch {
                step("edge node: flow events replayed from a recording (the real one failed: \(error))")
                edge = nil
            }
        }
        defer { edge?.tearDown() }
        collectorConfiguration.flows =
            edge.map { .datapath(socket: $0.socket, statsIntervalNanoseconds: 1_000_000_000) } ?? .replay(FlowReplaySourceConfiguration(path: recording))
        let collector = try Collector(configuration: collectorConfiguration, logger: logger)
        var centralConfiguration = CentralConfiguration(brokers: configuration.brokers, store: "sqlite:\(work)/central.sqlite")
        centralConfiguration.topic = topic
        centralConfiguration.groupID = "edgetrail-demo-\(cookie.hex)"
        let central = try Central(configuration: centralConfiguration, logger: logger)
        let collectorGroup = try collector.makeServiceGroup(signals: [])
        let centralGroup = central.makeServiceGroup(signals: [])

        step("starting the collector (OTLP 127.0.0.1:4317, /metrics 127.0.0.1:9464) and central (127.0.0.1:7070)")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await collectorGroup.run() }
            group.addTask { try await centralGroup.run() }
            if let edge { group.addTask { try await edge.server.run(group: edge.group) } }
            defer {
                Task {
                    await collectorGroup.triggerGracefulShutdown()
                    await centralGroup.triggerGracefulShutdown()
                    await edge?.group.triggerGracefulShutdown()
                }
            }
            try await waitForListener(port: 4317)
            if let edge { try await prepare(edge, cnf: cnf) }

            step("one session of '\(cnf.name)', cookie \(cookie)")
            if let edge {
                let bind = DatapathMessages.bindTCP(
                    from: ([10, 200, 0, 2], 41000), to: ([10, 201, 0, 2], 80), cookie: cookie.rawValue)
                _ = try await DatapathManagerClient.with(socket: edge.socket) { try await $0.bindFlow(bind) }
                session.started = UInt64(Date().timeIntervalSince1970 * 1e9)
                guard let answer = try await edge.clientRequest(localPort: 41000) else {
                    printError("error: the client's request to 10.201.0.2:80 got no answer through the edge node")
                    throw ExitCode.failure
                }
                let body = answer.components(separatedBy: "\r\n\r\n").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                print("    datapath (eBPF): client 10.200.0.2:41000 -> 10.201.0.2:80, redirected; the answer: \"\(body)\"")
            } else {
                print("    datapath (replayed): flow tcp 10.200.0.2:41000 -> 10.201.0.2:80, redirect to http-proxy")
            }
            let redis = try RedisConnection(host: configuration.host, port: configuration.redisPort)
            let sessionKey = "\(cookie.redisKeyPrefix)http-proxy:session"
            try redis.command("HSET", sessionKey, "client", "10.200.0.2:41000", "origin", "10.201.0.2:80", "state", "open")
            print("    http-proxy: session state in Redis at \(sessionKey)")
            let clamd = ClamAVClient(socketPath: configuration.clamdSocket)
            let eicar = Array(#"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.utf8)
            let verdict = try clamd.scan(eicar)
            let clean = try clamd.scan(Array("<html>hello from the origin</html>".utf8))
            let infected: Bool
            switch verdict {
            case .infected(let signature):
                infected = true
                try redis.command(
                    "HSET", "\(cookie.redisKeyPrefix)anti-virus:verdict", "infected", "yes", "signature", signature)
                print("    anti-virus: clamd finds \(signature) in the response body (a clean body: \(clean == .clean ? "clean" : "infected"))")
            case .clean:
                infected = false
                print("    anti-virus: clamd finds nothing")
            }
            try await session.exportSpans(host: "127.0.0.1", port: 4317, infected: infected)
            print("    spans: request (http-proxy) > policy_check (policy-mgr), inspect (content-inspect) over OTLP/gRPC")

            step("central's reconstruction (what 'edgetrail trace \(cookie)' prints)")
            let deadline = Date().addingTimeInterval(60)
            var timeline = CookieTimeline(cookie: cookie, records: [])
            while Date() < deadline {
                timeline = CookieTimeline(cookie: cookie, records: try central.store.records(cookie: cookie.rawValue))
                if timeline.spans.count >= 3, timeline.flows.count >= 1, timeline.snapshots.count >= 2 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            guard timeline.spans.count >= 3, timeline.flows.count >= 1 else {
                printError("error: central did not receive the session within 60 s")
                throw ExitCode.failure
            }
            for line in timeline.renderText().split(separator: "\n") { print("    \(line)") }
            print("    (JSON: curl http://127.0.0.1:7070/v1/cookies/\(cookie))")
            await collectorGroup.triggerGracefulShutdown()
            await centralGroup.triggerGracefulShutdown()
            await edge?.group.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }

    /// Applies the CNF's rules through the Datapath Manager and waits until the collector
    /// follows its flow events.
    private func prepare(_ edge: DemoEdgeNode, cnf: CNFSpec) async throws {
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: edge.socket) {
            try await Task.sleep(for: .milliseconds(50))
        }
        let request = edge.rules(of: cnf)
        let version = try await DatapathManagerClient.with(socket: edge.socket) { try await $0.applyRules(request).version }
        step(
            "edge node \(edge.topology.prefix): the eBPF datapath on \(edge.topology.clientInterface), "
                + "\(request.rules.count) rules applied (version \(version)), pods: "
                + edge.topology.pods.map { "\($0.name) \($0.address)" }.joined(separator: ", "))
        let deadline = Date().addingTimeInterval(15)
        while edge.server.manager.subscriberCount == 0, Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        guard edge.server.manager.subscriberCount > 0 else {
            throw DemoError("the collector did not subscribe to the Datapath Manager's flow events within 15 s")
        }
    }

    private func waitForListener(port: Int) async throws {
        for _ in 0..<100 {
            if SocketProbe.isListening(.tcp(host: "127.0.0.1", port: port)) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DemoError("the collector's OTLP receiver did not come up on 127.0.0.1:\(port)")
    }

    private func step(_ text: String) { print("==> \(text)") }
}

/// A step of the demo that did not happen, and why.
struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
