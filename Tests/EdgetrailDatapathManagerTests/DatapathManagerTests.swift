import EdgetrailCore
import EdgetrailDatapath
@testable import EdgetrailDatapathManager
import EdgetrailDatapathAPI
import EdgetrailNode
import EdgetrailProto
import EdgetrailTesting
import Foundation
import GRPCCore
import Logging
import ServiceLifecycle
import Synchronization
import Testing

// The Datapath Manager as its clients see it: the real programs attached in a throwaway edge
// node (network namespaces), served over gRPC on a Unix socket (root is required).

/// origin answers "origin"; transparent answers "proxied" (an IP_TRANSPARENT listener).
private let serverScript = """
    import socket, sys
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mode == "transparent":
        s.setsockopt(socket.SOL_IP, 19, 1)
    s.bind((host, port)); s.listen(64)
    while True:
        c, peer = s.accept()
        c.recv(65536)
        body = mode + "\\n"
        c.sendall(("HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body)).encode())
        c.close()
    """

private func manager(
    _ topology: EdgeNodeNamespaces, socket: String, subscriberBuffer: Int = 65_536, idleSeconds: UInt64 = 30,
    flowTableSize: Int? = nil
) throws -> DatapathManagerServer {
    var logger = Logger(label: "test.datapath-manager")
    logger.logLevel = .warning
    let configuration = DatapathManagerConfiguration(
        interface: topology.clientInterface, networkNamespace: topology.node, socketPath: socket,
        objectPath: try TestInfra.datapathObject(), node: "edge-test", idleTimeoutNanoseconds: idleSeconds * 1_000_000_000,
        subscriberBuffer: subscriberBuffer, flowTableSize: flowTableSize)
    return try DatapathManagerServer(configuration: configuration, logger: logger)
}

/// Runs a manager for `body`, then shuts it down the way a signal would and waits for it.
private func withManager(
    idleSeconds: UInt64 = 30, flowTableSize: Int? = nil,
    _ body: (EdgeNodeNamespaces, String, String, DatapathManager) async throws -> Void,
    afterStop: (EdgeNodeNamespaces, String) throws -> Void = { _, _ in }
) async throws {
    let topology = try EdgeNodeNamespaces()
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(topology.prefix).path
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer {
        topology.tearDown()
        try? FileManager.default.removeItem(atPath: scratch)
    }
    try serverScript.write(toFile: scratch + "/server.py", atomically: true, encoding: .utf8)
    try topology.start(topology.server, "python3 \(scratch)/server.py origin 10.201.0.2 80")
    let socket = scratch + "/datapath.sock"
    let server = try manager(topology, socket: socket, idleSeconds: idleSeconds, flowTableSize: flowTableSize)
    let group = try server.makeServiceGroup(signals: [])
    let running = Task { try await server.run(group: group) }
    for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { try await Task.sleep(for: .milliseconds(50)) }
    do {
        try await body(topology, scratch, socket, server.manager)
    } catch {
        await group.triggerGracefulShutdown()
        _ = try? await running.value
        throw error
    }
    await group.triggerGracefulShutdown()
    try await running.value
    try afterStop(topology, socket)
}

private func curl(_ topology: EdgeNodeNamespaces, localPort: Int? = nil) -> String {
    let local = localPort.map { "--local-port \($0) " } ?? ""
    return topology.attempt(topology.client, "curl -s -m 2 \(local)http://10.201.0.2/").output
}

