import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailNodeAgentAPI
import EdgetrailProto
import Foundation

#if canImport(Glibc)
import Glibc
#endif
import GRPCCore

/// Where the portal listens, keeps its file, and finds what it shows.
public struct PortalConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Holds `portal.sqlite` (users, API tokens).
    public var dataDirectory: String
    /// The edge nodes shown; each one's agent is `RUN/nodes/NODE/agent.sock`, its Datapath
    /// Manager `RUN/nodes/NODE/datapath.sock`.
    public var nodes: [String] = ["edge-1"]
    public var runDirectory: String
    /// Central's base address.
    public var central = "http://127.0.0.1:7070"
    /// The node collector's metrics (`node up` serves them here).
    public var collectorMetrics = "http://127.0.0.1:9464/metrics"
    /// The first `admin`'s password; random (and printed once) when not given.
    public var adminPassword: String?
    public var passwordRounds = PasswordHasher.defaultRounds
    /// How long a browser session lasts without use.
    public var sessionLifetime: Duration = .seconds(12 * 60 * 60)
    public var loginLimits = LoginThrottle.Limits()
    /// Folders of example CNFs (each with a cnf.yaml) that Add CNF offers.
    public var examplesDirectory: String?
    /// Grafana dashboard files (`*.json`) the Dashboards page draws.
    public var dashboardsDirectory: String?
    /// How often the portal scrapes the collector's metrics for the Dashboards page.
    public var scrapeInterval: Duration = .seconds(5)
    /// Rule files the Filters page offers to start from (`*.rules`).
    public var filtersDirectory: String?
    /// Capture files (`*.capture`) the Filters page's dry run offers besides central's recent sessions.
    public var captureDirectories: [String] = []

    public init(dataDirectory: String, runDirectory: String) {
        self.dataDirectory = dataDirectory
        self.runDirectory = runDirectory
    }

    func agentSocket(node: String) -> String { NodeAgentClient.socket(node: node, runDirectory: runDirectory) }
    func datapathSocket(node: String) -> String { "\(runDirectory)/nodes/\(node)/datapath.sock" }
    /// The node collector's rule file (`node up` writes it; the collector follows its edits).
    func filterFile(node: String) -> String { "\(runDirectory)/nodes/\(node)/filters/active.rules" }
}

// MARK: What the pages and the API show (the API's JSON is these, encoded)

public struct NodeView: Codable, Sendable {
    public var name: String
    /// "up" when its agent answered, "down" otherwise.
    public var agent: String
    /// Why the agent could not be asked.
    public var error: String?
    public var cnfs: [CNFView]
    public var datapath: DatapathFigures?
}

public struct DatapathFigures: Codable, Sendable {
    public var openFlows: UInt64
    public var flowTableSize: UInt64
    public var flowsUntracked: UInt64
    public var ringBufferLost: UInt64
    public var rules: Int
    public var packets: UInt64
    public var drops: UInt64
}

public struct CNFView: Codable, Sendable {
    public var name: String
    public var node: String
    public var version: UInt32
    public var pods: UInt32
    public var podsHealthy: UInt32
    /// Unix seconds.
    public var deployedAt: Int64
    public var lastError: String?
    public var health: String {
        pods > 0 && podsHealthy == pods ? "healthy" : (podsHealthy == 0 ? "down" : "degraded")
    }

    enum CodingKeys: String, CodingKey {
        case name, node, version, pods, podsHealthy, deployedAt, lastError, health
    }

    init(_ summary: Edgetrail_V1_CNFSummary, node: String) {
        name = summary.name
        self.node = node
        version = summary.version
        pods = summary.pods
        podsHealthy = summary.podsHealthy
        deployedAt = summary.deployedAt
        lastError = summary.lastError.isEmpty ? nil : summary.lastError
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        node = try container.decode(String.self, forKey: .node)
        version = try container.decode(UInt32.self, forKey: .version)
        pods = try container.decode(UInt32.self, forKey: .pods)
        podsHealthy = try container.decode(UInt32.self, forKey: .podsHealthy)
        deployedAt = try container.decode(Int64.self, forKey: .deployedAt)
        lastError = try container.decodeIfPresent(String.self, forKey: .lastError)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(node, forKey: .node)
        try container.encode(version, forKey: .version)
        try container.encode(pods, forKey: .pods)
        try container.encode(podsHealthy, forKey: .podsHealthy)
        try container.encode(deployedAt, forKey: .deployedAt)
        try container.encodeIfPresent(lastError, forKey: .lastError)
        try container.encode(health, forKey: .health)
    }
}

