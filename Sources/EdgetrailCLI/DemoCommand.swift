import ArgumentParser
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailInfra
import EdgetrailNet
import EdgetrailNodeAgent
import EdgetrailNodeAgentAPI
import EdgetrailProto
import Foundation
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// The main job on embedded defaults: the six steps of deploying, watching and updating the
/// edgesecurity CNF on a real edge node, with real traffic and each session reconstructed at
/// central through Kafka.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Deploy, watch and update the edgesecurity CNF on a real edge node, six steps on real traffic.",
        discussion: """
            Starts the local infrastructure (Redis, the Kafka-protocol broker, clamd), builds the edge \
            node NODE (network namespaces, the eBPF datapath, the collector, the node agent; see \
            'edgetrail node up'), central (127.0.0.1:7070) and the portal (127.0.0.1:8080; its admin \
            password is printed at its first start). Then:
              1) deploys examples/edgesecurity (http-proxy, policy-mgr, content-inspect; the origin's \
            port 80 redirected into the proxy);
              2) shows its pods and sidecars running;
              3) the client fetches the page and a download: each session's trace shows the handlers' \
            call sequence (proxy -> request_received handler -> policy_mgr.check -> ... -> \
            content_inspect.inspect);
              4) updates to examples/edgesecurity-v2: an anti-virus, called from the inspect_done handler;
              5) the EICAR download is blocked with the 403 page, the trace shows the scan and the \
            verdict; a clean download still passes;
              6) updates to examples/edgesecurity-v3: the scan becomes a condition in the policy_check \
            handler, downloads only: the page is not scanned, downloads are.
            After each request it prints central's reconstruction of the session (through Kafka). \
            Then the stack stays up for you to try things until Ctrl-C, which removes the node and \
            stops what the demo started. With --exit it stops after the steps, exiting 1 and naming \
            the step that did not show what it should. Needs root (network namespaces and eBPF).
            """)

    @OptionGroup var options: InfraOptions

    @Option(help: "The edge node's name.")
    var node = "edge-1"

    @Option(help: "Where central serves its API, HOST:PORT.")
    var central = "127.0.0.1:7070"

    @Option(help: "Where the portal serves, HOST:PORT.")
    var portal = "127.0.0.1:8080"

    @Option(help: "The folder with the CNF's three versions (edgesecurity, edgesecurity-v2, edgesecurity-v3).")
    var examples = "examples"

    @Option(help: "The Python with the SDK for the handler sidecars (default: .venv/bin/python).")
    var python: String?

    @Flag(name: .customLong("exit"), help: "Stop after the six steps instead of leaving the stack running.")
    var exitAfterSteps = false

    func run() async throws {
        guard getuid() == 0 else {
            printError(
                """
                error: the demo builds a real edge node — network namespaces, eBPF programs on a veth, a \
                transparent proxy — and that needs root. Run it as root: sudo make demo
                """)
            throw ExitCode.failure
        }
        let configuration = options.configuration
        let infra = LocalInfra(configuration: configuration)
        let kinds: [InfraKind] = [.redis, .broker, .clamd]
        let alreadyUp = Set(infra.status().filter(\.isUp).map(\.kind))
        step("starting the local infrastructure in \(configuration.runDirectory)")
        do {
            try infra.up(kinds) { print("    \($0)") }
        } catch {
            throw commandFailure("\(error)")
        }
        var edge = LocalNode(
            name: node, runDirectory: "\(configuration.runDirectory)/nodes/\(node)", executable: selfExecutable(), infra: configuration)
        edge.python = try sdkPython(python)
        let work = "\(configuration.runDirectory)/demo"
        var centralPid: Int32 = 0
        var portalPid: Int32 = 0
        let stopAll = { [edge] (pid: Int32, portalPid: Int32) in
            step("stopping: the node \(edge.name), the portal, central, and the local infrastructure the demo started")
            if portalPid > 0, ProcessControl.stop(portalPid, signal: SIGTERM, timeout: 15) { print("    portal: stopped (pid \(portalPid))") }
            edge.down { print("    \($0)") }
            if pid > 0, ProcessControl.stop(pid, signal: SIGTERM, timeout: 15) { print("    central: stopped (pid \(pid))") }
            infra.down(kinds.filter { !alreadyUp.contains($0) }) { print("    \($0)") }
        }
        var portalLogin = ""
        do {
            if edge.status().contains(where: \.up) {
                step("the node \(node) is up from before: removing it first")
                edge.down { print("    \($0)") }
            }
            step("building the edge node \(node)")
            do {
                try edge.up { print("    \($0)") }
            } catch {
                throw DemoFailure(step: 0, "the edge node did not come up: \(error.message)")
            }
            centralPid = try startCentralProcess(brokers: configuration.brokers, work: work, listen: central)
            // The portal is for looking around; the steps do not need it, so one that cannot
            // start is reported and the demo goes on.
            if let address = try? Address.hostPort(portal, option: "--portal"), !SocketProbe.isPortFree(host: address.host, port: address.port) {
                step("portal: not started: \(portal) is in use (choose another with --portal HOST:PORT)")
            } else {
                do {
                    (portalPid, portalLogin) = try startPortalProcess(
                        listen: portal, node: node, central: central, runDirectory: configuration.runDirectory)
                    print("    \(portalLogin)")
                } catch {
                    step("portal: not started: \(error)")
                }
            }
            let play = DemoSteps(
                node: node, agentSocket: edge.agentSocket, central: CentralClient(base: "http://\(central)"),
                examples: examples)
            try await play.run()
        } catch let failure as DemoFailure {
            printError("error: \(failure)")
            stopAll(centralPid, portalPid)
            throw ExitCode.failure
        } catch {
            printError("error: \(error)")
            stopAll(centralPid, portalPid)
            throw ExitCode.failure
        }
        step("all six steps showed what they should")
        if exitAfterSteps {
            stopAll(centralPid, portalPid)
            return
        }
        print(
            """

            The stack is running. Try:
            \(portalPid > 0 ? "  the portal at http://\(portal)/ (\(portalLogin))\n" : "")              ip netns exec \(node)-client curl -i http://10.201.0.2/downloads/eicar.com
              edgetrail trace COOKIE            (the edgetrail-cookie header of any answer)
              edgetrail cnf status edgesecurity --node \(node)
              edgetrail cnf update \(examples)/edgesecurity-v2 --node \(node)
              edgetrail node status --name \(node)
              curl -s http://127.0.0.1:9464/metrics | grep edgetrail_collector_records
            Logs: \(edge.runDirectory)/logs/ (pods under logs/pods/). Ctrl-C stops everything.
            """)
        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { break }
        print("")
        stopAll(centralPid, portalPid)
    }

}

