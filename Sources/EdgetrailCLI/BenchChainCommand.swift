import ArgumentParser
import EdgetrailBenchmarks
import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailInfra
import EdgetrailNet
import EdgetrailNode
import EdgetrailNodeAgent
import EdgetrailNodeAgentAPI
import EdgetrailProto
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension BenchCommand {
    struct Chain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Client sessions through the deployed demo CNF on a real node, tracing on vs off (needs root).",
            discussion: """
                Builds two throwaway edge nodes, one traced and one not, and deploys examples/edgesecurity \
                on both (the demo's step 3: the proxy's request_received handler asks policy-mgr, its \
                response_sent handler has content-inspect classify the body). Each client session is a new \
                connection from the client namespace to 10.201.0.2:80, steered into the proxy by the eBPF \
                datapath. Off: no collector, the pods export no spans and keep their state in a Redis of \
                their own. On: the node's collector ships to the broker. The modes take turns (--rounds; \
                off, on, on, off, …), each turn starting once the other node is quiet, so that a shared \
                machine's drift in speed falls on both alike. Then central \
                stores, and every traced session is looked up there: complete when it has all \
                three layers (the flow bound to its cookie and ended, one span tree rooted at the \
                proxy's request span with every step of the chain, the Redis snapshots), mixed when \
                anything of another cookie is in it. Prints requests/s and p50/p99 for both, the node \
                agent's and collector's peak RSS, and the correlation. Targets: on ≥ 0.9 × off in \
                requests/s; ≥ 99.9% of sessions complete; 0 mixed.
                """)

        @OptionGroup var options: InfraOptions

        @Option(help: "Measured client sessions per mode.")
        var sessions = 10_000

        @Option(help: "Client threads making sessions at once.")
        var clients = 8

        @Option(help: "The CNF to deploy.")
        var cnf = "examples/edgesecurity"

        @Option(help: "The Python with the SDK for the handler sidecars (default: .venv/bin/python).")
        var python: String?

        @Option(help: "Run one mode only: on or off (for profiling one; no ratio is printed).")
        var only: String?

        @Option(help: "Rounds the sessions are split into: the modes take turns (off, on, on, off, …), so that a machine whose speed drifts during the run slows both alike.")
        var rounds = 4

        func run() async throws {
            guard getuid() == 0 else { throw commandFailure("the chain benchmark builds an edge node: run it as root") }
            guard rounds >= 1, sessions >= rounds else { throw commandFailure("--rounds takes 1 to --sessions (\(sessions)), not \(rounds)") }
            let configuration = options.configuration
            let infra = LocalInfra(configuration: configuration)
            let alreadyUp = Set(infra.status().filter(\.isUp).map(\.kind))
            let kinds: [InfraKind] = [.redis, .broker, .clamd]
            do {
                try infra.up(kinds) { print("    \($0)") }
            } catch {
                throw commandFailure("\(error)")
            }
            defer { infra.down(kinds.filter { !alreadyUp.contains($0) }) { print("    \($0)") } }
            let bundle = try CNFBundle(cnf)
            let python = try sdkPython(python)
            print(
                "chain benchmark: \(sessions) sessions per mode in \(rounds) rounds, \(clients) clients, \(cnf); "
                    + "\(ProcessInfo.processInfo.activeProcessorCount) cores")

            var modes = [false, true]
            switch only {
            case nil: break
            case "on": modes = [true]
            case "off": modes = [false]
            default: throw commandFailure("--only takes on or off, not '\(only!)'")
            }
            // Both nodes run side by side and take turns. The untraced one keeps its pods' state in
            // a Redis of its own: the traced node's collector watches the infrastructure's Redis
            // and must see nothing of the untraced sessions.
            let work = "\(configuration.runDirectory)/bench-chain"
            var ownRedis = configuration
            ownRedis.runDirectory = "\(work)/redis-off"
            ownRedis.redisPort = SocketProbe.freePort()
            let offRedis = LocalInfra(configuration: ownRedis)
            var nodes: [Bool: LocalNode] = [:]
            var centralPid: Int32 = 0
            defer {
                for node in nodes.values { node.down { _ in } }
                if modes.contains(false) { offRedis.down([.redis]) { _ in } }
                if centralPid > 0 { _ = ProcessControl.stop(centralPid) }
            }
            if modes.contains(false) {
                try? FileManager.default.createDirectory(atPath: ownRedis.runDirectory, withIntermediateDirectories: true)
                do {
                    try offRedis.up([.redis]) { print("    untraced node's \($0)") }
                } catch {
                    throw commandFailure("\(error)")
                }
            }
            for telemetry in modes {
                nodes[telemetry] = try await prepare(
                    telemetry: telemetry, bundle: bundle, python: python, configuration: configuration,
                    podRedis: telemetry ? nil : ownRedis.redisSocket)
            }
            // off, on, on, off, off, on, …: a drift in the machine's speed during the run falls on
            // both modes alike.
            var turns: [(round: Int, telemetry: Bool)] = []
            for round in 0..<rounds {
                let pair = round % 2 == 0 ? [false, true] : [true, false]
                turns += pair.filter(modes.contains).map { (round, $0) }
            }
            var runs: [Bool: ChainRun] = [:]
            var between: [String: Double] = [:]
            print("")
            for turn in turns {
                let node = nodes[turn.telemetry]!
                let share = sessions / rounds + (turn.round == rounds - 1 ? sessions % rounds : 0)
                // What the other node still does (a collector releasing its last sessions) is done
                // before this turn starts, and counted in neither.
                for (part, seconds) in await Self.waitForQuiet(nodes: nodes.values.map(\.runDirectory)) {
                    between[part, default: 0] += seconds
                }
                let cpuBefore = ProcessCPU.byPart(node: node.runDirectory)
                let load = ChainLoad.run(namespace: "\(node.name)-client", sessions: share, clients: clients, progress: false)
                let cpuAfter = ProcessCPU.byPart(node: node.runDirectory)
                print(
                    String(
                        format: "  round %d, tracing %@: %d sessions in %.1f s: %.0f/s, p50 %.2f ms, p99 %.2f ms, %d failed", turn.round + 1,
                        turn.telemetry ? "on " : "off", load.latencies.count, load.seconds, Double(load.latencies.count) / load.seconds,
                        load.percentile(0.5), load.percentile(0.99), load.failures))
                var run = runs[turn.telemetry] ?? ChainRun()
                run.add(load, cpu: ProcessCPU.spent(from: cpuBefore, to: cpuAfter))
                runs[turn.telemetry] = run
            }
            for telemetry in modes {
                let node = nodes[telemetry]!
                let pids = node.pids()
                runs[telemetry]!.agentRSS = Self.peakRSS(pids["node-agent"] ?? 0)
                runs[telemetry]!.collectorRSS = telemetry ? Self.peakRSS(pids["collector"] ?? 0) : nil
            }
            print("")
            for telemetry in modes {
                let run = runs[telemetry]!
                print(
                    String(
                        format: "  tracing %@: %d sessions in %.1f s: %.0f/s, p50 %.2f ms, p99 %.2f ms, %d failed", telemetry ? "on " : "off",
                        run.latencies.count, run.seconds, run.rate, run.p50, run.p99, run.failures))
                let spent = run.cpu.filter { $0.value >= 0.01 }.sorted { $0.value > $1.value }
                print("    CPU seconds during its turns: " + spent.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "))
            }
            let trailing = between.filter { $0.value >= 0.01 }.sorted { $0.value > $1.value }
            if !trailing.isEmpty {
                print("    CPU seconds between turns (counted in neither): " + trailing.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "))
            }
            if let onNode = nodes[true], let cookies = runs[true]?.cookies {
                // Central is not part of the node: it starts after the load and reads the topic
                // from its start, so its work is not counted against the node's.
                let listen = "127.0.0.1:\(SocketProbe.freePort())"
                centralPid = try startCentralProcess(
                    brokers: configuration.brokers, work: "\(work)/central", listen: listen, topic: onNode.topic)
                runs[true]!.correlation = await correlate(cookies, central: CentralClient(base: "http://\(listen)"))
            }
            guard let off = runs[false], let on = runs[true] else { return }
            print("")
            var rows = [["mode", "sessions/s", "p50 ms", "p99 ms", "failed", "agent RSS", "collector RSS"]]
            for (name, run) in [("off (no exporter, no collector)", off), ("on (traced and collected)", on)] {
                rows.append([
                    name, String(format: "%.0f", run.rate), String(format: "%.2f", run.p50), String(format: "%.2f", run.p99), "\(run.failures)",
                    String(format: "%.1f MB", Double(run.agentRSS) / 1_048_576),
                    run.collectorRSS.map { String(format: "%.1f MB", Double($0) / 1_048_576) } ?? "-",
                ])
            }
            for line in table(rows) { print("  \(line)") }
            let ratio = on.rate / max(off.rate, 1)
            print(String(format: "  on / off: %.3f× requests/s (target ≥ 0.9×) %@", ratio, ratio >= 0.9 ? "met" : "NOT MET"))
            if let correlation = on.correlation {
                let share = Double(correlation.complete) / Double(max(correlation.sessions, 1)) * 100
                print(
                    String(
                        format: "  correlation: %d of %d sessions complete at central (%.2f%%, target ≥ 99.9%% %@), %d mixed (target 0 %@)",
                        correlation.complete, correlation.sessions, share, share >= 99.9 ? "met" : "NOT MET", correlation.mixed,
                        correlation.mixed == 0 ? "met" : "NOT MET"))
                for (reason, count) in correlation.incomplete.sorted(by: { $0.value > $1.value }).prefix(5) {
                    print("    incomplete: \(count) lacking \(reason)")
                }
            }
        }

        /// One mode's turns added up.
        struct ChainRun {
            var latencies: [Double] = []
            var cookies: [Cookie] = []
            var failures = 0
            var seconds = 0.0
            var cpu: [String: Double] = [:]
            var agentRSS = 0
            var collectorRSS: Int?
            var correlation: Correlation?

            var rate: Double { Double(latencies.count) / max(seconds, 1e-9) }
            var p50: Double { ChainLoad.percentile(0.5, of: latencies) }
            var p99: Double { ChainLoad.percentile(0.99, of: latencies) }

            mutating func add(_ load: ChainLoad.Outcome, cpu spent: [String: Double]) {
                latencies += load.latencies
                cookies += load.cookies
                failures += load.failures
                seconds += load.seconds
                for (part, value) in spent { cpu[part, default: 0] += value }
            }
        }

        struct Correlation {
            var sessions = 0
            var complete = 0
            var mixed = 0
            var incomplete: [String: Int] = [:]
        }

        /// Builds a throwaway node, deploys the CNF and warms it up with 200 sessions.
        private func prepare(
            telemetry: Bool, bundle: CNFBundle, python: String, configuration: InfraConfiguration, podRedis: String?
        ) async throws -> LocalNode {
            let name = "chain\(telemetry ? "on" : "off")"
            var node = LocalNode(
                name: name, runDirectory: "\(configuration.runDirectory)/bench-chain/\(name)", executable: selfExecutable(),
                infra: configuration)
            node.python = python
            node.telemetry = telemetry
            node.podRedisSocket = podRedis
            node.otlpListen = "127.0.0.1:\(SocketProbe.freePort())"
            node.metricsListen = "127.0.0.1:\(SocketProbe.freePort())"
            node.topic = "edgetrail.bench-chain"
            print("")
            print("== tracing \(telemetry ? "on" : "off"): node \(name)")
            node.down { _ in }
            do {
                try node.up { print("  \($0)") }
            } catch {
                node.down { _ in }
                throw commandFailure("the node did not come up: \(error.message)")
            }
            let request = bundle.request
            let outcome = try await NodeAgentClient.with(socket: node.agentSocket) { client in
                try await CNFCommand.deploy(request, update: false, client: client, indent: nil)
            }
            guard outcome.ok else {
                node.down { _ in }
                throw commandFailure("the deploy failed: \(outcome.error)")
            }
            print("  \(outcome.cnf) version \(outcome.version) deployed")
            _ = ChainLoad.run(namespace: "\(name)-client", sessions: min(200, sessions), clients: clients, progress: false)
            return node
        }

        /// Waits (up to 10 s) until the nodes' processes, Redis and the broker together use less
        /// than a tenth of a core; returns the CPU seconds they used meanwhile, by part.
        static func waitForQuiet(nodes: [String]) async -> [String: Double] {
            let start = ProcessCPU.byPart(nodes: nodes)
            var last = start
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                try? await Task.sleep(for: .milliseconds(300))
                let now = ProcessCPU.byPart(nodes: nodes)
                let used = ProcessCPU.spent(from: last, to: now).values.reduce(0, +)
                last = now
                if used < 0.03 { break }
            }
            return ProcessCPU.spent(from: start, to: last)
        }

        /// Looks every session up at central until each is complete (or 120 s pass without progress).
        private func correlate(_ cookies: [Cookie], central: CentralClient) async -> Correlation {
            print("  looking up \(cookies.count) sessions at central")
            let expected: Set<String> = [
                "HTTP GET", "event request_received", "handler request_received", "policy_mgr.check", "PolicyManager/Check",
                "upstream GET", "event response_sent", "handler response_sent", "content_inspect.inspect", "ContentInspect/Inspect",
                "event inspect_done", "handler inspect_done",
            ]
            var pending = cookies
            var verdicts: [Cookie: SessionCheck] = [:]
            var lastProgress = Date()
            while !pending.isEmpty, Date().timeIntervalSince(lastProgress) < 120 {
                let checked = await withTaskGroup(of: (Cookie, SessionCheck).self) { group in
                    var results: [(Cookie, SessionCheck)] = []
                    var iterator = pending.makeIterator()
                    for _ in 0..<8 {
                        if let cookie = iterator.next() {
                            group.addTask { (cookie, await Self.check(cookie, central: central, expected: expected)) }
                        }
                    }
                    while let result = await group.next() {
                        results.append(result)
                        if let cookie = iterator.next() {
                            group.addTask { (cookie, await Self.check(cookie, central: central, expected: expected)) }
                        }
                    }
                    return results
                }
                var still: [Cookie] = []
                for (cookie, check) in checked {
                    verdicts[cookie] = check
                    if check.lacking.isEmpty || check.mixed { continue }
                    still.append(cookie)
                }
                if still.count < pending.count {
                    lastProgress = Date()
                    print("    \(cookies.count - still.count) of \(cookies.count) complete")
                }
                pending = still
                if !pending.isEmpty { try? await Task.sleep(for: .seconds(2)) }
            }
            var correlation = Correlation(sessions: cookies.count)
            for cookie in cookies {
                let check = verdicts[cookie] ?? SessionCheck(lacking: ["everything"])
                if check.mixed { correlation.mixed += 1 }
                if check.lacking.isEmpty && !check.mixed {
                    correlation.complete += 1
                } else if let first = check.lacking.first {
                    correlation.incomplete[first, default: 0] += 1
                }
            }
            return correlation
        }

        struct SessionCheck: Sendable {
            var lacking: [String] = []
            var mixed = false
        }

        static func check(_ cookie: Cookie, central: CentralClient, expected: Set<String>) async -> SessionCheck {
            guard let timeline = try? await central.timeline(cookie).timeline else { return SessionCheck(lacking: ["the session at central"]) }
            var check = SessionCheck()
            if !timeline.flows.contains(where: { $0.endNs > 0 }) { check.lacking.append("its flow") }
            let operations = Set(timeline.spans.map(\.operation))
            let missing = expected.subtracting(operations)
            if !missing.isEmpty { check.lacking.append("spans (\(missing.sorted().joined(separator: ", ")))") }
            let ids = Set(timeline.spans.map(\.spanId))
            let roots = timeline.spans.filter { $0.parentSpanId.isEmpty || !ids.contains($0.parentSpanId) }
            if roots.count != 1 || roots.first?.operation != "HTTP GET" || Set(timeline.spans.map(\.traceId)).count != 1 {
                check.lacking.append("one span tree rooted at the proxy's request")
            }
            if timeline.snapshots.isEmpty { check.lacking.append("Redis snapshots") }
            check.mixed =
                timeline.spans.contains { ($0.tags["edgetrail.cookie"] ?? cookie.hex) != cookie.hex }
                || timeline.snapshots.contains { !$0.key.hasPrefix(cookie.redisKeyPrefix) }
            return check
        }

        /// The peak resident set of a process, from /proc.
        static func peakRSS(_ pid: Int32) -> Int { ProcessFigures.peakRSS(pid) }
    }
}

