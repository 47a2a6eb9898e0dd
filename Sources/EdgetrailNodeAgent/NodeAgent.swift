import EdgetrailCNF
import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailInfra
import EdgetrailNet
import EdgetrailNode
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a node agent keeps things, and what its pods reach.
public struct NodeAgentConfiguration: Sendable {
    public var node: String
    /// The node's run directory (RUN/nodes/NODE): versions under `cnfs/`, the pods' sockets
    /// under `pods/`, their logs under `logs/pods/`.
    public var runDirectory: String
    /// The `edgetrail` executable the μsrvs run, and the Python with the SDK the sidecars run.
    public var executable: String
    public var python: String
    public var redisSocket: String
    public var otlpSocket: String
    public var datapathSocket: String
    public var clamdSocket: String
    /// How long a deploy or update waits for its pods to be healthy.
    public var healthTimeout: Duration = .seconds(30)

    public init(
        node: String, runDirectory: String, executable: String, python: String, redisSocket: String, otlpSocket: String,
        datapathSocket: String, clamdSocket: String
    ) {
        self.clamdSocket = clamdSocket
        self.node = node
        self.runDirectory = runDirectory
        self.executable = executable
        self.python = python
        self.redisSocket = redisSocket
        self.otlpSocket = otlpSocket
        self.datapathSocket = datapathSocket
    }

    public var socketPath: String { "\(runDirectory)/agent.sock" }
    func cnfDirectory(_ cnf: String) -> String { "\(runDirectory)/cnfs/\(cnf)" }
    func versionDirectory(_ cnf: String, _ version: Int) -> String { "\(cnfDirectory(cnf))/v\(version)" }
    func socketDirectory(_ cnf: String) -> String { "\(runDirectory)/pods/\(cnf)" }
    func logDirectory(_ cnf: String) -> String { "\(runDirectory)/logs/pods/\(cnf)" }

    func paths(cnf: String, version: Int) -> PodCommands.Paths {
        PodCommands.Paths(
            edgetrail: executable, python: python, socketDirectory: socketDirectory(cnf),
            spec: "\(versionDirectory(cnf, version))/cnf.yaml", handlerDirectory: "\(cnfDirectory(cnf))/handlers",
            redisSocket: redisSocket, otlpSocket: otlpSocket, datapathSocket: datapathSocket, clamdSocket: clamdSocket)
    }
}

/// The node agent: turns a CNF into pods on its node and keeps them running. A deploy or update
/// is checked whole before anything changes (the spec, every handler file loaded as the sidecar
/// would load it, the pod plan); then the pods it needs are started (or restarted, or only given
/// new handler files), waited for until healthy, and the CNF's datapath rules applied through the
/// Datapath Manager with each label resolved to its pod. An update that does not become healthy
/// is undone: the running version's pods, files and rules come back. One operation at a time;
/// status is answered at any time from the supervisors' own state.
public final class NodeAgent: Sendable {
    /// A pod as it runs: its plan, the MAC of its own interface, and its processes' supervisors.
    struct RunningPod: Sendable {
        var pod: PodPlan.Pod
        var mac: [UInt8]
        var microservice: Supervisor
        var sidecar: Supervisor?
        var sidecarLog: String
        /// The version whose spec its μsrv was started with.
        var version: Int
    }

    struct RunningCNF: Sendable {
        var spec: CNFSpec
        var plan: PodPlan
        var version: Int
        /// The highest version number handed out (failed updates use numbers too).
        var lastVersion: Int
        var pods: [String: RunningPod]
        var deployedAt: Date
        var lastError = ""
        var datapathVersion: UInt64 = 0
    }

    public let configuration: NodeAgentConfiguration
    let logger: Logger
    private let running = Mutex<[String: RunningCNF]>([:])
    private let gate = OperationGate()

