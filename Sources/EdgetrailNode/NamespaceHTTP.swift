import EdgetrailNet
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.0 responder living in a network namespace: answers every connection with a
/// short 200 and closes. `transparent` listens with IP_TRANSPARENT, as a proxy pod does to take
/// connections the datapath redirected to it; `delayMilliseconds` waits before answering (a pod
/// that does some work). Worker threads accept on one listener. For the demo and the
/// benchmarks' edge nodes.
public final class NamespaceHTTPResponder: Sendable {
    private let listener: Int32
    private let stopped = Atomic<Bool>(false)

    public init(
        namespace: String, port: UInt16 = 80, body: String, transparent: Bool, delayMilliseconds: Int = 0,
        workers: Int = 4
    ) throws {
        listener = try NetworkNamespace.run(named: namespace) { () throws -> Int32 in
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if transparent { setsockopt(descriptor, SOL_IP, IP_TRANSPARENT, &one, socklen_t(MemoryLayout<Int32>.size)) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0, listen(descriptor, 4096) == 0 else {
                let reason = String(cString: strerror(errno))
                close(descriptor)
                throw TopologyError("cannot listen on port \(port) in \(namespace): \(reason)")
            }
            return descriptor
        }
        let response = Array("HTTP/1.0 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        for _ in 0..<workers {
            Thread { [self] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !stopped.load(ordering: .relaxed) {
                    let connection = accept(listener, nil, nil)
                    guard connection >= 0 else { continue }
                    _ = recv(connection, &buffer, buffer.count, 0)
                    if delayMilliseconds > 0 { usleep(useconds_t(delayMilliseconds * 1000)) }
                    _ = response.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    close(connection)
                }
            }.start()
        }
    }

    /// Stops accepting (wakes the workers) and closes the listener.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}

/// One HTTP/1.0 GET over a new connection, from the calling thread's network namespace.
public enum NamespaceHTTPClient {
    /// The response (status line to body), or `nil` when the connection failed or timed out.
    /// `localPort` fixes the client's port (to bind the flow to a cookie beforehand).
    public static func get(
        _ address: [UInt8], port: UInt16 = 80, localPort: UInt16? = nil, timeoutSeconds: Int = 2
    ) -> String? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if let localPort {
            var one: Int32 = 1
            setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_port = localPort.bigEndian
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { return nil }
        }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &target.sin_addr) { bytes in
            for index in 0..<min(4, address.count) { bytes[index] = address[index] }
        }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let host = address.map(String.init).joined(separator: ".")
        let request = Array("GET / HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
        else { return nil }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count < 0 { return nil }
            if count == 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
