import EdgetrailCore
import EdgetrailDatapath
import EdgetrailNet
import EdgetrailNode
import EdgetrailRuntime
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `edgetrail bench proxy`: HTTP requests per second from a client to the origin's address
/// (10.201.0.2:80) when the node steers them into a proxy pod
///
/// - with the eBPF datapath: the tc ingress program redirects into the pod, whose policy
///   routing hands the packets to the proxy's `IP_TRANSPARENT` listener;
/// - with the classic netfilter interception: an iptables mangle rule on the node marks the
///   flows, policy routing sends them to the pod, and an iptables TPROXY rule in the pod hands
///   them to the same listener (how transparent proxies and sidecar meshes intercept traffic);
///
/// and, as a reference, with no steering at all (the origin answers). Every request opens a new
/// connection (the steering runs on each packet of the handshake too). The client, the proxy and
/// the origin are threads of this process with their sockets in the namespaces; the modes run
/// alternately, twice each, on one throwaway edge node (needs root).
public enum ProxyBenchmark {
    public struct Figures: Sendable {
        public var requests: Int
        public var seconds: Double
        public var failures: Int
        public var perSecond: Double { Double(requests) / seconds }
    }

    public static func run(
        objectPath: String, seconds: Double, clients: Int, rounds: Int = 2, print say: (String) -> Void
    ) throws {
        say("proxy benchmark: \(clients) clients, a new connection per request, \(rounds) × \(seconds) s per mode, alternating")
        let topology = try EdgeNodeNamespaces()
        defer { topology.tearDown() }
        let pod = try topology.addPod("proxy")
        for namespace in [topology.client, topology.node, pod.namespace, topology.server] {
            try topology.sh(
                namespace,
                "sysctl -qw net.ipv4.ip_local_port_range='10000 65000' net.ipv4.tcp_tw_reuse=1 net.core.somaxconn=4096")
        }
        let origin = try NamespaceHTTPResponder(namespace: topology.server, body: "origin", transparent: false)
        let proxy = try NamespaceHTTPResponder(namespace: pod.namespace, body: "proxy", transparent: true)
        defer {
            origin.stop()
            proxy.stop()
        }
        let datapath = try BPFDatapath(objectPath: objectPath)
        let rule = try DatapathRule.parse(shorthand: "10.201.0.2 80 : redirect => [proxy]")
        let pods = [DatapathPod(name: "proxy", labels: ["proxy"], nodeInterface: pod.nodeInterface, mac: pod.mac)]
        let podRule = "ip rule add iif \(pod.podInterface) lookup 100"

        enum Mode: String, CaseIterable { case direct = "no steering (origin answers)", ebpf = "eBPF redirect", iptables = "iptables TPROXY" }
        func setUp(_ mode: Mode) throws {
            switch mode {
            case .direct:
                break
            case .ebpf:
                try topology.inNode {
                    try datapath.attach(interface: topology.clientInterface)
                    try datapath.apply([rule], pods: pods)
                }
            case .iptables:
                try topology.sh(
                    topology.node,
                    "iptables -t mangle -A PREROUTING -i \(topology.clientInterface) -p tcp -d 10.201.0.2 --dport 80 -j MARK --set-mark 0x1"
                        + " && ip rule add fwmark 0x1 lookup 200 && ip route add default via 10.250.1.2 dev \(pod.nodeInterface) table 200")
                try topology.sh(
                    pod.namespace,
                    podRule.replacingOccurrences(of: "add", with: "del")
                        + " && iptables -t mangle -A PREROUTING -i \(pod.podInterface) -p tcp --dport 80 -j TPROXY --on-port 80 --tproxy-mark 0x1/0x1"
                        + " && ip rule add fwmark 0x1 lookup 100")
            }
        }
        func tearDown(_ mode: Mode) throws {
            switch mode {
            case .direct:
                break
            case .ebpf:
                try topology.inNode { datapath.detach() }
            case .iptables:
                try topology.sh(
                    topology.node, "iptables -t mangle -F && ip rule del fwmark 0x1 lookup 200 && ip route flush table 200")
                try topology.sh(pod.namespace, "iptables -t mangle -F && ip rule del fwmark 0x1 lookup 100 && \(podRule)")
            }
        }

        var results: [Mode: [Figures]] = [:]
        for round in 0..<rounds {
            for mode in Mode.allCases {
                try setUp(mode)
                defer { try? tearDown(mode) }
                // Warm up (ARP, caches), and check who answers: the steering must really steer.
                let check = try Load.run(topology: topology, clients: 1, seconds: 0.3)
                let expected = mode == .direct ? "origin" : "proxy"
                guard check.answers[expected, default: 0] > 0, check.answers.count == 1 else {
                    throw TopologyError("\(mode.rawValue): expected every answer from the \(expected), got \(check.answers)")
                }
                // The flow events are read as the Datapath Manager would (2 per connection).
                let reader = mode == .ebpf ? EventReader(datapath) : nil
                let figures = try Load.run(topology: topology, clients: clients, seconds: seconds).figures
                results[mode, default: []].append(figures)
                say(
                    "  round \(round + 1)  " + mode.rawValue.padding(toLength: 30, withPad: " ", startingAt: 0)
                        + String(format: "%8.0f requests/s (%d requests, %d failed)", figures.perSecond, figures.requests, figures.failures))
                if let reader {
                    let (events, lost) = reader.finish()
                    say("           flow events read: \(events), lost while the ring buffer was full: \(lost)")
                }
            }
        }
        func mean(_ mode: Mode) -> Double {
            let runs = results[mode] ?? []
            return runs.isEmpty ? 0 : runs.map(\.perSecond).reduce(0, +) / Double(runs.count)
        }
        say("  mean:")
        for mode in Mode.allCases {
            say("    " + mode.rawValue.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%8.0f requests/s", mean(mode)))
        }
        let ratio = mean(.iptables) > 0 ? mean(.ebpf) / mean(.iptables) : 0
        say(String(format: "  eBPF / iptables: %.2f×   (target: ≥ 1.0×)", ratio))
    }
}

/// Reads the datapath's flow events on a thread until `finish`.
private final class EventReader: @unchecked Sendable {
    private let datapath: BPFDatapath
    private let stop = StopFlag()
    private let done = DispatchSemaphore(value: 0)
    private var events = 0
    private let lostBefore: UInt64

