/// Failed logins, limited per user name and per client address. Pure logic: the caller passes the
/// time, so the rules are tested without waiting.
///
/// A name that fails `perUser` times within `window` is locked for `lockout`, whatever address
/// tries it (guessing one account's password from many places); an address that fails
/// `perAddress` times is locked the same way, whatever names it tries (one place trying many
/// accounts). While locked, even the right password is refused, so a lock cannot be used to test
/// guesses. A successful login clears the name's failures, not the address's.
public struct LoginThrottle: Sendable {
    public struct Limits: Sendable {
        public var perUser = 5
        public var perAddress = 20
        /// Failures older than this are forgotten (seconds).
        public var window: Double = 15 * 60
        public var lockout: Double = 15 * 60

        public init() {}
    }

    /// Why a login attempt is refused before its password is checked.
    public enum Refusal: Sendable, Equatable {
        case userLocked(untilSeconds: Double)
        case addressLocked(untilSeconds: Double)

        public var until: Double {
            switch self {
            case .userLocked(let until), .addressLocked(let until): until
            }
        }
    }

    struct Record: Sendable {
        var failures: [Double] = []
        var lockedUntil: Double = 0
    }

    public let limits: Limits
    private var users: [String: Record] = [:]
    private var addresses: [String: Record] = [:]

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Whether an attempt for `user` from `address` may be checked at `now` (seconds).
    public func refusal(user: String, address: String, now: Double) -> Refusal? {
        if let until = users[user.lowercased()]?.lockedUntil, until > now { return .userLocked(untilSeconds: until) }
        if let until = addresses[address]?.lockedUntil, until > now { return .addressLocked(untilSeconds: until) }
        return nil
    }

    /// Counts a failed attempt; returns the lock it caused, if any.
    @discardableResult
    public mutating func failed(user: String, address: String, now: Double) -> Refusal? {
        let userLock = Self.count(&users[user.lowercased(), default: Record()], now: now, limit: limits.perUser, limits: limits)
        let addressLock = Self.count(&addresses[address, default: Record()], now: now, limit: limits.perAddress, limits: limits)
        prune(now: now)
        if let userLock { return .userLocked(untilSeconds: userLock) }
        if let addressLock { return .addressLocked(untilSeconds: addressLock) }
        return nil
    }

    public mutating func succeeded(user: String) {
        users[user.lowercased()] = nil
    }

    private static func count(_ record: inout Record, now: Double, limit: Int, limits: Limits) -> Double? {
        record.failures.removeAll { $0 <= now - limits.window }
        record.failures.append(now)
        guard record.failures.count >= limit else { return nil }
        record.failures.removeAll()
        record.lockedUntil = now + limits.lockout
        return record.lockedUntil
    }

    /// Forgets names and addresses with nothing recent, so guessing random names cannot grow the
    /// tables without bound.
    private mutating func prune(now: Double) {
        guard users.count + addresses.count > 10_000 else { return }
        let horizon = now - limits.window
        users = users.filter { $0.value.lockedUntil > now || ($0.value.failures.last ?? 0) > horizon }
        addresses = addresses.filter { $0.value.lockedUntil > now || ($0.value.failures.last ?? 0) > horizon }
    }
}
