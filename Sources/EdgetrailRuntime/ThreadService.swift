import Foundation
import ServiceLifecycle

/// Runs a blocking loop on its own thread (hiredis, librdkafka and file reads block) as a
/// service: graceful shutdown or cancellation calls `stop`, and the service ends when the loop returns.
public struct ThreadService: Service {
    public let name: String
    private let body: @Sendable () -> Void
    private let onStop: @Sendable () -> Void

    public init(name: String, run: @escaping @Sendable () -> Void, stop: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = run
        self.onStop = stop
    }

    public func run() async throws {
        // A group also ends by cancellation (when another of its services fails): the loop must
        // stop then too, or the process would wait on it forever, deaf to signals.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let thread = Thread {
                        body()
                        continuation.resume()
                    }
                    thread.name = name
                    thread.start()
                }
            } onGracefulShutdown: {
                onStop()
            }
        } onCancel: {
            onStop()
        }
    }
}

/// A thread-safe flag a blocking loop polls to know when to stop.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    public init() {}

    public var isSet: Bool { lock.withLock { value } }

    public func set() { lock.withLock { value = true } }
}