private func waitForOrigin(_ topology: EdgeNodeNamespaces) async throws {
    for _ in 0..<50 {
        if curl(topology).contains("origin") { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("the origin did not answer the client through the node")
}

/// A value tasks of a test share.
private final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}

private func rules(_ text: String) throws -> Edgetrail_V1_ApplyRulesRequest {
    try RuleSetFile.read(text, fileName: "rules.yaml")
}

@Suite(
    "Datapath Manager over gRPC", .serialized,
    .enabled(if: getuid() == 0, "SKIPPED: loading eBPF programs and making network namespaces needs root"))
struct DatapathManagerTests {
    @Test("apply through the socket redirects (pod MAC found by ARP); a broken set is refused whole and the old one stays")
    func applyAndRefuse() async throws {
        try await withManager { topology, scratch, socket, _ in
            let proxy = try topology.addPod("proxy")
            try topology.start(proxy.namespace, "python3 \(scratch)/server.py transparent 0.0.0.0 80")
            try await waitForOrigin(topology)
            let good = try rules(
                """
                rules:
                  - "10.201.0.2 80 : redirect => [proxy]"
                pods:
                  - name: proxy-0
                    labels: [proxy]
                    interface: \(proxy.nodeInterface)
                    ip: 10.250.1.2
                """)
            let version = try await DatapathManagerClient.with(socket: socket) { try await $0.applyRules(good).version }
            #expect(version == 1)
            try await Task.sleep(for: .milliseconds(300))
            #expect(curl(topology).contains("transparent"), "the request should reach the proxy pod")

            let broken = try rules(
                """
                rules:
                  - "10.201.0.0/24 * : deny"
                  - "10.201.0.2 443 : copy => [tap]"
                pods: []
                """)
            let refusal = await #expect(throws: RPCError.self) {
                try await DatapathManagerClient.with(socket: socket) { try await $0.applyRules(broken) }
            }
            #expect(refusal?.code == .invalidArgument)
            #expect(refusal?.message.contains("rule 2") == true, "\(refusal?.message ?? "")")
            #expect(refusal?.message.contains("no pod carries the label tap") == true, "\(refusal?.message ?? "")")

            let listed = try await DatapathManagerClient.with(socket: socket) {
                try await $0.listRules(Edgetrail_V1_ListRulesRequest())
            }
            #expect(listed.version == 1)
            #expect(DatapathMessages.rules(listed.rules).0.map(\.shorthand) == ["10.201.0.2 80 : redirect => [proxy]"])
            #expect(curl(topology).contains("transparent"), "the refused set must not have changed the datapath")

            let stats = try await DatapathManagerClient.with(socket: socket) { try await $0.stats(Edgetrail_V1_StatsRequest()) }
            #expect(stats.rules.count == 1)
            #expect((stats.rules.first?.packets ?? 0) >= 6, "two requests' packets counted on rule 1")
        }
    }

    @Test("a bound flow's start and end reach a StreamEvents subscriber with its cookie, 5-tuple and bytes")
    func boundFlowEvents() async throws {
        try await withManager { topology, _, socket, manager in
            try await waitForOrigin(topology)
            let denyNothing = try rules("rules: [\"10.201.0.99 * : deny\"]\npods: []")
            _ = try await DatapathManagerClient.with(socket: socket) { try await $0.applyRules(denyNothing) }
            let bind = DatapathMessages.bindTCP(
                from: ([10, 200, 0, 2], 41_234), to: ([10, 201, 0, 2], 80), cookie: 0x00c0_ffee_0000_0042)
            #expect(bind.tuple.srcIp == Data([10, 200, 0, 2]) && bind.tuple.protocol == 6)
            let seen = try await DatapathManagerClient.with(socket: socket) { try await $0.bindFlow(bind).flowSeen }
            #expect(!seen)

            let cookie = bind.cookie
            let events = Mutex<[Edgetrail_V1_FlowEventMessage]>([])
            let subscribed = Task {
                try await DatapathManagerClient.with(socket: socket) { client in
                    try await client.streamEvents(Edgetrail_V1_StreamEventsRequest()) { response in
                        for try await message in response.messages {
                            let done = events.withLock {
                                $0.append(message)
                                return $0.contains { $0.cookie == cookie && $0.event.phase == .end }
                            }
                            if done { return }
                        }
                    }
                }
            }
            while manager.subscriberCount == 0 { try await Task.sleep(for: .milliseconds(50)) }
            let answer = curl(topology, localPort: 41_234)
            #expect(answer.contains("origin"))
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, !subscribed.isCancelled {
                if events.withLock({ $0.contains { $0.cookie == bind.cookie && $0.event.phase == .end } }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            subscribed.cancel()
            let ours = events.withLock { $0.filter { $0.cookie == bind.cookie } }
            #expect(ours.map(\.event.phase) == [.start, .end])
            guard let end = ours.last else { return }
            #expect(end.node == "edge-test")
            #expect(end.event.tuple == bind.tuple)
            #expect(end.event.action == .pass)
            #expect(end.event.endReason == .fin)
            // The response is a little over 90 bytes of HTTP plus headers; the request ~80.
            #expect(end.event.bytesOut > 100 && end.event.bytesIn > 100)
            #expect(end.event.packetsIn >= 4 && end.event.packetsOut >= 3)
            #expect(end.event.endNs >= end.event.startNs)
        }
    }

    @Test("a flow that goes quiet is ended by the idle sweep (reason idle); one that keeps sending is not")
    func idleSweep() async throws {
        try await withManager(idleSeconds: 1) { topology, _, socket, manager in
            let events = Shared<[Edgetrail_V1_FlowEventMessage]>([])
            let subscribed = Task {
                try await DatapathManagerClient.with(socket: socket) { client in
                    try await client.streamEvents(Edgetrail_V1_StreamEventsRequest()) { response in
                        for try await message in response.messages {
                            events.value.withLock { $0.append(message) }
                        }
                    }
                }
            }
            defer { subscribed.cancel() }
            while manager.subscriberCount == 0 { try await Task.sleep(for: .milliseconds(50)) }
            func send(from port: Int, count: Int, every seconds: Double) -> String {
                "python3 -c \"import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    + "s.bind(('10.200.0.2', \(port)))\nfor _ in range(\(count)):\n"
                    + "    s.sendto(b'x' * 100, ('10.201.0.2', 53)); time.sleep(\(seconds))\""
            }
            try topology.sh(topology.client, send(from: 5555, count: 1, every: 0))
            try topology.start(topology.client, send(from: 5556, count: 30, every: 0.2))
            func flow(_ port: UInt32) -> [Edgetrail_V1_FlowEvent] {
                events.value.withLock { $0.map(\.event).filter { $0.tuple.srcPort == port } }
            }
            // Both end by the sweep: 5555 a second after its only packet, 5556 a second after
            // its last, ~6 s on. Waiting for events (not for a time) keeps this right on a busy machine.
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, flow(5555).count < 2 || flow(5556).count < 2 {
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(flow(5555).map(\.phase) == [.start, .end])
            #expect(flow(5555).last?.endReason == .idle)
            #expect(flow(5555).last?.packetsIn == 1)
            #expect(flow(5555).last.map { $0.endNs == $0.startNs } == true, "one packet: it ended when it started")
            // Had the sweep ended 5556 while it was still sending, its next packet would have
            // started a second flow: one start, one end with every packet means it stayed open.
            #expect(flow(5556).map(\.phase) == [.start, .end])
            #expect(flow(5556).last?.endReason == .idle)
            #expect(flow(5556).last?.packetsIn == 30)
            let duration = flow(5556).last.map { Double($0.endNs - $0.startNs) / 1e9 } ?? 0
            #expect(duration > 5 && duration < 8.5, "it sent for ~6 s; the end is known to a sweep interval: \(duration) s")
        }
    }

    @Test("new flows a full flow table has no room for pass, and are counted in Stats; the table's size is there too")
    func fullFlowTable() async throws {
        // Idle flows stay a minute: the table fills and stays full for the test.
        try await withManager(idleSeconds: 600, flowTableSize: 4) { topology, _, socket, _ in
            try await waitForOrigin(topology)
            let before = try await DatapathManagerClient.with(socket: socket) { try await $0.stats(Edgetrail_V1_StatsRequest()) }
            #expect(before.flowTableSize == 4)
            #expect(before.flowsUntracked == 0)
            // Ten UDP flows from ten ports; the origin's namespace answers none of them.
            try topology.sh(
                topology.client,
                "python3 -c \"import socket\nfor port in range(6000, 6010):\n"
                    + "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.200.0.2', port))\n"
                    + "    s.sendto(b'x' * 50, ('10.201.0.2', 53)); s.close()\"")
            let after = try await DatapathManagerClient.with(socket: socket) { try await $0.stats(Edgetrail_V1_StatsRequest()) }
            #expect(after.openFlows == 4)
            let room = 4 - before.openFlows
            #expect(after.flowsUntracked == 10 - room, "of 10 new flows, \(room) found room")
            // A full table does not stop traffic: the client still reaches the origin (its
            // flow is not tracked, its packets pass).
            #expect(curl(topology).contains("origin"))
            let last = try await DatapathManagerClient.with(socket: socket) { try await $0.stats(Edgetrail_V1_StatsRequest()) }
            // (A flow start that finds no room is counted each time it is tried: a SYN sent
            // again would count again.)
            #expect(last.flowsUntracked >= after.flowsUntracked + 1, "the request's own flow is counted too")
        }
    }

    @Test("a subscriber that falls behind is told how many events it lost, on the next event it gets")
    func slowSubscriberLosses() async throws {
        let topology = try EdgeNodeNamespaces()
        defer { topology.tearDown() }
        let server = try manager(topology, socket: NSTemporaryDirectory() + "\(topology.prefix).sock", subscriberBuffer: 2)
        defer { server.manager.shutdown() }
        let stream = server.manager.subscribe()
        func event(_ port: UInt32) -> Edgetrail_V1_FlowEventMessage {
            var message = Edgetrail_V1_FlowEventMessage()
            message.event.tuple.srcPort = port
            return message
        }
        server.manager.publish((1...5).map(event), ringLoss: 4)
        server.manager.publish([event(6)], ringLoss: 0)
        var iterator = stream.makeAsyncIterator()
        var received: [(port: UInt32, lost: UInt64)] = []
        for _ in 0..<2 {
            if let next = await iterator.next() { received.append((next.event.tuple.srcPort, next.event.lostEvents)) }
        }
        server.manager.publish([event(7)], ringLoss: 0)
        if let next = await iterator.next() { received.append((next.event.tuple.srcPort, next.event.lostEvents)) }
        // A buffer of 2: events 1-4 were pushed out by newer ones; what they were to report
        // (4 ring-buffer losses) and they themselves (4) reach the subscriber on later events.
        #expect(received.map(\.port) == [5, 6, 7])
        #expect(received.reduce(0) { $0 + $1.lost } == 4 + 4)
    }

    @Test("shutdown ends the event streams, detaches the programs, removes the qdisc and the socket")
    func cleanShutdown() async throws {
        let ended = Shared(false)
        try await withManager { topology, _, socket, _ in
            let qdiscs = try topology.sh(topology.node, "tc qdisc show dev \(topology.clientInterface)")
            #expect(qdiscs.contains("clsact"))
            let filters = try topology.sh(topology.node, "tc filter show dev \(topology.clientInterface) ingress")
            #expect(filters.contains("edgetrail"))
            // A subscriber still streaming when the manager stops sees its stream end.
            Task {
                try await DatapathManagerClient.with(socket: socket) { client in
                    try await client.streamEvents(Edgetrail_V1_StreamEventsRequest()) { response in
                        for try await _ in response.messages {}
                        ended.value.withLock { $0 = true }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(500))
        } afterStop: { topology, socket in
            #expect(!FileManager.default.fileExists(atPath: socket))
            let qdiscs = try topology.sh(topology.node, "tc qdisc show dev \(topology.clientInterface)")
            #expect(!qdiscs.contains("clsact"), "\(qdiscs)")
            let filters = try topology.sh(topology.node, "tc filter show dev \(topology.clientInterface) ingress")
            #expect(filters.isEmpty, "\(filters)")
        }
        #expect(ended.value.withLock { $0 }, "the subscriber's stream should have ended")
    }
}
