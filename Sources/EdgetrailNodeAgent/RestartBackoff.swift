/// When to restart a process that exited, and how often it has been: the delay doubles from
/// `initial` to `maximum` while it keeps failing, and starts over once it ran for `stableAfter`.
/// Pure: the caller passes the times in.
public struct RestartBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var stableAfter: Duration
    /// Restarts so far (shown in `cnf status`).
    public private(set) var restarts = 0
    private var nextDelay: Duration

    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30), stableAfter: Duration = .seconds(60)) {
        self.initial = initial
        self.maximum = maximum
        self.stableAfter = stableAfter
        nextDelay = initial
    }

    /// The process exited after running for `ran`: how long to wait before starting it again.
    public mutating func exited(after ran: Duration) -> Duration {
        if ran >= stableAfter { nextDelay = initial }
        let delay = nextDelay
        nextDelay = min(nextDelay * 2, maximum)
        restarts += 1
        return delay
    }
}