    init(_ datapath: BPFDatapath) {
        self.datapath = datapath
        lostBefore = datapath.lostEvents()
        Thread { [self] in
            while !stop.isSet { events += (try? self.datapath.poll(timeoutMilliseconds: 100))?.count ?? 0 }
            done.signal()
        }.start()
    }

    func finish() -> (events: Int, lost: UInt64) {
        stop.set()
        done.wait()
        return (events, datapath.lostEvents() - lostBefore)
    }
}

/// Client threads in the client namespace, each opening a connection per request to
/// 10.201.0.2:80 until the time is up.
private enum Load {
    struct Outcome {
        var figures: ProxyBenchmark.Figures
        /// Answers by body ("origin", "proxy").
        var answers: [String: Int]
    }

    private final class Tally: Sendable {
        let state = Mutex((requests: 0, failures: 0, answers: [String: Int]()))
        let stop = StopFlag()
    }

    static func run(topology: EdgeNodeNamespaces, clients: Int, seconds: Double) throws -> Outcome {
        let tally = Tally()
        let done = DispatchGroup()
        let namespace = topology.client
        for _ in 0..<clients {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                var requests = 0
                var failures = 0
                var answers: [String: Int] = [:]
                _ = try? NetworkNamespace.run(named: namespace) {
                    while !tally.stop.isSet {
                        let text = NamespaceHTTPClient.get([10, 201, 0, 2]) ?? ""
                        if text.hasPrefix("HTTP/1.0 200"), let body = text.components(separatedBy: "\r\n\r\n").last {
                            requests += 1
                            answers[body, default: 0] += 1
                        } else {
                            failures += 1
                        }
                    }
                }
                tally.state.withLock { state in
                    state.requests += requests
                    state.failures += failures
                    state.answers.merge(answers, uniquingKeysWith: +)
                }
            }
            thread.start()
        }
        let started = Date()
        Thread.sleep(forTimeInterval: seconds)
        tally.stop.set()
        done.wait()
        let elapsed = Date().timeIntervalSince(started)
        return tally.state.withLock { state in
            Outcome(
                figures: ProxyBenchmark.Figures(requests: state.requests, seconds: elapsed, failures: state.failures),
                answers: state.answers)
        }
    }
}
