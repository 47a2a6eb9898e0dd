import EdgetrailCore

/// A CNF as the operator wrote it: μsrvs, the handlers bound to their events, datapath rules,
/// and the edge node to deploy to. Produced by `CNFSpecReader`, which has validated it.
public struct CNFSpec: Hashable, Sendable {
    public var name: String
    public var node: String
    public var microservices: [Microservice]
    public var handlers: [Handler]
    public var datapath: [DatapathRule]
    /// Values the CNF's handlers read as `ctx.settings` (text; numbers and booleans as written).
    public var settings: [String: String]

    public init(
        name: String, node: String, microservices: [Microservice], handlers: [Handler],
        datapath: [DatapathRule], settings: [String: String] = [:]
    ) {
        self.name = name
        self.node = node
        self.microservices = microservices
        self.handlers = handlers
        self.datapath = datapath
        self.settings = settings
    }

    public func microservice(named name: String) -> Microservice? {
        microservices.first { $0.name == name }
    }

    /// Every file the spec names (handlers, then μsrv settings files), once each, as written.
    public var files: [String] {
        var seen = Set<String>()
        return (handlers.map(\.file) + microservices.compactMap(\.config)).filter { seen.insert($0).inserted }
    }
}

/// The kinds of μsrv Edgetrail ships, and the events each publishes.
public enum MicroserviceKind: String, Sendable, CaseIterable, Hashable {
    case httpProxy = "http-proxy"
    case policyManager = "policy-mgr"
    case contentInspect = "content-inspect"
    case antiVirus = "anti-virus"

    /// Every event this kind announces.
    public var events: [String] {
        switch self {
        case .httpProxy: ["request_received", "response_received", "response_sent"]
        case .policyManager: ["policy_check"]
        case .contentInspect: ["inspect_done"]
        case .antiVirus: ["scan_done"]
        }
    }

    /// Events that wait for a handler's verdict before the μsrv proceeds.
    public var syncEvents: Set<String> {
        switch self {
        case .httpProxy: ["request_received", "response_received"]
        case .policyManager: ["policy_check"]
        case .contentInspect: ["inspect_done"]
        case .antiVirus: ["scan_done"]
        }
    }
}

/// One μsrv of a CNF; it runs in its own pod.
public struct Microservice: Hashable, Sendable {
    public var name: String
    public var kind: MicroserviceKind
    /// Labels datapath rules select the pod by; defaults to the μsrv's name.
    public var labels: [String]
    /// Events it publishes; defaults to every event of its kind.
    public var events: [String]
    /// Its settings file (`--config`), relative to the spec's folder, e.g. policy-mgr's rules.
    public var config: String?

    public init(name: String, kind: MicroserviceKind, labels: [String], events: [String]) {
        self.name = name
        self.kind = kind
        self.labels = labels
        self.events = events
    }
}

/// Operator code (a Python file) bound to one event of one μsrv.
public struct Handler: Hashable, Sendable {
    public var microservice: String
    public var event: String
    /// The path as written in the spec, relative to the spec's folder.
    public var file: String
    /// How long a sync event waits for the handler's verdict.
    public var timeoutMilliseconds: Int

    public init(microservice: String, event: String, file: String, timeoutMilliseconds: Int = 1000) {
        self.microservice = microservice
        self.event = event
        self.file = file
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}