/// Client threads in the client namespace, each opening a new connection per session to
/// 10.201.0.2:80 (one GET, HTTP/1.0) until `sessions` are done; each answer's cookie is kept.
enum ChainLoad {
    struct Outcome {
        var latencies: [Double]
        var cookies: [Cookie]
        var failures: Int
        var seconds: Double

        func percentile(_ p: Double) -> Double { ChainLoad.percentile(p, of: latencies) }
    }

    static func percentile(_ p: Double, of latencies: [Double]) -> Double {
        let sorted = latencies.sorted()
        return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    static func run(namespace: String, sessions: Int, clients: Int, progress: Bool) -> Outcome {
        let next = Atomic<Int>(0)
        let results = Mutex(Outcome(latencies: [], cookies: [], failures: 0, seconds: 0))
        let done = DispatchGroup()
        let started = Date()
        for _ in 0..<clients {
            done.enter()
            Thread {
                defer { done.leave() }
                var latencies: [Double] = []
                var cookies: [Cookie] = []
                var failures = 0
                _ = try? NetworkNamespace.run(named: namespace) {
                    while next.add(1, ordering: .relaxed).oldValue < sessions {
                        let began = DispatchTime.now().uptimeNanoseconds
                        let answer = NamespaceHTTPClient.get([10, 201, 0, 2], timeoutSeconds: 10) ?? ""
                        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e6
                        guard answer.hasPrefix("HTTP/1.1 200") || answer.hasPrefix("HTTP/1.0 200"),
                            let line = answer.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("edgetrail-cookie:") }),
                            let cookie = Cookie(hex: line.dropFirst("edgetrail-cookie:".count).trimmingCharacters(in: .whitespaces))
                        else {
                            failures += 1
                            continue
                        }
                        latencies.append(elapsed)
                        cookies.append(cookie)
                    }
                }
                results.withLock {
                    $0.latencies += latencies
                    $0.cookies += cookies
                    $0.failures += failures
                }
            }.start()
        }
        if progress {
            while done.wait(timeout: .now() + 5) == .timedOut {
                let count = min(next.load(ordering: .relaxed), sessions)
                print(String(format: "    %d/%d sessions, %.0f/s", count, sessions, Double(count) / Date().timeIntervalSince(started)))
            }
        } else {
            done.wait()
        }
        return results.withLock {
            var outcome = $0
            outcome.seconds = Date().timeIntervalSince(started)
            return outcome
        }
    }
}