    public init(configuration: NodeAgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    // MARK: Deploy and update

    /// Deploys (`update` false) or updates a CNF, telling `progress` each step; never throws:
    /// what went wrong is in the outcome.
    public func deploy(
        _ request: Edgetrail_V1_DeployRequest, update: Bool, progress: @escaping @Sendable (String) -> Void
    ) async -> Edgetrail_V1_DeployOutcome {
        await gate.run {
            var outcome = Edgetrail_V1_DeployOutcome()
            do throws(Failure) {
                outcome = try await self.apply(request, update: update, progress: progress)
            } catch {
                outcome.ok = false
                outcome.error = error.description
                outcome.cnf = error.cnf
                outcome.version = UInt32(self.running.withLock { $0[error.cnf]?.version ?? 0 })
                outcome.rolledBack = error.rolledBack
                if update, !error.cnf.isEmpty {
                    self.running.withLock { $0[error.cnf]?.lastError = error.description }
                }
            }
            self.logger.info(
                "\(update ? "update" : "deploy") \(outcome.ok ? "done" : "failed")",
                metadata: ["cnf": "\(outcome.cnf)", "version": "\(outcome.version)", "error": "\(outcome.error)"])
            return outcome
        }
    }

    /// A deploy or update that failed; `rolledBack` when an update was undone.
    struct Failure: Error, CustomStringConvertible {
        var cnf: String
        var description: String
        var rolledBack = false
    }

    private func apply(
        _ request: Edgetrail_V1_DeployRequest, update: Bool, progress: @escaping @Sendable (String) -> Void
    ) async throws(Failure) -> Edgetrail_V1_DeployOutcome {
        // 1. The spec, as the operator's file.
        let specPath = request.specPath.isEmpty ? "cnf.yaml" : request.specPath
        let specFolder = (specPath as NSString).deletingLastPathComponent
        let files = request.files
        let reader = CNFSpecReader(fileName: specPath, baseDirectory: "") { path in
            files[path] == nil ? "the deployment does not carry this file" : nil
        }
        var spec: CNFSpec
        do {
            spec = try reader.read(request.specYaml)
        } catch {
            throw Failure(cnf: "", description: error.diagnostics.map(\.description).joined(separator: "\n"))
        }
        spec.node = configuration.node
        let name = spec.name
        let current = running.withLock { $0[name] }
        if update, current == nil {
            throw Failure(cnf: name, description: "\(name) is not deployed on \(configuration.node); deploy it first: edgetrail cnf deploy")
        }
        if !update, let current {
            throw Failure(
                cnf: name,
                description: "\(name) is already deployed on \(configuration.node) (version \(current.version)); change it with: edgetrail cnf update")
        }
        for file in spec.files where file.hasPrefix("/") || file.split(separator: "/").contains("..") {
            throw Failure(cnf: name, description: "\(specPath): the file \(file) must be inside the spec's folder")
        }
        let version = (current?.lastVersion ?? 0) + 1
        running.withLock { if $0[name] != nil { $0[name]!.lastVersion = version } }
        progress("\(name) version \(version): spec checked (\(spec.microservices.count) μsrvs, \(spec.handlers.count) handlers, \(spec.datapath.count) datapath rules)")

        // 2. The version's folder: the spec and its files, what the pods run from.
        let folder = configuration.versionDirectory(name, version)
        do {
            try Self.writeVersion(folder: folder, spec: request.specYaml, files: files)
        } catch {
            throw Failure(cnf: name, description: "cannot write \(folder): \(error)")
        }

        // 3. Every handler loads (compiles, imports, defines handle) before any pod changes.
        let bindings = spec.handlers.map { (event: $0.event, file: $0.file) }
        if !bindings.isEmpty {
            let (ok, report) = (try? await Blocking.run { [configuration] in
                Self.checkHandlers(python: configuration.python, folder: folder, bindings: bindings)
            }) ?? (false, "could not run \(configuration.python) to check the handlers")
            guard ok else {
                let shown = report.replacingOccurrences(of: folder + "/", with: specFolder.isEmpty ? "" : specFolder + "/")
                throw Failure(
                    cnf: name,
                    description: "a handler does not load:\n\(shown)" + (update ? "\nnothing was changed: version \(current!.version) keeps running" : ""),
                    rolledBack: update)
            }
            progress("handlers: \(Set(bindings.map(\.file)).count) files load")
        }

        // 4. The plan: where each μsrv runs; pods keep their place across updates.
        let taken = running.withLock { all in Set(all.filter { $0.key != name }.values.flatMap { $0.plan.pods.map(\.index) }) }
        let named = Set(spec.files)
        let sources = files.filter { named.contains($0.key) }
        let plan: PodPlan
        do {
            plan = try PodPlan.make(spec, sources: sources, current: current?.plan, taken: taken)
        } catch {
            throw Failure(cnf: name, description: error.message)
        }

        if let current {
            return try await applyUpdate(from: current, to: spec, plan: plan, version: version, progress: progress)
        }
        return try await applyDeploy(spec: spec, plan: plan, version: version, progress: progress)
    }

    private func applyDeploy(
        spec: CNFSpec, plan: PodPlan, version: Int, progress: @escaping @Sendable (String) -> Void
    ) async throws(Failure) -> Edgetrail_V1_DeployOutcome {
        let name = spec.name
        var pods: [String: RunningPod] = [:]
        do {
            for pod in plan.pods {
                pods[pod.name] = try await startPod(pod, plan: plan, spec: spec, version: version, progress: progress)
            }
            try await waitHealthy(Array(pods.values), cnf: name, progress: progress)
            var cnf = RunningCNF(spec: spec, plan: plan, version: version, lastVersion: version, pods: pods, deployedAt: Date())
            cnf.datapathVersion = try await applyRules(replacing: name, with: cnf, progress: progress)
            running.withLock { $0[name] = cnf }
        } catch {
            progress("deploy failed: undoing it")
            await stopPods(Array(pods.values), removeNamespaces: true, progress: progress)
            throw Failure(cnf: name, description: "\(error)")
        }
        progress("\(name) version \(version) is running on \(configuration.node): \(plan.pods.count) pods healthy")
        return Self.success(name, version)
    }

    static func success(_ cnf: String, _ version: Int) -> Edgetrail_V1_DeployOutcome {
        var outcome = Edgetrail_V1_DeployOutcome()
        outcome.ok = true
        outcome.cnf = cnf
        outcome.version = UInt32(version)
        return outcome
    }

    private func applyUpdate(
        from current: RunningCNF, to spec: CNFSpec, plan: PodPlan, version: Int, progress: @escaping @Sendable (String) -> Void
    ) async throws(Failure) -> Edgetrail_V1_DeployOutcome {
        let name = spec.name
        let changes = UpdatePlan(from: current.plan, to: plan, oldRules: current.spec.datapath, newRules: spec.datapath)
        let summary = changes.changes.filter { $0.change != .unchanged }.map { "\($0.pod): \(Self.describe($0.change))" }
        progress(summary.isEmpty && !changes.rulesChanged ? "no pod changes" : "changes: " + (summary + (changes.rulesChanged ? ["datapath rules"] : [])).joined(separator: ", "))

        var pods = current.pods
        // What to put back if the new version does not come up.
        var undo: [(pod: String, before: RunningPod?)] = []
        var started: [RunningPod] = []
        do {
            for (podName, change) in changes.changes {
                switch change {
                case .start, .restart:
                    let before = pods[podName]
                    undo.append((podName, before))
                    if let before {
                        progress("pod \(podName): restarting (its μsrv or bindings changed)")
                        await stopPods([before], removeNamespaces: false, progress: progress)
                        pods[podName] = nil
                    }
                    let pod = try await startPod(
                        plan.pod(named: podName)!, plan: plan, spec: spec, version: version, mac: before?.mac, progress: progress)
                    pods[podName] = pod
                    started.append(pod)
                case .swapHandlers:
                    let before = pods[podName]!
                    undo.append((podName, before))
                    var after = before
                    after.pod = plan.pod(named: podName)!
                    let written = after.pod
                    try await Blocking.run { [configuration] in
                        try Self.writeHandlers(written, paths: configuration.paths(cnf: name, version: version))
                    }
                    if let pid = after.sidecar?.current.pid, pid > 0 { kill(pid, SIGHUP) }
                    pods[podName] = after
                    progress("pod \(podName): new handler code, μsrv kept running (\(after.pod.handlers.map(\.file).joined(separator: ", ")))")
                case .stop, .unchanged:
                    break
                }
            }
            try await waitHealthy(started, cnf: name, progress: progress)
            var next = current
            next.spec = spec
            next.plan = plan
            next.version = version
            next.lastVersion = version
            next.pods = pods.filter { plan.pod(named: $0.key) != nil }
            next.deployedAt = Date()
            next.lastError = ""
            if changes.rulesChanged {
                next.datapathVersion = try await applyRules(replacing: name, with: next, progress: progress)
            }
            running.withLock { $0[name] = next }
        } catch {
            let reason = "\(error)"
            progress("update to version \(version) failed: rolling back to version \(current.version)")
            let problems = await rollBack(current, pods: pods, undo: undo, progress: progress)
            throw Failure(
                cnf: name,
                description: "\(reason)\n"
                    + (problems.isEmpty
                        ? "rolled back: version \(current.version) keeps running"
                        : "the rollback to version \(current.version) was incomplete:\n" + problems.joined(separator: "\n")),
                rolledBack: problems.isEmpty)
        }
        // The new version runs and its rules point away from removed pods: now they can go.
        let removed = changes.changes.filter { $0.change == .stop }.compactMap { current.pods[$0.pod] }
        if !removed.isEmpty {
            await stopPods(removed, removeNamespaces: true, progress: progress)
        }
        progress("\(name) version \(version) is running on \(configuration.node)")
        return Self.success(name, version)
    }

    /// Puts the running version back: pods started for the update stopped (their namespaces
    /// removed when the old version had no such pod), old pods restarted, old handler files
    /// written back, old rules applied again.
    private func rollBack(
        _ current: RunningCNF, pods: [String: RunningPod], undo: [(pod: String, before: RunningPod?)],
        progress: @escaping @Sendable (String) -> Void
    ) async -> [String] {
        var problems: [String] = []
        var restored = current
        var restarted: [RunningPod] = []
        for (podName, before) in undo.reversed() {
            let now = pods[podName]
            if let before, let now, now.microservice === before.microservice {
                // Only its handler files changed: write the old ones back.
                _ = try? await Blocking.run { [configuration] in
                    try Self.writeHandlers(before.pod, paths: configuration.paths(cnf: current.spec.name, version: before.version))
                }
                if let pid = before.sidecar?.current.pid, pid > 0 { kill(pid, SIGHUP) }
                continue
            }
            if let now { await stopPods([now], removeNamespaces: before == nil, progress: progress) }
            if let before {
                do {
                    let pod = try await startPod(
                        before.pod, plan: current.plan, spec: current.spec, version: before.version,
                        mac: before.mac, progress: progress)
                    restored.pods[podName] = pod
                    restarted.append(pod)
                } catch {
                    problems.append("pod \(podName) could not be restarted: \(error)")
                }
            }
        }
        do {
            try await waitHealthy(restarted, cnf: current.spec.name, progress: progress)
        } catch {
            problems.append("\(error)")
        }
        // Rules are applied last in an update: if they were switched, switch them back.
        do {
            restored.datapathVersion = try await applyRules(replacing: current.spec.name, with: restored, progress: { _ in })
        } catch {
            problems.append("\(error)")
        }
        running.withLock { $0[current.spec.name] = restored }
        return problems
    }

    // MARK: Delete, list, status

    public func delete(_ name: String) async throws(NodeAgentError) -> [String] {
        try await gate.run { () throws(NodeAgentError) -> [String] in
            guard let cnf = self.running.withLock({ $0[name] }) else {
                throw NodeAgentError.notFound("no CNF named \(name) runs on \(self.configuration.node)")
            }
            let removed = Mutex<[String]>([])
            let remaining = self.running.withLock { all in all.filter { $0.key != name }.map(\.value) }
            if let version = try? await self.applyRules(all: remaining) {
                removed.withLock { $0.append("datapath rules of \(name) removed (rule set version \(version))") }
            }
            await self.stopPods(Array(cnf.pods.values), removeNamespaces: true) { line in removed.withLock { $0.append(line) } }
            self.running.withLock { _ = $0.removeValue(forKey: name) }
            try? FileManager.default.removeItem(atPath: self.configuration.socketDirectory(name))
            return removed.withLock { $0 }
        }
    }

    public func list() -> [Edgetrail_V1_CNFSummary] {
        running.withLock { Array($0.values) }.sorted { $0.spec.name < $1.spec.name }.map { summary(of: $0, pods: podStatus($0)) }
    }

    public func status(_ name: String) throws(NodeAgentError) -> Edgetrail_V1_CNFStatus {
        guard let cnf = running.withLock({ $0[name] }) else {
            let names = running.withLock { $0.keys.sorted() }
            throw NodeAgentError.notFound(
                "no CNF named \(name) runs on \(configuration.node)" + (names.isEmpty ? " (none does)" : "; it runs \(names.joined(separator: ", "))"))
        }
        var status = Edgetrail_V1_CNFStatus()
        status.pods = podStatus(cnf)
        status.cnf = summary(of: cnf, pods: status.pods)
        status.node = configuration.node
        status.datapathVersion = cnf.datapathVersion
        status.rules = cnf.spec.datapath.map(\.shorthand)
        return status
    }

    private func summary(of cnf: RunningCNF, pods: [Edgetrail_V1_Pod]) -> Edgetrail_V1_CNFSummary {
        var summary = Edgetrail_V1_CNFSummary()
        summary.name = cnf.spec.name
        summary.version = UInt32(cnf.version)
        summary.pods = UInt32(pods.count)
        summary.podsHealthy = UInt32(pods.filter { $0.state == .running }.count)
        summary.deployedAt = Int64(cnf.deployedAt.timeIntervalSince1970)
        summary.lastError = cnf.lastError
        return summary
    }

    private func podStatus(_ cnf: RunningCNF) -> [Edgetrail_V1_Pod] {
        cnf.plan.pods.compactMap { planned in
            guard let running = cnf.pods[planned.name] else { return nil }
            return describe(running, cnf: cnf.spec.name)
        }
    }

    private func describe(_ running: RunningPod, cnf: String) -> Edgetrail_V1_Pod {
        let pod = running.pod
        var message = Edgetrail_V1_Pod()
        message.name = pod.name
        message.kind = pod.kind.rawValue
        message.namespace = pod.namespace
        message.ip = pod.address
        message.labels = pod.microservice.labels
        message.handlers = pod.handlers.map { "\($0.event)=\($0.file)" }
        let microservice = running.microservice.current
        message.restarts = UInt32(microservice.restarts)
        message.pid = UInt32(max(0, microservice.pid))
        let sidecar = running.sidecar?.current
        message.sidecarRestarts = UInt32(sidecar?.restarts ?? 0)
        message.sidecarPid = UInt32(max(0, sidecar?.pid ?? 0))
        let health = health(of: running, cnf: cnf)
        message.handlersAttached = health.attached
        message.state = health.state
        message.message = health.reason
        return message
    }

    // MARK: Pods

    private func startPod(
        _ pod: PodPlan.Pod, plan: PodPlan, spec: CNFSpec, version: Int, mac: [UInt8]? = nil,
        progress: @escaping @Sendable (String) -> Void
    ) async throws -> RunningPod {
        let paths = configuration.paths(cnf: spec.name, version: version)
        let logs = configuration.logDirectory(spec.name)
        let node = configuration.node
        let commands = PodCommands(pod: pod, plan: plan, datapath: spec.datapath, paths: paths)
        let mac = try await Blocking.run { () throws -> [UInt8] in
            try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: paths.socketDirectory, withIntermediateDirectories: true)
            try Self.writeHandlers(pod, paths: paths)
            // A pod restarted in place keeps its namespace, and with it its address and MAC.
            if let mac { return mac }
            do {
                return try EdgeNodeNamespaces.addPod(pod.link, to: node)
            } catch {
                throw NodeAgentError.failed("pod \(pod.name): cannot make its namespace \(pod.namespace): \(error)")
            }
        }
        let microservice = Supervisor(
            name: pod.name, executable: commands.microservice[0], arguments: Array(commands.microservice.dropFirst()),
            logPath: "\(logs)/\(pod.name).log")
        microservice.start()
        progress("pod \(pod.name): \(pod.kind.rawValue) started in \(pod.namespace) (\(pod.address))")
        var sidecar: Supervisor?
        let sidecarLog = "\(logs)/\(pod.name).sidecar.log"
        if let command = commands.sidecar {
            // A fresh log per start: "attached" in it is this run's.
            try? FileManager.default.removeItem(atPath: sidecarLog)
            sidecar = Supervisor(
                name: "\(pod.name) sidecar", executable: command[0], arguments: Array(command.dropFirst()), logPath: sidecarLog)
            sidecar!.start()
            progress("pod \(pod.name): sidecar started for \(pod.handlers.map(\.event).joined(separator: ", "))")
        }
        return RunningPod(pod: pod, mac: mac, microservice: microservice, sidecar: sidecar, sidecarLog: sidecarLog, version: version)
    }

