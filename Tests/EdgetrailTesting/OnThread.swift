import Foundation

/// Runs blocking work — a Kafka poll loop, starting a service, waiting for a subprocess — on a
/// thread of its own, and awaits it without holding one of Swift's cooperative threads.
///
/// Suites run side by side on a pool as small as the machine's cores (two here). A test that
/// blocks a pool thread for seconds takes it from every other suite, and the collectors and
/// managers those suites run in-process are async: two suites polling Kafka at once were enough
/// to starve another suite's flow source until its wait ran out.
public func onThread<T: Sendable>(
    _ name: String = "test-blocking", _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.name = name
        thread.start()
    }
}