/// Central in its own process (as an operator would run it), on a store of its own in `work`;
/// returns its pid once it listens on `listen`.
func startCentralProcess(brokers: String, work: String, listen: String, topic: String = "edgetrail.telemetry") throws -> Int32 {
    try? FileManager.default.removeItem(atPath: work)
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    return try startListeningProcess(
        "central",
        arguments: [
            "central", "--brokers", brokers, "--topic", topic, "--store", "sqlite:\(work)/central.sqlite", "--group",
            "edgetrail-\(UInt32.random(in: 1...UInt32.max))", "--listen", listen, "--log-level", "warning",
        ],
        log: "\(work)/central.log", listen: listen) { "central: http://\(listen) (its store \(work)/central.sqlite, log \($0))" }
}

/// The portal in its own process, showing `node` and central; its users are kept in
/// RUN/portal across runs. Returns its pid and what to tell the person about logging in.
func startPortalProcess(listen: String, node: String, central: String, runDirectory: String) throws -> (Int32, String) {
    let data = "\(runDirectory)/portal"
    try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
    let log = "\(data)/portal.log"
    try? FileManager.default.removeItem(atPath: log)
    let pid = try startListeningProcess(
        "portal",
        arguments: [
            "portal", "--listen", listen, "--node", node, "--central", "http://\(central)", "--run-dir", runDirectory,
            "--data-dir", data,
        ],
        log: log, listen: listen) { "portal: http://\(listen)/ (dashboard, CNF provisioning, CNF tracing, filters; log \($0))" }
    // The first start creates `admin` and prints its password once.
    let printed = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    let login =
        printed.split(separator: "\n").first { $0.contains("with the password:") }.map {
            "log in as admin with the password \($0.split(separator: " ").last ?? "") (shown once; change it on My Account)"
        } ?? "log in as admin with the password printed when the portal first started (remove \(data) to start over)"
    return (pid, login)
}

/// Starts `arguments` as a detached process of this executable; returns its pid once it listens
/// on `listen`, or fails with the end of its log.
func startListeningProcess(_ name: String, arguments: [String], log: String, listen: String, started: (String) -> String) throws -> Int32 {
    let pid = try ProcessControl.spawnDetached(executable: selfExecutable(), arguments: arguments, logPath: log)
    let address = try Address.hostPort(listen, option: "--\(name)")
    let endpoint = Endpoint.tcp(host: address.host, port: address.port)
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline {
        if SocketProbe.isListening(endpoint) {
            step(started(log))
            return pid
        }
        guard ProcessControl.isAlive(pid) else {
            throw DemoFailure(step: 0, "\(name) exited while starting; the end of \(log):\n\(ProcessControl.tail(log))")
        }
        usleep(100_000)
    }
    _ = ProcessControl.stop(pid)
    throw DemoFailure(step: 0, "\(name) was not listening on \(listen) within 30 s; see \(log)")
}

