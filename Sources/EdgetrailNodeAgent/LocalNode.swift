import EdgetrailCore
import EdgetrailInfra
import EdgetrailNet
import EdgetrailNode
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A local edge node (DESIGN.md, "Edge node topology"), as `edgetrail node up/status/down` run
/// it: the namespaces `NAME`, `NAME-client` (10.200.0.2) and `NAME-origin` (10.201.0.2, where a
/// real HTTP origin serves `examples/origin/`), and on the node its Datapath Manager (the eBPF
/// datapath on the client's link) and its edge collector (spans, Redis, the manager's flow events,
/// shipping to the local broker). Its processes are daemons: their pids are kept in
/// `RUN/node.json`, their output in `RUN/logs/`. `down` undoes all of it, and is harmless twice.
public struct LocalNode: Sendable {
    public enum Part: String, CaseIterable, Sendable {
        case origin
        case datapath = "datapath-manager"
        case collector
        case agent = "node-agent"
    }

    public struct Status: Sendable, CustomStringConvertible {
        public var part: String
        public var up: Bool
        public var detail: String
        public var description: String { "\(part.padding(toLength: 17, withPad: " ", startingAt: 0)) \(up ? "up  " : "down") \(detail)" }
    }

    public let name: String
    public let runDirectory: String
    /// The `edgetrail` executable the node's processes run.
    public let executable: String
    public let infra: InfraConfiguration
    public var otlpListen = "127.0.0.1:4317"
    public var metricsListen = "127.0.0.1:9464"
    public var topic = "edgetrail.telemetry"
    public var originDirectory: String?
    /// The Python with the SDK that the pods' handler sidecars run.
    public var python = "python3"
    /// Without telemetry the node has no collector and its pods export no spans: what the
    /// chain benchmark compares tracing against.
    public var telemetry = true
    /// The Redis socket the pods keep their state in; the local infrastructure's by default. The
    /// chain benchmark gives its untraced node a Redis of its own, so that the traced node's
    /// collector, running beside it, sees none of its writes.
    public var podRedisSocket: String?

    public init(name: String, runDirectory: String, executable: String, infra: InfraConfiguration) {
        self.name = name
        self.runDirectory = runDirectory
        self.executable = executable
        self.infra = infra
    }

    public var datapathSocket: String { "\(runDirectory)/datapath.sock" }
    /// The node collector's filter rules: edited by hand or activated from the portal's Filters
    /// page; the collector applies a change within a second (a broken one is refused).
    public var filterFile: String { "\(runDirectory)/filters/active.rules" }
    public var otlpSocket: String { "\(runDirectory)/otlp.sock" }
    public var agentSocket: String { "\(runDirectory)/agent.sock" }
    var stateFile: String { "\(runDirectory)/node.json" }
    func logFile(_ part: Part) -> String { "\(runDirectory)/logs/\(part.rawValue).log" }

