import EdgetrailCNF
import EdgetrailCore
import EdgetrailNode
import Foundation

/// Where each μsrv of a CNF runs on a node, and what runs in its pod: a network namespace joined
/// to the node by a veth pair on its own /24 (`10.250.<index>.0/24`, the pod at `.2`), the μsrv,
/// and — when the CNF binds handlers to its events — its handler sidecar. Pure: made from the spec
/// (and the handler files' contents) and the plan in force, so that a pod keeps its index, and
/// thereby its address and interfaces, across updates.
public struct PodPlan: Sendable, Equatable {
    public struct Pod: Sendable, Equatable {
        public var microservice: Microservice
        /// 1 ... 250: the pod's subnet.
        public var index: Int
        /// The network namespace: `<node>-<cnf>-<μsrv>`.
        public var namespace: String
        /// The handlers bound to its events, with their files' contents.
        public var handlers: [BoundHandler]
        /// Its settings file's contents, when the spec gives it one.
        public var configSource: Data?

        public var address: String { link.address }
        public var gateway: String { "10.250.\(index).1" }
        /// The veth's node end (in the node's namespace) and pod end; at most 15 bytes each.
        public var nodeInterface: String { "etp\(index)" }
        public var podInterface: String { "etq\(index)" }
        /// What `EdgeNodeNamespaces.addPod` makes for it.
        public var link: EdgeNodeNamespaces.PodLink {
            EdgeNodeNamespaces.PodLink(namespace: namespace, index: index, nodeInterface: nodeInterface, podInterface: podInterface)
        }
        public var name: String { microservice.name }
        public var kind: MicroserviceKind { microservice.kind }
    }

    /// A handler as deployed: where the spec names its file, and what the file says.
    public struct BoundHandler: Sendable, Equatable {
        public var event: String
        public var file: String
        public var timeoutMilliseconds: Int
        public var source: Data

        public init(event: String, file: String, timeoutMilliseconds: Int, source: Data) {
            self.event = event
            self.file = file
            self.timeoutMilliseconds = timeoutMilliseconds
            self.source = source
        }

        /// The file's name inside the pod's handler folder (the spec's folders flattened).
        public var podFileName: String { "\(event).py" }
    }

    public static let maximumPods = 250

    public var cnf: String
    public var node: String
    public var pods: [Pod]
    public var settings: [String: String]

    public func pod(named name: String) -> Pod? { pods.first { $0.name == name } }

    /// The plan for `spec`. `sources` has each handler file's contents by the path the spec
    /// names it with; `current` is the plan in force (its pods keep their indexes); `taken` are
    /// indexes other CNFs on the node use.
    public static func make(
        _ spec: CNFSpec, sources: [String: Data], current: PodPlan? = nil, taken: Set<Int> = []
    ) throws(PlanError) -> PodPlan {
        let missing = spec.files.filter { sources[$0] == nil }
        guard missing.isEmpty else {
            throw PlanError("the deployment lacks the file\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", "))")
        }
        var used = taken
        var kept: [String: Int] = [:]
        for pod in current?.pods ?? [] where spec.microservice(named: pod.name) != nil {
            kept[pod.name] = pod.index
            used.insert(pod.index)
        }
        var pods: [Pod] = []
        for microservice in spec.microservices {
            let index: Int
            if let existing = kept[microservice.name] {
                index = existing
            } else {
                guard let free = (1...maximumPods).first(where: { !used.contains($0) }) else {
                    throw PlanError("the node has no room for another pod (at most \(maximumPods))")
                }
                index = free
                used.insert(free)
            }
            let handlers = spec.handlers.filter { $0.microservice == microservice.name }.map {
                BoundHandler(event: $0.event, file: $0.file, timeoutMilliseconds: $0.timeoutMilliseconds, source: sources[$0.file]!)
            }
            pods.append(
                Pod(
                    microservice: microservice, index: index, namespace: "\(spec.node)-\(spec.name)-\(microservice.name)",
                    handlers: handlers, configSource: microservice.config.flatMap { sources[$0] }))
        }
        return PodPlan(cnf: spec.name, node: spec.node, pods: pods, settings: spec.settings)
    }

    /// The CNF's μsrvs as the SDK's `--peer NAME=KIND` flags.
    public var peers: [String] { pods.map { "\($0.name)=\($0.kind.rawValue)" } }
}

/// A CNF that cannot be planned onto the node; the message says why.
public struct PlanError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What an update does to the pods in force, pod by pod: the least that makes the new version
/// run. A pod whose μsrv is unchanged but whose handlers' code changed keeps its μsrv running and
/// gets the new files (its sidecar loads them between events); one whose handlers were bound or
/// unbound, or whose timeouts or settings file changed, restarts its μsrv and sidecar.
public struct UpdatePlan: Sendable, Equatable {
    public enum Change: Sendable, Equatable {
        /// A μsrv the running version lacks.
        case start
        /// A μsrv the new version lacks.
        case stop
        /// Its kind, labels, events or handler bindings changed.
        case restart
        /// Only its handlers' code changed: new files, the μsrv keeps running.
        case swapHandlers
        case unchanged
    }

    public var changes: [(pod: String, change: Change)]
    /// Whether the datapath rules (or the pods they resolve to) differ.
    public var rulesChanged: Bool

    public static func == (lhs: UpdatePlan, rhs: UpdatePlan) -> Bool {
        lhs.rulesChanged == rhs.rulesChanged && lhs.changes.elementsEqual(rhs.changes) { $0.pod == $1.pod && $0.change == $1.change }
    }

    public func change(of pod: String) -> Change? { changes.first { $0.pod == pod }?.change }

    /// Only handler code changed anywhere: no μsrv restarts, no rule changes.
    public var swapsHandlersOnly: Bool {
        !rulesChanged && changes.allSatisfy { $0.change == .swapHandlers || $0.change == .unchanged }
            && changes.contains { $0.change == .swapHandlers }
    }

    public init(from old: PodPlan, to new: PodPlan, oldRules: [DatapathRule], newRules: [DatapathRule]) {
        var changes: [(pod: String, change: Change)] = []
        for pod in new.pods {
            guard let before = old.pod(named: pod.name) else {
                changes.append((pod.name, .start))
                continue
            }
            let bindings = { (pod: PodPlan.Pod) in pod.handlers.map { "\($0.event)=\($0.timeoutMilliseconds)" } }
            if before.microservice != pod.microservice || bindings(before) != bindings(pod) || old.settings != new.settings
                || before.configSource != pod.configSource
            {
                changes.append((pod.name, .restart))
            } else if before.handlers.map(\.source) != pod.handlers.map(\.source) {
                changes.append((pod.name, .swapHandlers))
            } else {
                changes.append((pod.name, .unchanged))
            }
        }
        for pod in old.pods where new.pod(named: pod.name) == nil { changes.append((pod.name, .stop)) }
        self.changes = changes
        rulesChanged =
            oldRules != newRules
            || Set(old.pods.map { "\($0.name)@\($0.index):\($0.microservice.labels)" })
                != Set(new.pods.map { "\($0.name)@\($0.index):\($0.microservice.labels)" })
    }
}