func step(_ text: String) { print("==> \(text)") }

/// A step that did not show what it should.
struct DemoFailure: Error, CustomStringConvertible {
    var step: Int
    var message: String
    init(step: Int, _ message: String) {
        self.step = step
        self.message = message
    }
    var description: String { step == 0 ? message : "step \(step) did not show what it should: \(message)" }
}

/// The six steps, each checked as it is shown.
struct DemoSteps {
    var node: String
    var agentSocket: String
    var central: CentralClient
    var examples: String

    func run() async throws {
        step("1) deploy edgesecurity: http-proxy, policy-mgr, content-inspect; the origin's port 80 redirected into the proxy")
        try await deploy("\(examples)/edgesecurity", update: false, step: 1)

        step("2) the pods and their handler sidecars (edgetrail cnf status edgesecurity)")
        let status = try await agent(step: 2) { client in
            var request = Edgetrail_V1_StatusRequest()
            request.cnf = "edgesecurity"
            return try await client.status(request)
        }
        for line in CNFCommand.Status.render(status) { print("    \(line)") }
        guard status.pods.count == 3, status.pods.allSatisfy({ $0.state == .running }),
            status.pods.filter({ !$0.handlers.isEmpty }).allSatisfy(\.handlersAttached)
        else { throw DemoFailure(step: 2, "not every pod runs with its sidecar attached") }

        let sequence = [
            "HTTP GET", "event request_received", "handler request_received", "policy_mgr.check", "PolicyManager/Check",
            "handler response_sent", "content_inspect.inspect", "ContentInspect/Inspect",
        ]
        step("3) the client fetches the page and a download; each trace shows the handlers' call sequence")
        try await request("/", expect: 200, step: 3, spans: sequence)
        try await request("/downloads/report.pdf", expect: 200, step: 3, spans: sequence)

        step("4) update: add anti-virus, called from the inspect_done handler (edgesecurity-v2)")
        try await deploy("\(examples)/edgesecurity-v2", update: true, step: 4)

        step("5) the EICAR download is blocked with the 403 page; a clean download still passes")
        let scanned = [
            "handler response_received", "content_inspect.inspect", "handler inspect_done", "anti_virus.scan", "AntiVirus/Scan",
            "clamd INSTREAM",
        ]
        let blocked = try await request(
            "/downloads/eicar.com", expect: 403, step: 5, spans: scanned, body: "malware found")
        guard blocked.spans.contains(where: { $0.operation == "event response_received" && $0.tags["edgetrail.verdict"] == "deny" }) else {
            throw DemoFailure(step: 5, "the trace of \(blocked.cookie) does not show the deny verdict on response_received")
        }
        try await request("/downloads/report.pdf", expect: 200, step: 5, spans: scanned)

        step("6) update: the scan becomes a condition in policy_check, downloads only (edgesecurity-v3)")
        try await deploy("\(examples)/edgesecurity-v3", update: true, step: 6)
        try await request(
            "/", expect: 200, step: 6, spans: ["handler response_received", "policy_mgr.check", "handler policy_check"],
            absent: ["anti_virus.scan"], note: "the page: no scan")
        try await request(
            "/downloads/report.pdf", expect: 200, step: 6,
            spans: ["handler response_received", "policy_mgr.check", "handler policy_check", "anti_virus.scan"],
            note: "a download: scanned from the policy_check handler")
        try await request(
            "/downloads/eicar.com", expect: 403, step: 6, spans: ["handler policy_check", "anti_virus.scan"], body: "malware found",
            note: "EICAR: still blocked")
    }

    private func agent<T: Sendable>(step: Int, _ body: (NodeAgentClient.Client) async throws -> T) async throws -> T {
        do {
            return try await NodeAgentClient.with(socket: agentSocket, body)
        } catch {
            throw DemoFailure(step: step, NodeAgentClient.explain(error, socket: agentSocket, node: node))
        }
    }

    private func deploy(_ folder: String, update: Bool, step number: Int) async throws {
        print("    edgetrail cnf \(update ? "update" : "deploy") \(folder) --node \(node)")
        let bundle: CNFBundle
        do {
            bundle = try CNFBundle(folder)
        } catch {
            throw DemoFailure(step: number, "\(folder) is not a valid CNF")
        }
        let request = bundle.request
        let outcome = try await agent(step: number) { client in
            try await CNFCommand.deploy(request, update: update, client: client, indent: "      ")
        }
        guard outcome.ok else { throw DemoFailure(step: number, "the \(update ? "update" : "deploy") failed:\n\(outcome.error)") }
        print("    \(outcome.cnf) version \(outcome.version) is running")
    }

