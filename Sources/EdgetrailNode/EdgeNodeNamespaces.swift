import EdgetrailNet
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An edge node made of network namespaces, as DESIGN.md lays it out: a node router, a client
/// (10.200.0.2), an origin server (10.201.0.2) and pods (10.250.N.2), each joined to the node by
/// a veth pair. A throwaway node (tests, benchmarks) carries a unique prefix; a named node (what
/// `edgetrail node up` builds) is the namespace `NAME` with `NAME-client` and `NAME-origin`
/// beside it. Either is removed by `tearDown`; a named one also by `remove(named:)`.
public final class EdgeNodeNamespaces {
    public let prefix: String
    public let node: String
    public var client: String { "\(prefix)-client" }
    public var server: String { "\(prefix)-origin" }
    /// The node's end of the client's veth: where the datapath attaches. (In the node's
    /// namespace; the veths are made in their namespaces, so two nodes may use the same names.)
    public var clientInterface: String { "\(interfacePrefix)c0" }
    private var interfacePrefix: String
    public private(set) var pods: [(name: String, namespace: String, nodeInterface: String, address: String)] = []
    private var background: [Process] = []

    /// A throwaway node with a unique prefix.
    public convenience init() throws {
        let prefix = "et" + String(UInt32.random(in: 0..<0xffffff), radix: 16)
        try self.init(prefix: prefix, node: "\(prefix)-node", interfacePrefix: "\(prefix)-")
    }

    /// The node `name` (e.g. `edge-1`); refuses a name a node already has.
    public convenience init(named name: String) throws {
        guard Self.isValidName(name) else {
            throw TopologyError(
                "'\(name)' is not a node name: use 1-20 lowercase letters, digits and '-', starting with a letter")
        }
        if Self.exists(named: name) {
            throw TopologyError("a node named \(name) is already up; 'edgetrail node down --name \(name)' removes it")
        }
        try self.init(prefix: name, node: name, interfacePrefix: "et")
    }

    private init(prefix: String, node: String, interfacePrefix: String) throws {
        self.prefix = prefix
        self.node = node
        self.interfacePrefix = interfacePrefix
        do {
            for namespace in [node, client, server] { try ip("netns", "add", namespace) }
            try sh(node, "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
            try sh(node, "ip link set lo up")
            try link(namespace: client, nodeEnd: "\(interfacePrefix)c0", podEnd: "\(interfacePrefix)c1", subnet: "10.200.0")
            try link(namespace: server, nodeEnd: "\(interfacePrefix)s0", podEnd: "\(interfacePrefix)s1", subnet: "10.201.0")
        } catch {
            tearDown()
            throw error
        }
    }

    /// Adds a pod whose veth delivers redirected traffic for any address to its own listeners
    /// (policy routing to a local route, for IP_TRANSPARENT sockets).
    @discardableResult
    public func addPod(_ name: String) throws -> (namespace: String, nodeInterface: String, podInterface: String, mac: [UInt8]) {
        let index = pods.count + 1
        let pod = PodLink(
            namespace: "\(prefix)-\(name)", index: index, nodeInterface: "\(interfacePrefix)p\(index)",
            podInterface: "\(interfacePrefix)q\(index)")
        let mac = try Self.addPod(pod, to: node)
        pods.append((name, pod.namespace, pod.nodeInterface, pod.address))
        return (pod.namespace, pod.nodeInterface, pod.podInterface, mac)
    }

    /// A pod's namespace and its link to the node, on the subnet `10.250.<index>.0/24`.
    public struct PodLink: Sendable, Equatable {
        public var namespace: String
        public var index: Int
        public var nodeInterface: String
        public var podInterface: String
        public var address: String { "10.250.\(index).2" }

        public init(namespace: String, index: Int, nodeInterface: String, podInterface: String) {
            self.namespace = namespace
            self.index = index
            self.nodeInterface = nodeInterface
            self.podInterface = podInterface
        }
    }

    /// Adds `pod` to the node whose namespace is `node` (from any process: what the node agent
    /// does for each μsrv); returns the MAC address of the pod's end. A pod that exists is
    /// refused and left alone; a failure after that removes the new pod again.
    @discardableResult
    public static func addPod(_ pod: PodLink, to node: String) throws -> [UInt8] {
        try run("/usr/sbin/ip", ["netns", "add", pod.namespace])
        do {
            try link(
                node: node, namespace: pod.namespace, nodeEnd: pod.nodeInterface, podEnd: pod.podInterface,
                subnet: "10.250.\(pod.index)")
            try shell(node, "sysctl -qw net.ipv4.conf.\(pod.nodeInterface).rp_filter=0")
            try shell(
                pod.namespace, "ip rule add iif \(pod.podInterface) lookup 100 && ip route add local 0.0.0.0/0 dev lo table 100")
            return try shell(pod.namespace, "cat /sys/class/net/\(pod.podInterface)/address")
                .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt8($0, radix: 16) }
        } catch {
            removePod(pod.namespace)
            throw error
        }
    }