    /// Builds the node and starts its parts, saying what it started and where; on a failure it
    /// removes what it made and says why.
    public func up(progress: (String) -> Void) throws(NodeError) {
        guard getuid() == 0 else {
            throw NodeError("an edge node is network namespaces and eBPF programs: run as root (sudo)")
        }
        let broker = infra.endpoint(of: .broker)
        let redis = infra.endpoint(of: .redis)
        for (what, endpoint) in [("the broker", broker), ("Redis", redis)] where !SocketProbe.isListening(endpoint) {
            throw NodeError("\(what) is not up at \(endpoint); start the local infrastructure first: edgetrail infra up")
        }
        do {
            try FileManager.default.createDirectory(atPath: runDirectory + "/logs", withIntermediateDirectories: true)
        } catch {
            throw NodeError("cannot create \(runDirectory): \(error.localizedDescription)")
        }
        let topology: EdgeNodeNamespaces
        do {
            topology = try EdgeNodeNamespaces(named: name)
        } catch {
            throw NodeError("\(error)")
        }
        progress(
            "namespaces: \(topology.node) (the node), \(topology.client) (client 10.200.0.2), \(topology.server) (origin 10.201.0.2)")
        var pids: [String: Int32] = [:]
        do {
            var originArguments = ["netns", "exec", topology.server, executable, "origin", "--listen", "10.201.0.2:80"]
            if let originDirectory { originArguments += ["--dir", originDirectory] }
            pids[Part.origin.rawValue] = try spawn(.origin, "/usr/sbin/ip", originArguments)
            try save(pids)
            try wait(for: .origin, pid: pids[Part.origin.rawValue]!) {
                (try? NetworkNamespace.run(named: topology.client) {
                    SocketProbe.isListening(.tcp(host: "10.201.0.2", port: 80))
                }) ?? false
            }
            progress("origin: http://10.201.0.2/ in \(topology.server) (log \(logFile(.origin)))")

            pids[Part.datapath.rawValue] = try spawn(
                .datapath, executable,
                [
                    "datapath", "serve", "--interface", topology.clientInterface, "--netns", topology.node, "--socket",
                    datapathSocket, "--node", name,
                ])
            try save(pids)
            try wait(for: .datapath, pid: pids[Part.datapath.rawValue]!) {
                SocketProbe.isListening(.unix(path: datapathSocket))
            }
            progress("datapath-manager: eBPF on \(topology.clientInterface) in \(topology.node), API \(datapathSocket)")

            if telemetry {
                let configuration = "\(runDirectory)/collector.yaml"
                try writeFilterFileIfMissing()
                // Redis's Unix socket when it has one (what the pods use too): cheaper per read than
                // loopback TCP, and the collector reads every key the pods change.
                let snapshotRedis: Endpoint =
                    FileManager.default.fileExists(atPath: infra.redisSocket) ? .unix(path: infra.redisSocket) : redis
                try collectorConfiguration(broker: broker, redis: snapshotRedis).write(
                    toFile: configuration, atomically: true, encoding: .utf8)
                pids[Part.collector.rawValue] = try spawn(.collector, executable, ["collector", "--config", configuration])
                try save(pids)
                try wait(for: .collector, pid: pids[Part.collector.rawValue]!) {
                    SocketProbe.isListening(.unix(path: otlpSocket))
                }
                progress(
                    "collector: OTLP \(otlpListen) and \(otlpSocket), flows from the datapath, Redis \(snapshotRedis), to \(topic) on \(broker); metrics http://\(metricsListen)/metrics")
            } else {
                progress("collector: not started (no telemetry: the pods export no spans)")
            }

            pids[Part.agent.rawValue] = try spawn(
                .agent, executable,
                [
                    "node", "agent", "--name", name, "--run-dir", runDirectory, "--python", python, "--redis", podRedisSocket ?? infra.redisSocket,
                    "--clamd", infra.clamdSocket,
                ]
                    + (telemetry ? [] : ["--no-telemetry"]))
            try save(pids)
            try wait(for: .agent, pid: pids[Part.agent.rawValue]!) {
                SocketProbe.isListening(.unix(path: agentSocket))
            }
            progress("node-agent: CNFs are deployed through \(agentSocket) (edgetrail cnf deploy DIR --node \(name))")
        } catch {
            down { _ in }
            throw error as? NodeError ?? NodeError("\(error)")
        }
    }

    /// A line per part: the namespaces and each process, up or down.
    public func status() -> [Status] {
        let state = loadState()
        let pids = load()
        let otlpListen = state["otlp"] as? String ?? otlpListen
        let metricsListen = state["metrics"] as? String ?? metricsListen
        var lines: [Status] = []
        let namespaces = [name, "\(name)-client", "\(name)-origin"]
        let present = namespaces.filter { FileManager.default.fileExists(atPath: "/run/netns/\($0)") }
        lines.append(
            Status(
                part: "namespaces", up: present.count == namespaces.count,
                detail: present.isEmpty ? "none" : present.joined(separator: ", ")))
        for part in Part.allCases {
            if part == .collector, state["telemetry"] as? Bool == false {
                lines.append(Status(part: part.rawValue, up: true, detail: "not started (no telemetry)"))
                continue
            }
            let pid = pids[part.rawValue]
            let alive = pid.map(ProcessControl.isAlive) ?? false
            let detail: String
            switch part {
            case .origin: detail = "http://10.201.0.2/ in \(name)-origin"
            case .datapath: detail = datapathSocket
            case .collector: detail = "OTLP \(otlpListen), metrics http://\(metricsListen)/metrics"
            case .agent: detail = agentSocket
            }
            lines.append(Status(part: part.rawValue, up: alive, detail: alive ? "pid \(pid!), \(detail)" : detail))
        }
        return lines
    }