public struct CNFDetail: Codable, Sendable {
    public var cnf: CNFView
    public var microservices: [PodView]
    public var rules: [String]
    public var datapathVersion: UInt64
}

public struct PodView: Codable, Sendable {
    public var name: String
    public var kind: String
    /// The pod's interface in its namespace.
    public var interfaces: [String]
    public var ip: String
    public var state: String
    public var message: String?
    public var restarts: UInt32
    public var sidecarRestarts: UInt32
    public var handlers: [String]
    public var handlersAttached: Bool

    init(_ pod: Edgetrail_V1_Pod) {
        name = pod.name
        kind = pod.kind
        interfaces = pod.namespace.isEmpty ? [] : ["eth0 (\(pod.namespace))"]
        ip = pod.ip
        state = PodView.state(pod.state)
        message = pod.message.isEmpty ? nil : pod.message
        restarts = pod.restarts
        sidecarRestarts = pod.sidecarRestarts
        handlers = pod.handlers
        handlersAttached = pod.handlersAttached
    }

    static func state(_ state: Edgetrail_V1_PodState) -> String {
        switch state {
        case .starting: "starting"
        case .running: "running"
        case .restarting: "restarting"
        case .unhealthy: "unhealthy"
        case .stopped: "stopped"
        default: "unknown"
        }
    }
}

public struct CollectorFigures: Codable, Sendable {
    /// Where the figures were read, or why they could not be.
    public var source: String
    public var reachable: Bool
    public var recordsIn: Double = 0
    public var recordsShipped: Double = 0
    public var recordsDropped: Double = 0
    public var spoolBytes: Double = 0
}

/// A failure the person who asked can act on; `status` is the HTTP status the API answers with.
public struct PortalFailure: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var description: String
    public init(status: Int, _ description: String) {
        self.status = status
        self.description = description
    }
}

/// Reads and changes what the portal shows, through the parts' API targets only: the node
/// agents and Datapath Managers over their Unix sockets, central and the collector over HTTP.
/// The pages and `/api/v1` both go through here.
public struct PortalBackend: Sendable {
    public let configuration: PortalConfiguration
    public let central: CentralClient

    public init(configuration: PortalConfiguration) {
        self.configuration = configuration
        self.central = CentralClient(base: configuration.central)
    }

    func checkNode(_ node: String) throws(PortalFailure) {
        guard configuration.nodes.contains(node) else {
            throw PortalFailure(
                status: 404, "the portal shows no node named '\(node)' (it shows: \(configuration.nodes.joined(separator: ", ")))")
        }
    }

    func agent<T: Sendable>(_ node: String, _ body: (NodeAgentClient.Client) async throws -> T) async throws(PortalFailure) -> T {
        try checkNode(node)
        let socket = configuration.agentSocket(node: node)
        guard FileManager.default.fileExists(atPath: socket) else {
            throw PortalFailure(status: 503, "the node \(node) has no agent at \(socket); is the node up? (sudo edgetrail node up --name \(node))")
        }
        // The agent runs as root; its socket is for root (and whoever root lets in).
        guard access(socket, W_OK) == 0 else {
            throw PortalFailure(
                status: 503,
                "the portal (user id \(getuid())) may not use the agent's socket \(socket); run the portal as the same user as the node (root)")
        }
        do {
            return try await NodeAgentClient.with(socket: socket, body)
        } catch let error as RPCError where error.code == .notFound {
            throw PortalFailure(status: 404, error.message)
        } catch {
            throw PortalFailure(status: 503, NodeAgentClient.explain(error, socket: socket, node: node))
        }
    }

