import NIOPosix

/// Runs blocking work (a `setns`, a synchronous database call, a wait on a condition) on
/// NIO's thread pool, so no thread of Swift's cooperative pool is held by it: with two cores
/// that pool has two threads, and two blocked callers would stall every task in the process.
public enum Blocking {
    public static func run<Result: Sendable>(_ body: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