/// CPU time of the processes a chain run involves, by part: the node's (found by its run
/// directory on their command line: each pod's μsrv and sidecar, the collector, the agent, the
/// origin, the Datapath Manager) and the broker's and Redis's.
enum ProcessCPU {
    static func byPart(node: String) -> [String: Double] {
        byPart(nodes: [node])
    }

    /// What each part used between two readings.
    static func spent(from before: [String: Double], to after: [String: Double]) -> [String: Double] {
        after.reduce(into: [:]) { spent, part in spent[part.key] = part.value - (before[part.key] ?? 0) }
    }

    /// The parts of several nodes together (a part of the same name on two nodes is summed; the
    /// origins, whose command lines do not name their node, are counted whichever node is asked
    /// for).
    static func byPart(nodes: [String]) -> [String: Double] {
        var parts: [String: Double] = [:]
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let command = ProcessControl.commandLine(pid),
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let part: String
            let words = command.split(separator: " ").map(String.init)
            if command.contains("tansu") {
                part = "broker"
            } else if command.contains("redis-server") {
                part = "redis"
            } else if !nodes.contains(where: { command.contains($0) }) && !command.contains("origin --listen 10.201") {
                continue
            } else if command.contains("edgetrail.sidecar"), let index = words.firstIndex(of: "--microservice"), index + 1 < words.count {
                part = "\(words[index + 1]) sidecar"
            } else if command.contains("microservice run"), let index = words.firstIndex(of: "--name"), index + 1 < words.count {
                part = words[index + 1]
            } else if command.contains(" collector ") {
                part = "collector"
            } else if command.contains("node agent") {
                part = "agent"
            } else if command.contains("datapath serve") {
                part = "datapath-manager"
            } else if command.contains(" origin ") {
                part = "origin"
            } else {
                continue
            }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the command: state is field 3; utime and stime are fields 14 and 15.
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
            parts[part, default: 0] += (user + system) / ticks
        }
        return parts
    }
}
