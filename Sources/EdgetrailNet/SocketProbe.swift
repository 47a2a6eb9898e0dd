#if canImport(Glibc)
import Glibc
#endif
import EdgetrailCore
import Foundation
import Synchronization

/// Small blocking socket checks used to tell whether a service is listening.
public enum SocketProbe {
    /// True when something accepts a connection at `endpoint` right now.
    public static func isListening(_ endpoint: Endpoint) -> Bool {
        let fd = connect(to: endpoint)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// "up" or "not running" for a HOST:PORT or a socket path, for a line saying what a
    /// benchmark or a command found.
    public static func describe(_ address: String) -> String {
        if address.contains("/") { return isListening(.unix(path: address)) ? "up" : "not running" }
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { return "not an address" }
        return isListening(.tcp(host: String(parts[0]), port: port)) ? "up" : "not running"
    }

    /// A connected socket or -1.
    public static func connect(to endpoint: Endpoint) -> Int32 {
        switch endpoint {
        case .tcp(let host, let port):
            guard (1...65535).contains(port) else { return -1 }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return -1 }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
                close(fd)
                return -1
            }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if result != 0 {
                close(fd)
                return -1
            }
            return fd
        case .unix(let path):
            return UnixSocket.connect(path: path)
        }
    }

    /// True when a TCP port on `host` can be bound (nothing else holds it).
    public static func isPortFree(host: String, port: Int) -> Bool {
        guard (1...65535).contains(port) else { return false }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }

    /// A port free on `host` at this moment (for tests and benchmarks that run side by side).
    ///
    /// Picked below the kernel's ephemeral range (ip_local_port_range): a port the kernel hands
    /// out for `bind(0)` is one it also gives to outgoing connections, so with many connections
    /// being opened nearby it could be taken again before the caller binds it. Successive calls
    /// in one process walk the range from a random start, so they never hand out the same port.
    public static func freePort(host: String = "127.0.0.1") -> Int {
        let lowestEphemeral = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
        let span = lowestEphemeral - 10_000
        if span > 2_000 {
            for _ in 0..<200 {
                let port = 10_000 + nextPort.add(1, ordering: .relaxed).oldValue % span
                if bindable(host: host, port: port) { return port }
            }
        }
        return bound(host: host, port: 0)
    }

    private static let nextPort = Atomic<Int>(Int.random(in: 0..<20_000))

    private static func bindable(host: String, port: Int) -> Bool { bound(host: host, port: port) == port }

    /// Binds a TCP socket to `host:port` (0: any) and closes it; the port it got, or 0.
    private static func bound(host: String, port: Int) -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { return 0 }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: bound.sin_port))
    }
}

/// Unix-domain stream sockets (clamd, and the control plane later).
public enum UnixSocket {
    /// The longest path a Unix socket address holds on Linux (sun_path is 108 bytes with the NUL).
    public static let maximumPathLength = 107

    /// A connected socket or -1.
    public static func connect(path: String) -> Int32 {
        guard path.utf8.count <= maximumPathLength else { return -1 }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
            buffer[path.utf8.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result != 0 {
            close(fd)
            return -1
        }
        return fd
    }
}

/// Blocking reads and writes with a deadline, for short request/response protocols.
public enum SocketIO {
    /// Applies a receive and send timeout to a socket.
    public static func setTimeout(_ fd: Int32, seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes every byte; false on error or timeout.
    public static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) -> Bool {
        let array = Array(bytes)
        var sent = 0
        while sent < array.count {
            let result = array.withUnsafeBytes { buffer in
                send(fd, buffer.baseAddress! + sent, array.count - sent, Int32(MSG_NOSIGNAL))
            }
            if result < 0 {
                if errno == EINTR { continue }
                return false
            }
            sent += result
        }
        return true
    }

    /// Reads until `terminator` arrives (excluded from the result), the peer closes, or an error.
    public static func readUntil(_ fd: Int32, terminator: UInt8, limit: Int = 1 << 20) -> [UInt8]? {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while result.count < limit {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return result.isEmpty ? nil : result }
            if let end = buffer[0..<count].firstIndex(of: terminator) {
                result += buffer[0..<end]
                return result
            }
            result += buffer[0..<count]
        }
        return result
    }
}

/// A TCP address a server was told to listen on, and the setting that named it.
public struct ListenAddress: Sendable {
    public var host: String
    public var port: Int
    /// Where the address came from, for the message (e.g. `sources.otlp.listen`, `--listen`).
    public var setting: String

    public init(host: String, port: Int, setting: String) {
        self.host = host
        self.port = port
        self.setting = setting
    }

    /// Throws, naming the first address another program holds. Servers call it before they
    /// start anything: a server library that cannot bind may only say so deep inside a
    /// shutting-down group, after the process looked up and running.
    public static func checkFree(_ addresses: [ListenAddress]) throws(AddressInUseError) {
        for address in addresses where !SocketProbe.isPortFree(host: address.host, port: address.port) {
            throw AddressInUseError(address: address)
        }
    }
}

/// A listen address another program already holds.
public struct AddressInUseError: Error, CustomStringConvertible {
    public var address: ListenAddress

    public var description: String {
        "\(address.host):\(address.port) (\(address.setting)) is already in use by another program; "
            + "stop that program or choose another address with \(address.setting)"
    }
}