    private func stopPods(_ pods: [RunningPod], removeNamespaces: Bool, progress: @escaping @Sendable (String) -> Void) async {
        for pod in pods {
            _ = try? await Blocking.run {
                pod.sidecar?.stop()
                pod.microservice.stop()
                if removeNamespaces { EdgeNodeNamespaces.removePod(pod.pod.namespace) }
            }
            progress("pod \(pod.pod.name): stopped" + (removeNamespaces ? ", namespace \(pod.pod.namespace) removed" : ""))
        }
    }

    struct Health {
        var state: Edgetrail_V1_PodState
        var reason: String
        var attached: Bool
        /// Waiting longer will not make it healthy.
        var hopeless = false
    }

    /// Healthy: the μsrv runs and serves its API socket, and its sidecar (if it has handlers)
    /// runs and is attached to the μsrv's events.
    private func health(of running: RunningPod, cnf: String) -> Health {
        let microservice = running.microservice.current
        let report = running.sidecar == nil ? SidecarReport(attached: true) : Self.sidecarReport(log: running.sidecarLog, microservice: running.pod.name)
        let attached = report.attached
        switch microservice.phase {
        case .stopped: return Health(state: .stopped, reason: microservice.lastExit, attached: false)
        case .restarting: return Health(state: .restarting, reason: "μsrv \(microservice.lastExit); restarting", attached: false)
        case .starting: return Health(state: .starting, reason: "", attached: false)
        case .running: break
        }
        let socket = "\(configuration.socketDirectory(cnf))/\(running.pod.name).api.sock"
        guard SocketProbe.isListening(.unix(path: socket)) else {
            return Health(state: microservice.restarts == 0 ? .starting : .unhealthy, reason: "its API socket does not answer yet", attached: attached)
        }
        if let sidecar = running.sidecar?.current {
            if sidecar.phase == .restarting {
                return Health(state: .restarting, reason: "sidecar \(sidecar.lastExit); restarting", attached: false)
            }
            if let problem = report.problem {
                // It will not get better by waiting: the file must change.
                return Health(state: .unhealthy, reason: "its sidecar says: \(problem)", attached: attached, hopeless: true)
            }
            if !attached { return Health(state: .unhealthy, reason: "its sidecar is not attached", attached: false) }
        }
        let reason = microservice.restarts > 0 ? "last restart: μsrv \(microservice.lastExit)" : ""
        return Health(state: .running, reason: reason, attached: attached)
    }

