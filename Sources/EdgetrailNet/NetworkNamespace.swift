import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs code with the calling thread inside a named network namespace (`ip netns add NAME`):
/// interface names, and the netlink sockets that attach programs, resolve there. The edge node
/// is such a namespace, so the host's own networking is never touched.
public enum NetworkNamespace {
    private typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    /// glibc's setns(2) (declared only under _GNU_SOURCE, so looked up once).
    private static let setns: SetNS? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns")
        .map { unsafeBitCast($0, to: SetNS.self) }
    private static let newNetworkNamespace: Int32 = 0x4000_0000  // CLONE_NEWNET

    /// Runs `body` inside `/var/run/netns/<name>` on this thread, then returns to where it was.
    /// `body` must not suspend (it has to finish on the thread it started on).
    public static func run<T, E: Error>(named name: String, _ body: () throws(E) -> T) throws -> T {
        guard let setns else { throw NamespaceError("setns(2) is not available") }
        let original = open("/proc/thread-self/ns/net", O_RDONLY)
        let target = open("/var/run/netns/\(name)", O_RDONLY)
        defer {
            if original >= 0 { close(original) }
            if target >= 0 { close(target) }
        }
        guard original >= 0 else { throw NamespaceError("cannot read this thread's network namespace") }
        guard target >= 0 else { throw NamespaceError("no network namespace \(name) (ip netns list shows them)") }
        guard setns(target, newNetworkNamespace) == 0 else {
            throw NamespaceError("cannot enter network namespace \(name): \(String(cString: strerror(errno)))")
        }
        defer { _ = setns(original, newNetworkNamespace) }
        return try body()
    }
}

/// A network namespace that cannot be entered, and why.
public struct NamespaceError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