    /// Stops the node's processes (the node agent — which stops the CNFs' pods and removes their
    /// namespaces and rules —, collector, Datapath Manager — which takes its programs and
    /// qdisc off the interface —, origin) and removes its namespaces. Returns what it removed.
    @discardableResult
    public func down(progress: (String) -> Void) -> [String] {
        let pids = load()
        var removed: [String] = []
        for part in Part.allCases.reversed() {
            guard let pid = pids[part.rawValue], ProcessControl.isAlive(pid) else { continue }
            ProcessControl.stop(pid, signal: SIGTERM, timeout: part == .agent ? 60 : 15)
            progress("\(part.rawValue): stopped (pid \(pid))")
            removed.append(part.rawValue)
        }
        let namespaces = EdgeNodeNamespaces.remove(named: name)
        if !namespaces.isEmpty { progress("namespaces: removed \(namespaces.sorted().joined(separator: ", "))") }
        removed += namespaces
        for path in [stateFile, datapathSocket, otlpSocket, agentSocket] { try? FileManager.default.removeItem(atPath: path) }
        return removed
    }

    // MARK: Pieces

    private func spawn(_ part: Part, _ program: String, _ arguments: [String]) throws -> Int32 {
        try ProcessControl.spawnDetached(executable: program, arguments: arguments, logPath: logFile(part))
    }

    /// Waits until `ready` (15 s at most); a process that exits first, or never gets ready, is
    /// an error quoting the end of its log.
    private func wait(for part: Part, pid: Int32, ready: () -> Bool) throws(NodeError) {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if ready() { return }
            if !ProcessControl.isAlive(pid) {
                throw NodeError("\(part.rawValue) exited while starting; the end of \(logFile(part)):\n\(ProcessControl.tail(logFile(part)))")
            }
            usleep(50_000)
        }
        throw NodeError("\(part.rawValue) was not ready within 15 s; the end of \(logFile(part)):\n\(ProcessControl.tail(logFile(part)))")
    }

    private func save(_ pids: [String: Int32]) throws {
        let state: [String: Any] = ["name": name, "pids": pids, "otlp": otlpListen, "metrics": metricsListen, "telemetry": telemetry]
        let data = try JSONSerialization.data(withJSONObject: state, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: stateFile))
    }

    private func loadState() -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: stateFile),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object
    }

    /// The node's processes by part (`node-agent`, `collector`, …), as started.
    public func pids() -> [String: Int32] { load() }

    private func load() -> [String: Int32] {
        ((loadState()["pids"] as? [String: Int]) ?? [:]).mapValues { Int32($0) }
    }

    /// A node starts with no filter rules (everything the join releases is shipped); a file
    /// already there (rules activated earlier) is kept.
    func writeFilterFileIfMissing() throws {
        guard !FileManager.default.fileExists(atPath: filterFile) else { return }
        try FileManager.default.createDirectory(
            atPath: (filterFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try """
            # Filter rules of the node \(name)'s collector (docs/filters.md). None yet: everything is shipped.
            # Edit here or activate a file from the portal's Filters page; a change applies within a
            # second, and a file that does not lint is refused (the rules in force stay).

            """.write(toFile: filterFile, atomically: true, encoding: .utf8)
    }

    func collectorConfiguration(broker: Endpoint, redis: Endpoint) -> String {
        """
        # Written by 'edgetrail node up' for the node \(name).
        collector:
          node: \(name)
          data_dir: \(runDirectory)/collector
        sources:
          otlp:
            listen: \(otlpListen)
            socket: \(otlpSocket)
          snapshots:
            redis: \(redis)
          flows:
            datapath: \(datapathSocket)
        filters:
          files: [\(filterFile)]
        sinks:
          kafka:
            brokers: \(broker)
            topic: \(topic)
            partitions: 12
        metrics:
          listen: \(metricsListen)

        """
    }
}

/// The node could not be brought up (or down); the message says why and what to do.
public struct NodeError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