    /// What a sidecar's log (this run's) says: whether its last word about its μsrv is that it
    /// attached, and a handler that cannot run (it did not load, and no later version did).
    struct SidecarReport: Equatable {
        var attached = false
        var problem: String?
    }

    static func sidecarReport(log: String, microservice: String) -> SidecarReport {
        guard let handle = FileHandle(forReadingAtPath: log) else { return SidecarReport() }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > 262_144 ? size - 262_144 : 0)
        return sidecarReport(text: String(decoding: handle.readDataToEndOfFile(), as: UTF8.self), microservice: microservice)
    }

    static func sidecarReport(text: String, microservice: String) -> SidecarReport {
        var report = SidecarReport()
        var problems: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("attached \(microservice) ") {
                report.attached = true
            } else if line.hasPrefix("detached \(microservice)") || line.hasPrefix("waiting for \(microservice)") {
                report.attached = false
            } else if line.hasPrefix("handler "), let handler = line.split(separator: " ").dropFirst().first {
                if line.contains(" cannot run: ") {
                    problems[String(handler)] = String(line)
                } else if line.contains(" reloaded: ") {
                    problems[String(handler)] = nil
                }
            }
        }
        report.problem = problems.keys.sorted().first.map { problems[$0]! }
        return report
    }

    private func waitHealthy(_ pods: [RunningPod], cnf: String, progress: @escaping @Sendable (String) -> Void) async throws {
        let deadline = ContinuousClock.now + configuration.healthTimeout
        var pending = pods
        while !pending.isEmpty {
            var still: [RunningPod] = []
            for pod in pending {
                let health = try await Blocking.run { self.health(of: pod, cnf: cnf) }
                if health.state == .running {
                    progress("pod \(pod.pod.name): healthy" + (pod.sidecar == nil ? "" : ", handlers attached"))
                } else if health.hopeless {
                    throw NodeAgentError.failed("pod \(pod.pod.name) is not healthy: \(health.reason)")
                } else {
                    still.append(pod)
                }
            }
            pending = still
            guard !pending.isEmpty else { break }
            if ContinuousClock.now > deadline {
                let pod = pending[0]
                let health = health(of: pod, cnf: cnf)
                let logs = configuration.logDirectory(cnf)
                let log = health.reason.contains("sidecar") ? pod.sidecarLog : "\(logs)/\(pod.pod.name).log"
                throw NodeAgentError.failed(
                    "pod \(pod.pod.name) was not healthy within \(configuration.healthTimeout) (\(health.reason.isEmpty ? "\(health.state)" : health.reason)); the end of \(log):\n\(ProcessControl.tail(log))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: Rules

    /// The node's rule set with `name`'s rules as in `cnf` and every other CNF's as they run.
    private func applyRules(replacing name: String, with cnf: RunningCNF, progress: @escaping @Sendable (String) -> Void) async throws -> UInt64 {
        let others = running.withLock { all in all.filter { $0.key != name }.map(\.value) }
        let version = try await applyRules(all: others + [cnf])
        progress("datapath: \(cnf.spec.datapath.count) rules applied (rule set version \(version))")
        return version
    }

    /// Applies every CNF's rules as one rule set. Labels are the CNF's own: each is qualified
    /// with the CNF's name so that two CNFs' `http-proxy` stay apart.
    private func applyRules(all cnfs: [RunningCNF]) async throws -> UInt64 {
        var request = Edgetrail_V1_ApplyRulesRequest()
        for cnf in cnfs.sorted(by: { $0.spec.name < $1.spec.name }) {
            let qualify = { (label: String) in "\(cnf.spec.name)/\(label)" }
            for rule in cnf.spec.datapath {
                var message = DatapathMessages.message(rule, id: UInt32(request.rules.count + 1))
                message.labels = rule.labels.map(qualify)
                request.rules.append(message)
            }
            for pod in cnf.pods.values.sorted(by: { $0.pod.index < $1.pod.index }) {
                var endpoint = Edgetrail_V1_PodEndpoint()
                endpoint.name = "\(cnf.spec.name)/\(pod.pod.name)"
                endpoint.labels = pod.pod.microservice.labels.map(qualify)
                endpoint.nodeInterface = pod.pod.nodeInterface
                endpoint.ip = Data([10, 250, UInt8(pod.pod.index), 2])
                endpoint.mac = Data(pod.mac)
                request.pods.append(endpoint)
            }
        }
        let socket = configuration.datapathSocket
        do {
            return try await DatapathManagerClient.with(socket: socket) { client in
                try await client.applyRules(request).version
            }
        } catch {
            throw NodeAgentError.failed("the Datapath Manager refused the rules: \(DatapathManagerClient.explain(error, socket: socket))")
        }
    }

    // MARK: Stopping

    /// Stops every pod and removes their namespaces and rules (the agent is stopping).
    public func shutdown() async {
        let all = running.withLock { current in
            defer { current.removeAll() }
            return Array(current.values)
        }
        guard !all.isEmpty else { return }
        _ = try? await applyRules(all: [])
        for cnf in all {
            await stopPods(Array(cnf.pods.values), removeNamespaces: true) { [logger] in logger.info("\($0)") }
        }
    }

    // MARK: Files

    static func writeVersion(folder: String, spec: String, files: [String: Data]) throws {
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(spec.utf8).write(to: URL(fileURLWithPath: "\(folder)/cnf.yaml"))
        for (path, contents) in files where !path.hasPrefix("/") && !path.split(separator: "/").contains("..") {
            let target = "\(folder)/\(path)"
            try FileManager.default.createDirectory(
                atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try contents.write(to: URL(fileURLWithPath: target))
        }
    }

    /// Writes a pod's handler files where its sidecar reads them; each replaced whole (a rename),
    /// so the sidecar never loads half a file.
    static func writeHandlers(_ pod: PodPlan.Pod, paths: PodCommands.Paths) throws {
        try FileManager.default.createDirectory(atPath: "\(paths.handlerDirectory)/\(pod.name)", withIntermediateDirectories: true)
        for handler in pod.handlers {
            let path = PodCommands.handlerPath(handler, of: pod, in: paths)
            if FileManager.default.contents(atPath: path) == handler.source { continue }
            try handler.source.write(to: URL(fileURLWithPath: path), options: .atomic)
        }
    }

    /// Loads each handler as the sidecar would (`python -m edgetrail.sidecar --check`).
    static func checkHandlers(python: String, folder: String, bindings: [(event: String, file: String)]) -> (Bool, String) {
        var arguments = ["-m", "edgetrail.sidecar", "--check"]
        for binding in bindings { arguments += ["--handler", "\(binding.event)=\(folder)/\(binding.file)"] }
        guard let result = try? ProcessControl.run(python, arguments) else {
            return (false, "could not run \(python) -m edgetrail.sidecar --check")
        }
        let lines = result.output.split(separator: "\n").filter { !$0.hasSuffix(": ok") && !$0.hasPrefix(" ") && !$0.hasPrefix("Traceback") }
        return (result.status == 0, lines.joined(separator: "\n"))
    }

    static func describe(_ change: UpdatePlan.Change) -> String {
        switch change {
        case .start: "new pod"
        case .stop: "removed"
        case .restart: "restart"
        case .swapHandlers: "new handler code"
        case .unchanged: "unchanged"
        }
    }
}

/// What the agent answers when a call cannot be done.
public enum NodeAgentError: Error, CustomStringConvertible, Sendable {
    case notFound(String)
    case failed(String)

    public var description: String {
        switch self {
        case .notFound(let message), .failed(let message): message
        }
    }
}

/// One operation at a time, in the order they came: a second deploy waits for the first.
final class OperationGate: Sendable {
    private let state = Mutex<(busy: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func run<T: Sendable, E: Error>(_ body: () async throws(E) -> T) async throws(E) -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.busy {
                    state.waiting.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if now { continuation.resume() }
        }
        defer {
            let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if state.waiting.isEmpty {
                    state.busy = false
                    return nil
                }
                return state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
