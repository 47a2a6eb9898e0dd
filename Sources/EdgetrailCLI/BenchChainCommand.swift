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
                Builds a throwaway edge node twice and deploys examples/edgesecurity (the demo's step 3: \
                the proxy's request_received handler asks policy-mgr, its response_sent handler has \
                content-inspect classify the body). Each client session is a new connection from the \
                client namespace to 10.201.0.2:80, steered into the proxy by the eBPF datapath. Off: no \
                collector and the pods export no spans. On: the node's collector ships to the broker and \
                central stores; then every session is looked up at central: complete when it has all \
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

        func run() async throws {
            guard getuid() == 0 else { throw commandFailure("the chain benchmark builds an edge node: run it as root") }
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
            print("chain benchmark: \(sessions) sessions per mode, \(clients) clients, \(cnf); \(ProcessInfo.processInfo.activeProcessorCount) cores")

            var modes = [false, true]
            switch only {
            case nil: break
            case "on": modes = [true]
            case "off": modes = [false]
            default: throw commandFailure("--only takes on or off, not '\(only!)'")
            }
            var results: [Bool: ChainRun] = [:]
            for telemetry in modes {
                results[telemetry] = try await measure(
                    telemetry: telemetry, bundle: bundle, python: python, configuration: configuration)
            }
            guard let off = results[false], let on = results[true] else { return }
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

        struct ChainRun {
            var rate: Double
            var p50: Double
            var p99: Double
            var failures: Int
            var agentRSS: Int
            var collectorRSS: Int?
            var correlation: Correlation?
        }

        struct Correlation {
            var sessions = 0
            var complete = 0
            var mixed = 0
            var incomplete: [String: Int] = [:]
        }

        private func measure(
            telemetry: Bool, bundle: CNFBundle, python: String, configuration: InfraConfiguration
        ) async throws -> ChainRun {
            let name = "chain\(telemetry ? "on" : "off")"
            var node = LocalNode(
                name: name, runDirectory: "\(configuration.runDirectory)/bench-chain/\(name)", executable: selfExecutable(),
                infra: configuration)
            node.python = python
            node.telemetry = telemetry
            node.otlpListen = "127.0.0.1:\(SocketProbe.freePort())"
            node.metricsListen = "127.0.0.1:\(SocketProbe.freePort())"
            node.topic = "edgetrail.bench-chain"
            print("")
            print("== tracing \(telemetry ? "on" : "off"): node \(name)")
            node.down { _ in }
            var centralPid: Int32 = 0
            defer {
                node.down { _ in }
                if centralPid > 0 { _ = ProcessControl.stop(centralPid) }
            }
            do {
                try node.up { print("  \($0)") }
            } catch {
                throw commandFailure("the node did not come up: \(error.message)")
            }
            let request = bundle.request
            let outcome = try await NodeAgentClient.with(socket: node.agentSocket) { client in
                try await CNFCommand.deploy(request, update: false, client: client, indent: nil)
            }
            guard outcome.ok else { throw commandFailure("the deploy failed: \(outcome.error)") }
            print("  \(outcome.cnf) version \(outcome.version) deployed")
            let client = "\(name)-client"
            _ = ChainLoad.run(namespace: client, sessions: min(200, sessions), clients: clients, progress: false)
            let cpuBefore = ProcessCPU.byPart(node: node.runDirectory)
            let load = ChainLoad.run(namespace: client, sessions: sessions, clients: clients, progress: true)
            let cpuAfter = ProcessCPU.byPart(node: node.runDirectory)
            let pids = node.pids()
            var run = ChainRun(
                rate: Double(load.latencies.count) / load.seconds, p50: load.percentile(0.5), p99: load.percentile(0.99),
                failures: load.failures, agentRSS: Self.peakRSS(pids["node-agent"] ?? 0),
                collectorRSS: telemetry ? Self.peakRSS(pids["collector"] ?? 0) : nil)
            print(
                String(
                    format: "  %d sessions in %.1f s: %.0f/s, p50 %.2f ms, p99 %.2f ms, %d failed", load.latencies.count, load.seconds, run.rate,
                    run.p50, run.p99, load.failures))
            let spent = cpuAfter.map { ($0.key, $0.value - (cpuBefore[$0.key] ?? 0)) }.filter { $0.1 > 0.05 }.sorted { $0.1 > $1.1 }
            print(
                "  CPU seconds during the load: "
                    + spent.map { String(format: "%@ %.1f", $0.0, $0.1) }.joined(separator: ", "))
            if telemetry {
                // Central is not part of the node: it starts after the load and reads the topic
                // from its start, so its work is not counted against the node's.
                let listen = "127.0.0.1:\(SocketProbe.freePort())"
                centralPid = try startCentralProcess(
                    brokers: configuration.brokers, work: "\(configuration.runDirectory)/bench-chain/central", listen: listen,
                    topic: node.topic)
                run.correlation = await correlate(load.cookies, central: CentralClient(base: "http://\(listen)"))
            }
            return run
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
            if !timeline.flows.contains(where: { $0.endNs != nil }) { check.lacking.append("its flow") }
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

        func percentile(_ p: Double) -> Double {
            let sorted = latencies.sorted()
            return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
        }
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
            } else if !command.contains(node) && !command.contains("origin --listen 10.201") {
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
