import EdgetrailCore
import EdgetrailDatapath
import EdgetrailNode
import Foundation

/// `edgetrail bench datapath`: what the tc ingress program costs per packet, from the kernel's
/// own BPF statistics (run_time_ns / run_cnt), with 1 rule and with 1,024 rules, on real
/// traffic through a throwaway edge node (network namespaces; needs root).
public enum DatapathBenchmark {
    /// Sends `count` UDP datagrams from 16 source ports to 10.201.0.2:9 as fast as it can.
    static let senderScript = """
        import socket, sys
        count = int(sys.argv[1])
        sockets = []
        for _ in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("10.200.0.2", 0))
            sockets.append(s)
        payload = b"x" * 64
        for i in range(count):
            sockets[i % 16].sendto(payload, ("10.201.0.2", 9))
        """

    /// An Ethernet + IPv4 + UDP packet from the client (10.200.0.2) to 10.201.0.2:9 with 64
    /// bytes of payload, as the sender script sends them.
    static func udpPacket(sourcePort: UInt16) -> [UInt8] {
        let payload = 64
        var packet: [UInt8] = [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]
        let total = 20 + 8 + payload
        var ip: [UInt8] = [
            0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 200, 0, 2, 10, 201, 0, 2,
        ]
        var sum: UInt32 = 0
        for index in stride(from: 0, to: ip.count, by: 2) { sum += UInt32(ip[index]) << 8 | UInt32(ip[index + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xff)
        packet += ip
        packet += [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0, 9, 0, UInt8(8 + payload), 0, 0]
        packet += [UInt8](repeating: 0x78, count: payload)
        return packet
    }

    public static func run(objectPath: String, packets: Int, print say: (String) -> Void) throws {
        say("datapath benchmark: \(packets) UDP packets per rule set through the tc ingress program (kernel BPF statistics)")
        let topology = try EdgeNodeNamespaces()
        defer { topology.tearDown() }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(topology.prefix).path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try senderScript.write(toFile: scratch + "/send.py", atomically: true, encoding: .utf8)
        let datapath = try BPFDatapath(objectPath: objectPath)
        try topology.inNode { try datapath.attach(interface: topology.clientInterface) }
        defer { try? topology.inNode { datapath.detach() } }
        var statistics = try BPFDatapath.enableRunTimeStatistics()
        defer { if statistics >= 0 { close(statistics) } }

        // The packets' own rule: deny UDP to the discard port (they end at the node).
        let target = try DatapathRule.parse(shorthand: "10.201.0.2 9 : deny")
        var many = [target]
        for index in 0..<1023 {
            let address = "10.\(100 + index / 250).\(index % 250).\(1 + index % 7)"
            let port = index % 3 == 0 ? "*" : String(1000 + index)
            let prefix = index % 5 == 0 ? "/\(24 + index % 8)" : ""
            many.append(try DatapathRule.parse(shorthand: "\(address)\(prefix) \(port) : deny"))
        }
        // Distinct (destination, port) pairs only.
        var seen = Set<String>()
        many = many.filter { seen.insert("\($0.destination?.description ?? "*") \($0.port.map(String.init) ?? "*")").inserted }

        /// Warms up (ARP, maps), then sends the packets: ns per ingress run, runs, seconds.
        func measure(_ ingressStats: () -> DatapathProgramStats) throws -> (Double, UInt64, Double) {
            _ = topology.attempt(topology.client, "python3 \(scratch)/send.py 2000")
            let before = ingressStats()
            let started = Date()
            _ = try topology.sh(topology.client, "python3 \(scratch)/send.py \(packets)")
            let elapsed = Date().timeIntervalSince(started)
            let after = ingressStats()
            let runs = after.runs - before.runs
            return (runs == 0 ? 0 : Double(after.nanoseconds - before.nanoseconds) / Double(runs), runs, elapsed)
        }
        for (name, rules) in [("1 rule", [target]), ("\(many.count) rules", many)] {
            try topology.inNode { try datapath.apply(rules, pods: []) }
            let (cost, runs, elapsed) = try measure { datapath.programStats().ingress }
            say(
                "  " + name.padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: "%6.1f ns/packet over %d runs (%.1f s of sending)", cost, runs, elapsed))
        }
        let dropped = datapath.stats().first?.drops ?? 0
        say("  (the measured rule dropped \(dropped) packets: every packet ran the full path)")
        // The floors: a program that does nothing, and one that only parses the packet and looks
        // its flow up (in a table of its own, where it is not found), attached and measured alike.
        try topology.inNode { datapath.detach() }
        for (program, what) in [
            ("edgetrail_floor", "a program that does nothing (the statistics' own cost)"),
            ("edgetrail_floor_lookup", "parse + one flow-table look-up, nothing else"),
        ] {
            let floor = try BPFProgramProbe(
                objectPath: BPFProgramProbe.floorsObjectPath(besides: objectPath), program: program)
            try topology.inNode { try floor.attach(interface: topology.clientInterface) }
            defer { try? topology.inNode { floor.detach() } }
            let (cost, _, _) = try measure { floor.stats }
            say("  floor       " + String(format: "%6.1f ns/packet: ", cost) + what)
        }
        // The same program and rules on one of those packets, a million times in the kernel's
        // test runner with the statistics off: timed around the loop, not per run.
        close(statistics)
        statistics = -1
        let (own, verdict) = try datapath.testRunIngress(packet: Self.udpPacket(sourcePort: 40_000), repetitions: 1_000_000)
        say(
            "  test run    " + String(format: "%6.1f ns/packet", Double(own))
                + ": the 1,024-rule program, one UDP packet × 1,000,000 (BPF_PROG_TEST_RUN, no statistics; verdict "
                + (verdict == 2 ? "drop)" : "\(verdict))"))
        say("  target: <= 100 ns/packet at 1,024 rules")
    }
}
