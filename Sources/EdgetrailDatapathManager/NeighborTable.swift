import EdgetrailCore
import EdgetrailDatapath
import EdgetrailProto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Finds a pod's MAC address the way the node's kernel does: its ARP entry on the pod's
/// interface, asked for with one datagram when there is none yet. Runs in the calling thread's
/// network namespace.
enum NeighborTable {
    struct Problem: Error { var message: String }

    /// The datapath's view of a pod from the wire, its MAC resolved when not given.
    static func pod(_ endpoint: Edgetrail_V1_PodEndpoint, index: Int) -> Result<DatapathPod, Problem> {
        let name = endpoint.name.isEmpty ? "pod \(index + 1)" : "pod \(endpoint.name)"
        guard !endpoint.nodeInterface.isEmpty else {
            return .failure(Problem(message: "\(name): no node_interface (the node side of the pod's veth)"))
        }
        guard if_nametoindex(endpoint.nodeInterface) != 0 else {
            return .failure(Problem(message: "\(name): the node has no interface \(endpoint.nodeInterface)"))
        }
        var mac = Array(endpoint.mac)
        if mac.isEmpty {
            guard endpoint.ip.count == 4 else {
                return .failure(Problem(message: "\(name): give its IPv4 address or its MAC"))
            }
            guard let resolved = resolve(Array(endpoint.ip), interface: endpoint.nodeInterface) else {
                return .failure(
                    Problem(
                        message: "\(name): no ARP answer from \(IPPrefix.format(Array(endpoint.ip))) on "
                            + "\(endpoint.nodeInterface); is the pod up, with that address?"))
            }
            mac = resolved
        }
        guard mac.count == 6 else { return .failure(Problem(message: "\(name): a MAC address has 6 bytes, not \(mac.count)")) }
        return .success(DatapathPod(name: endpoint.name, labels: endpoint.labels, nodeInterface: endpoint.nodeInterface, mac: mac))
    }

    /// The MAC for `address` on `interface`; sends a datagram to the discard port to make the
    /// kernel ask, then waits up to a second for the answer.
    static func resolve(_ address: [UInt8], interface: String) -> [UInt8]? {
        if let known = lookup(address, interface: interface) { return known }
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        _ = interface.withCString { name in
            setsockopt(descriptor, SOL_SOCKET, SO_BINDTODEVICE, name, socklen_t(strlen(name) + 1))
        }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = UInt16(9).bigEndian
        withUnsafeMutableBytes(of: &target.sin_addr) { bytes in
            for index in 0..<4 { bytes[index] = address[index] }
        }
        for _ in 0..<50 {
            _ = withUnsafePointer(to: &target) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, "", 0, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            usleep(20_000)
            if let known = lookup(address, interface: interface) { return known }
        }
        return nil
    }

    /// A complete entry of this thread's namespace's ARP table.
    static func lookup(_ address: [UInt8], interface: String) -> [UInt8]? {
        guard let table = try? String(contentsOfFile: "/proc/thread-self/net/arp", encoding: .utf8) else { return nil }
        let wanted = IPPrefix.format(address)
        for line in table.split(separator: "\n").dropFirst() {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            // IP address, HW type, Flags, HW address, Mask, Device
            guard columns.count >= 6, columns[0] == wanted, columns[5] == interface,
                let flags = UInt32(columns[2].dropFirst(2), radix: 16), flags & 0x2 != 0
            else { continue }
            let mac = columns[3].split(separator: ":").compactMap { UInt8($0, radix: 16) }
            if mac.count == 6 { return mac }
        }
        return nil
    }
}
