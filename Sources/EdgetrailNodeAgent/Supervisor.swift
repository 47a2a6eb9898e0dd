import EdgetrailInfra
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Keeps one process of a pod running: starts it, and when it exits restarts it after the
/// `RestartBackoff` delay, counting restarts; `stop` ends it (SIGTERM, then SIGKILL) and stops
/// restarting. Its waiting is on a thread of its own (a child's exit is a blocking wait), never on
/// Swift's cooperative pool. The state is what `cnf status` shows.
public final class Supervisor: Sendable {
    public enum Phase: String, Sendable {
        case starting, running, restarting, stopped
    }

    public struct State: Sendable, Equatable {
        public var phase: Phase = .starting
        public var pid: Int32 = 0
        public var restarts = 0
        /// How the last run ended, e.g. "exited with 3", "killed by signal 9".
        public var lastExit = ""
    }

    public let name: String
    let executable: String
    let arguments: [String]
    let logPath: String
    let environment: [String: String]
    private let backoff: Mutex<RestartBackoff>
    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)
    private let wake = NSCondition()
    private let finished = DispatchSemaphore(value: 0)

    public init(
        name: String, executable: String, arguments: [String], logPath: String, environment: [String: String] = [:],
        backoff: RestartBackoff = RestartBackoff()
    ) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.logPath = logPath
        self.environment = environment
        self.backoff = Mutex(backoff)
    }

    public var current: State { state.withLock { $0 } }

    /// Starts the process and keeps it running until `stop`.
    public func start() {
        let thread = Thread { [self] in
            supervise()
            finished.signal()
        }
        thread.name = "supervise \(name)"
        thread.start()
    }

    /// Ends the process and the supervision; returns once both are over.
    public func stop(timeout: Double = 10) {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake.lock()
        wake.broadcast()
        wake.unlock()
        let pid = state.withLock { $0.pid }
        if pid > 0 { ProcessControl.stop(pid, signal: SIGTERM, timeout: timeout) }
        finished.wait()
        state.withLock { $0.phase = .stopped }
    }

    private func supervise() {
        while !stopping.load(ordering: .acquiring) {
            let began = ContinuousClock.now
            let pid: Int32
            do {
                pid = try ProcessControl.spawnDetached(
                    executable: executable, arguments: arguments, logPath: logPath, environment: environment)
            } catch {
                state.withLock { $0.lastExit = "could not start: \(error)" }
                if !pause(for: backoff.withLock { $0.exited(after: .zero) }) { break }
                state.withLock { $0.restarts += 1 }
                continue
            }
            state.withLock {
                $0.pid = pid
                $0.phase = .running
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            let ended = Self.describe(status)
            state.withLock {
                $0.pid = 0
                $0.lastExit = ended
            }
            if stopping.load(ordering: .acquiring) { break }
            let delay = backoff.withLock { $0.exited(after: ContinuousClock.now - began) }
            state.withLock { $0.phase = .restarting }
            if !pause(for: delay) { break }
            state.withLock { $0.restarts += 1 }
        }
        state.withLock { $0.phase = .stopped }
    }

    /// Sleeps `delay` unless `stop` comes first; false when it did.
    private func pause(for delay: Duration) -> Bool {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        let deadline = Date().addingTimeInterval(seconds)
        wake.lock()
        defer { wake.unlock() }
        while !stopping.load(ordering: .acquiring) {
            if !wake.wait(until: deadline) { return !stopping.load(ordering: .acquiring) }
        }
        return false
    }

    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with \((status >> 8) & 0xff)" }
        return "killed by signal \(signal)"
    }
}