    /// Deletes a pod's namespace (its veth goes with it); nothing there is not an error.
    public static func removePod(_ namespace: String) {
        _ = try? runStatus("/usr/sbin/ip", ["netns", "delete", namespace])
    }

    private func link(namespace: String, nodeEnd: String, podEnd: String, subnet: String) throws {
        try Self.link(node: node, namespace: namespace, nodeEnd: nodeEnd, podEnd: podEnd, subnet: subnet)
    }

    private static func link(node: String, namespace: String, nodeEnd: String, podEnd: String, subnet: String) throws {
        try run("/usr/sbin/ip", ["link", "add", nodeEnd, "netns", node, "type", "veth", "peer", "name", podEnd, "netns", namespace])
        try shell(node, "ip addr add \(subnet).1/24 dev \(nodeEnd) && ip link set \(nodeEnd) up")
        try shell(
            namespace,
            "ip link set lo up && ip addr add \(subnet).2/24 dev \(podEnd) && ip link set \(podEnd) up && ip route add default via \(subnet).1")
    }

    /// Runs a long-lived command inside `namespace` until `tearDown`.
    public func start(_ namespace: String, _ command: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, "sh", "-c", "exec " + command]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        background.append(process)
    }

    /// Runs `command` with sh inside `namespace`; returns its output, throws on failure.
    @discardableResult
    public func sh(_ namespace: String, _ command: String) throws -> String {
        try Self.shell(namespace, command)
    }

    @discardableResult
    static func shell(_ namespace: String, _ command: String) throws -> String {
        try run("/usr/sbin/ip", ["netns", "exec", namespace, "sh", "-c", command])
    }

    /// Like `sh`, but hands back the exit status instead of throwing.
    public func attempt(_ namespace: String, _ command: String) -> (status: Int32, output: String) {
        (try? runStatus("/usr/sbin/ip", ["netns", "exec", namespace, "sh", "-c", command])) ?? (-1, "")
    }

    @discardableResult
    private func ip(_ arguments: String...) throws -> String {
        try run("/usr/sbin/ip", arguments)
    }

    private func run(_ executable: String, _ arguments: [String]) throws -> String {
        try Self.run(executable, arguments)
    }

    @discardableResult
    private static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let (status, output) = try runStatus(executable, arguments)
        guard status == 0 else {
            throw TopologyError("\(executable) \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
        return output
    }

    private func runStatus(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        try Self.runStatus(executable, arguments)
    }

    private static func runStatus(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Runs `body` with this thread inside the node's network namespace (interface names and
    /// the netlink calls that attach programs resolve there), then returns to where it was.
    public func inNode<T>(_ body: () throws -> T) throws -> T {
        try NetworkNamespace.run(named: node, body)
    }

    /// Stops what was started and deletes every namespace (and with them their veths).
    public func tearDown() {
        for process in background where process.isRunning {
            // SIGKILL: a child may have inherited a blocked SIGTERM from the test runner.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        background = []
        for namespace in [node, client, server] + pods.map(\.namespace) {
            _ = try? runStatus("/usr/sbin/ip", ["netns", "delete", namespace])
        }
    }

    /// Namespaces of this node that still exist.
    public func leftovers() -> [String] { Self.namespaces(of: prefix, node: node) }

    /// Whether the node `name` is (at least partly) up.
    public static func exists(named name: String) -> Bool { !namespaces(of: name, node: name).isEmpty }

    /// Deletes every namespace of the node `name` (the node, its client, origin and pods; their
    /// veths go with them); returns the ones it deleted. Nothing there is not an error.
    @discardableResult
    public static func remove(named name: String) -> [String] {
        let found = namespaces(of: name, node: name)
        for namespace in found { _ = try? runStatus("/usr/sbin/ip", ["netns", "delete", namespace]) }
        return found
    }

    static func isValidName(_ name: String) -> Bool {
        (1...20).contains(name.count) && name.first!.isLowercase && name.first!.isASCII
            && name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
    }

    /// The node's namespaces: the node, and those named `PREFIX-…` — but not another node's
    /// whose name merely starts the same (`edge-1-b` and its own namespaces, next to `edge-1`).
    private static func namespaces(of prefix: String, node: String) -> [String] {
        let listed = (try? runStatus("/usr/sbin/ip", ["netns", "list"]))?.1 ?? ""
        let all = listed.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }
        let present = Set(all)
        let others = all.filter { $0 != node && $0.hasPrefix(prefix + "-") && present.contains($0 + "-client") }
        return all.filter { name in
            (name == node || name.hasPrefix(prefix + "-"))
                && !others.contains { name == $0 || name.hasPrefix($0 + "-") }
        }
    }
}

public struct TopologyError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
