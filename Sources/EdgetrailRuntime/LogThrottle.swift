import EdgetrailCore
import Synchronization

/// Says whether a warning about refused input is due: at most one line per interval and kind,
/// however much bad input arrives (the counters on /metrics count every one).
public final class LogThrottle: Sendable {
    private let intervalNanoseconds: UInt64
    private let last = Mutex<[String: UInt64]>([:])

    public init(intervalNanoseconds: UInt64 = 10_000_000_000) {
        self.intervalNanoseconds = intervalNanoseconds
    }

    /// True (and noted) when no line of this kind was logged within the interval before `now`.
    public func due(_ kind: String = "", now: UInt64 = wallClockNanoseconds()) -> Bool {
        last.withLock { last in
            if let previous = last[kind], now &- previous < intervalNanoseconds { return false }
            last[kind] = now
            return true
        }
    }
}