    /// One client request through the node, then its session as central reconstructs it.
    @discardableResult
    private func request(
        _ path: String, expect status: Int, step number: Int, spans expected: [String], absent: [String] = [],
        body: String? = nil, note: String? = nil
    ) async throws -> CookieTimeline {
        let url = "http://10.201.0.2\(path)"
        print("    \(note.map { "\($0): " } ?? "")ip netns exec \(node)-client curl \(url)")
        let answer = try ClientFetch.get(url, from: "\(node)-client")
        let reason = answer.body.range(of: "<strong>").map { String(answer.body[$0.upperBound...].prefix { $0 != "<" }) }
        print("      HTTP \(answer.status), \(answer.body.utf8.count) bytes, cookie \(answer.cookie ?? "none")\(reason.map { ": \($0)" } ?? "")")
        guard answer.status == status else {
            // What happened to it, as far as central knows by now.
            if let cookie = answer.cookie.flatMap({ Cookie(hex: $0) }),
                let timeline = try? await reconstruction(of: cookie, expecting: [], step: number, seconds: 15)
            {
                for line in timeline.renderText().split(separator: "\n") { print("      \(line)") }
            }
            throw DemoFailure(step: number, "GET \(path) answered \(answer.status), not \(status)")
        }
        if let body, !answer.body.contains(body) {
            throw DemoFailure(step: number, "the answer to GET \(path) does not say \"\(body)\"")
        }
        guard let cookieText = answer.cookie, let cookie = Cookie(hex: cookieText) else {
            throw DemoFailure(step: number, "the answer to GET \(path) carries no edgetrail-cookie header")
        }
        let timeline = try await reconstruction(of: cookie, expecting: expected, step: number)
        for line in timeline.renderText().split(separator: "\n") { print("      \(line)") }
        let present = Set(timeline.spans.map(\.operation))
        if let unwanted = absent.first(where: present.contains) {
            throw DemoFailure(step: number, "the trace of \(cookie) shows \(unwanted), which it should not")
        }
        return timeline
    }

    /// Waits (60 s at most) until central holds the whole session: the flow bound to the cookie
    /// and ended, one span tree with every expected operation, and the Redis snapshots.
    private func reconstruction(
        of cookie: Cookie, expecting expected: [String], step number: Int, seconds: Double = 60
    ) async throws -> CookieTimeline {
        let deadline = Date().addingTimeInterval(seconds)
        var missing: [String] = ["everything"]
        while Date() < deadline {
            if let timeline = try? await central.timeline(cookie).timeline {
                let present = Set(timeline.spans.map(\.operation))
                missing = expected.filter { !present.contains($0) }
                if !timeline.flows.contains(where: { $0.endNs > 0 }) { missing.append("the client's flow (ended)") }
                if timeline.snapshots.isEmpty { missing.append("Redis snapshots") }
                if Set(timeline.spans.map(\.traceId)).count > 1 { missing.append("one span tree (it has several traces)") }
                if missing.isEmpty { return timeline }
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        throw DemoFailure(
            step: number, "central's reconstruction of \(cookie) lacks \(missing.joined(separator: ", ")) after \(Int(seconds)) s")
    }
}

/// A client's plain HTTP request from the client namespace, with curl as an operator would make it.
enum ClientFetch {
    struct Answer {
        var status: Int
        var cookie: String?
        var body: String
    }

    static func get(_ url: String, from namespace: String) throws -> Answer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edgetrail-demo-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try ProcessControl.run(
            "/usr/sbin/ip",
            [
                "netns", "exec", namespace, "curl", "-s", "--max-time", "20", "-D", "\(directory)/headers", "-o",
                "\(directory)/body", "-w", "%{http_code}", url,
            ])
        guard result.status == 0, let status = Int(result.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw DemoFailure(step: 0, "curl \(url) in \(namespace) failed (exit \(result.status)): \(result.output)")
        }
        let headers = (try? String(contentsOfFile: "\(directory)/headers", encoding: .utf8)) ?? ""
        let cookie = headers.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("edgetrail-cookie:") }
            .map { $0.dropFirst("edgetrail-cookie:".count).trimmingCharacters(in: .whitespaces) }
        let body = String(decoding: FileManager.default.contents(atPath: "\(directory)/body") ?? Data(), as: UTF8.self)
        return Answer(status: status, cookie: cookie, body: body)
    }
}
