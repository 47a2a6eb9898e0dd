import EdgetrailCore
import Foundation

/// A local service `edgetrail services` manages.
public enum InfraKind: String, CaseIterable, Sendable, Hashable {
    case redis
    case broker
    case clamd
    case postgres

    /// The services `infra up` starts unless told otherwise.
    public static let defaults: [InfraKind] = [.redis, .broker, .clamd]
}

/// A service could not be started, stopped or found; the message says what to do.
public struct InfraError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where the local infrastructure lives and listens. Defaults follow DESIGN.md's "Default addresses";
/// `fromEnvironment` applies `EDGETRAIL_*` overrides.
public struct InfraConfiguration: Sendable, Hashable {
    /// Holds pid files, logs, sockets, configs and data (`.run` by default).
    public var runDirectory: String
    /// Holds `bin/tansu` (from `make setup`); also searched on PATH.
    public var depsDirectory: String?
    public var host: String = "127.0.0.1"
    public var redisPort: Int = 16379
    public var brokerPort: Int = 19092
    public var postgresPort: Int = 15432
    /// Seconds a service may take to accept connections before `up` gives up on it.
    public var startTimeoutSeconds: Double = 60

    public init(runDirectory: String, depsDirectory: String? = nil) {
        self.runDirectory = runDirectory
        self.depsDirectory = depsDirectory
    }

    /// The configuration with overrides from `EDGETRAIL_RUN_DIR`, `EDGETRAIL_DEPS`,
    /// `EDGETRAIL_REDIS_PORT`, `EDGETRAIL_BROKER_PORT`, `EDGETRAIL_POSTGRES_PORT`.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath
    ) -> InfraConfiguration {
        let runDirectory = environment["EDGETRAIL_RUN_DIR"] ?? currentDirectory + "/.run"
        var configuration = InfraConfiguration(
            runDirectory: runDirectory,
            depsDirectory: environment["EDGETRAIL_DEPS"] ?? findDepsDirectory(from: currentDirectory))
        if let port = environment["EDGETRAIL_REDIS_PORT"].flatMap(Int.init) { configuration.redisPort = port }
        if let port = environment["EDGETRAIL_BROKER_PORT"].flatMap(Int.init) { configuration.brokerPort = port }
        if let port = environment["EDGETRAIL_POSTGRES_PORT"].flatMap(Int.init) { configuration.postgresPort = port }
        return configuration
    }

    /// The nearest `.deps` folder at or above `directory` (the checkout's, after `make setup`).
    public static func findDepsDirectory(from directory: String) -> String? {
        var current = URL(fileURLWithPath: directory).standardizedFileURL
        while true {
            let candidate = current.appendingPathComponent(".deps").path
            if FileManager.default.fileExists(atPath: candidate + "/bin/tansu") { return candidate }
            let parent = current.deletingLastPathComponent()
            if parent.path == current.path { return nil }
            current = parent
        }
    }

    // MARK: Derived locations

    public var brokers: String { "\(host):\(brokerPort)" }
    public var clamdSocket: String { runDirectory + "/clamd.sock" }
    /// Redis listens here too: a Unix socket crosses network namespaces, so μsrvs in their pods
    /// reach the node's Redis through it.
    public var redisSocket: String { runDirectory + "/redis.sock" }
    /// PostgreSQL's Unix socket folder.
    public var postgresSocketDirectory: String { runDirectory + "/postgres-socket" }
    /// A libpq URL for the `edgetrail` database (created on first start).
    public var postgresURL: String { "postgres://postgres@\(host):\(postgresPort)/edgetrail" }

    public func endpoint(of kind: InfraKind) -> Endpoint {
        switch kind {
        case .redis: .tcp(host: host, port: redisPort)
        case .broker: .tcp(host: host, port: brokerPort)
        case .clamd: .unix(path: clamdSocket)
        case .postgres: .tcp(host: host, port: postgresPort)
        }
    }

    func pidFile(_ kind: InfraKind) -> String { runDirectory + "/\(kind.rawValue).pid" }
    func logFile(_ kind: InfraKind) -> String { runDirectory + "/logs/\(kind.rawValue).log" }
}