    public func nodes() async -> [NodeView] {
        var views: [NodeView] = []
        for node in configuration.nodes {
            var view = NodeView(name: node, agent: "down", cnfs: [])
            do {
                let list = try await agent(node) { try await $0.list(Edgetrail_V1_ListRequest()) }
                view.agent = "up"
                view.cnfs = list.cnfs.map { CNFView($0, node: node) }.sorted { $0.name < $1.name }
            } catch {
                view.error = error.description
            }
            view.datapath = await datapath(node)
            views.append(view)
        }
        return views
    }

    func datapath(_ node: String) async -> DatapathFigures? {
        let socket = configuration.datapathSocket(node: node)
        guard FileManager.default.fileExists(atPath: socket) else { return nil }
        guard let stats = try? await DatapathManagerClient.with(socket: socket, { try await $0.stats(Edgetrail_V1_StatsRequest()) })
        else { return nil }
        return DatapathFigures(
            openFlows: stats.openFlows, flowTableSize: stats.flowTableSize, flowsUntracked: stats.flowsUntracked,
            ringBufferLost: stats.ringBufferLost, rules: stats.rules.count,
            packets: stats.rules.reduce(0) { $0 + $1.packets }, drops: stats.rules.reduce(0) { $0 + $1.drops })
    }

    public func cnf(node: String, name: String) async throws(PortalFailure) -> CNFDetail {
        let status = try await agent(node) { client in
            var request = Edgetrail_V1_StatusRequest()
            request.cnf = name
            return try await client.status(request)
        }
        return CNFDetail(
            cnf: CNFView(status.cnf, node: node), microservices: status.pods.map(PodView.init), rules: status.rules,
            datapathVersion: status.datapathVersion)
    }

    /// Removes a CNF from its node; returns what was removed, a line each.
    public func deleteCNF(node: String, name: String) async throws(PortalFailure) -> [String] {
        try await agent(node) { client in
            var request = Edgetrail_V1_DeleteRequest()
            request.cnf = name
            return try await client.delete(request).removed
        }
    }

    /// The samples a /metrics address serves, or nil when it does not answer 200.
    public static func scrape(_ address: String) async -> [MetricSample]? {
        guard let answer = try? await HTTPGet.fetch(address, timeout: .seconds(10)), answer.status == 200 else { return nil }
        return PrometheusText.parse(String(decoding: answer.body, as: UTF8.self))
    }

    public func collector() async -> CollectorFigures {
        let address = configuration.collectorMetrics
        guard let samples = await Self.scrape(address) else {
            return CollectorFigures(source: "cannot read \(address); is the node's collector running?", reachable: false)
        }
        var figures = CollectorFigures(source: address, reachable: true)
        figures.recordsIn = samples.sum("edgetrail_collector_records_in_total")
        figures.recordsShipped = samples.sum("edgetrail_collector_records_out_total")
        figures.recordsDropped = samples.sum("edgetrail_collector_records_dropped_total")
        figures.spoolBytes = samples.sum("edgetrail_collector_spool_bytes")
        return figures
    }

    /// Whether central answers, and if not, why.
    public func centralHealth() async -> String? {
        guard URL(string: configuration.central + "/healthz")?.host != nil else { return "'\(configuration.central)' is not a URL" }
        do {
            let status = try await HTTPGet.fetch(configuration.central + "/healthz", timeout: .seconds(10)).status
            return status == 200 ? nil : "central at \(configuration.central) answered HTTP \(status)"
        } catch {
            return "cannot reach central at \(configuration.central): \(error)"
        }
    }

    public func sessions(_ query: CookieQuery) async throws(PortalFailure) -> [CookieSummary] {
        do {
            return try await central.cookies(query)
        } catch {
            throw Self.failure(error)
        }
    }

    public func timeline(_ cookie: Cookie) async throws(PortalFailure) -> CookieTimeline {
        do {
            return try await central.timeline(cookie).timeline
        } catch {
            throw Self.failure(error)
        }
    }

    static func failure(_ error: CentralClientError) -> PortalFailure {
        switch error.reason {
        case .answered(let status) where status < 500: PortalFailure(status: status, error.message)
        default: PortalFailure(status: 502, error.message)
        }
    }
}
