import EdgetrailCNF
import EdgetrailCore
import EdgetrailDatapath
import EdgetrailDatapathAPI
import EdgetrailDatapathManager
import EdgetrailNet
import EdgetrailNode
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Logging
import ServiceLifecycle

/// The demo's edge node when it can be real (as root): network namespaces for the node, a client,
/// the origin and a pod per μsrv the CNF's datapath rules steer to, the Datapath Manager with the
/// real eBPF programs attached, and the CNF's rules applied through its gRPC API. The client's
/// request then really is redirected into the proxy pod, and its flow events come from the
/// kernel. (Used from one task at a time: built, served, torn down in order.)
struct DemoEdgeNode: @unchecked Sendable {
    let topology: EdgeNodeNamespaces
    let server: DatapathManagerServer
    let group: ServiceGroup
    let socket: String
    private let responders: [NamespaceHTTPResponder]

    /// Why the demo cannot run a real edge node here, or `nil` when it can.
    static func unavailable() -> String? {
        if getuid() != 0 { return "network namespaces and eBPF need root" }
        let object = BPFDatapath.defaultObjectPath()
        if !FileManager.default.fileExists(atPath: object) { return "\(object) is missing (make build)" }
        return nil
    }

    /// Builds the node, loads and attaches the datapath; the caller runs `group` and applies.
    static func start(cnf: CNFSpec, work: String, logger: Logger) throws -> DemoEdgeNode {
        let topology = try EdgeNodeNamespaces()
        var responders: [NamespaceHTTPResponder] = []
        do {
            responders.append(
                try NamespaceHTTPResponder(namespace: topology.server, body: "hello from the origin\n", transparent: false))
            let steered = Set(cnf.datapath.filter { $0.action == .redirect || $0.action == .copy }.flatMap(\.labels))
            for microservice in cnf.microservices where !steered.isDisjoint(with: microservice.labels) {
                let pod = try topology.addPod(microservice.name)
                // The pod answers after about as long as the session's spans say its work took.
                responders.append(
                    try NamespaceHTTPResponder(
                        namespace: pod.namespace, body: "answered by the \(microservice.name) pod\n", transparent: true,
                        delayMilliseconds: 14))
            }
            let socket = work + "/datapath.sock"
            let server = try DatapathManagerServer(
                configuration: DatapathManagerConfiguration(
                    interface: topology.clientInterface, networkNamespace: topology.node, socketPath: socket,
                    node: cnf.node, idleTimeoutNanoseconds: 5_000_000_000),
                logger: logger)
            return DemoEdgeNode(
                topology: topology, server: server, group: try server.makeServiceGroup(signals: []), socket: socket,
                responders: responders)
        } catch {
            for responder in responders { responder.stop() }
            topology.tearDown()
            throw error
        }
    }

    /// The CNF's datapath rules with the pods their labels name, as `edgetrail datapath apply`
    /// would send them.
    func rules(of cnf: CNFSpec) -> Edgetrail_V1_ApplyRulesRequest {
        var request = Edgetrail_V1_ApplyRulesRequest()
        request.rules = cnf.datapath.enumerated().map { DatapathMessages.message($1, id: UInt32($0 + 1)) }
        for pod in topology.pods {
            var endpoint = Edgetrail_V1_PodEndpoint()
            endpoint.name = pod.name
            endpoint.labels = cnf.microservices.first { $0.name == pod.name }?.labels ?? []
            endpoint.nodeInterface = pod.nodeInterface
            endpoint.ip = Data(IPPrefix.parseAddress(pod.address) ?? [])
            request.pods.append(endpoint)
        }
        return request
    }

    /// One request from the client namespace to the origin's address, from a fixed port (on
    /// NIO's thread pool: entering a namespace and the request both block).
    func clientRequest(localPort: UInt16) async throws -> String? {
        let client = topology.client
        return try await Blocking.run {
            try NetworkNamespace.run(named: client) { NamespaceHTTPClient.get([10, 201, 0, 2], localPort: localPort) }
        }
    }

    /// Stops the responders and removes every namespace (the manager has stopped by then).
    func tearDown() {
        for responder in responders { responder.stop() }
        topology.tearDown()
    }
}
