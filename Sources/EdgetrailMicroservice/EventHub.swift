import EdgetrailCore
import EdgetrailProto
import Foundation
import Synchronization

/// A handler's answer to a sync event, or the one the μsrv applied for it.
public struct HandlerVerdict: Sendable, Equatable {
    public enum Decision: String, Sendable { case allow, deny }
    public var decision: Decision
    public var reason: String
    public var annotations: [String: String]

    public init(decision: Decision, reason: String = "", annotations: [String: String] = [:]) {
        self.decision = decision
        self.reason = reason
        self.annotations = annotations
    }

    public static let allow = HandlerVerdict(decision: .allow)
    public var denied: Bool { decision == .deny }

    /// The annotation that carries a failed handler's account of what went wrong.
    public static let handlerErrorKey = "handler_error"

    func withHandlerError(_ error: String) -> HandlerVerdict {
        var verdict = self
        if !error.isEmpty { verdict.annotations[Self.handlerErrorKey] = error }
        return verdict
    }
}

/// Why an event did not get a handler's verdict.
public enum DefaultReason: String, Sendable, CaseIterable {
    /// No handler is attached for the event.
    case noHandler = "no_handler"
    /// The handler did not answer within its timeout.
    case timedOut = "timed_out"
    /// The handler's stream ended before it answered.
    case handlerLeft = "handler_left"
    /// The handler had too many events not yet taken off its stream.
    case handlerBusy = "handler_busy"
    /// The handler answered that it could not decide: it raised, hung, returned no verdict or
    /// did not import (the sidecar says which in its span and in the verdict's reason).
    case handlerFailed = "handler_failed"
}

/// What became of a raised event.
public enum EventOutcome: Sendable, Equatable {
    /// A sync event the handler answered.
    case answered(HandlerVerdict)
    /// A sync event that got the event's default verdict.
    case defaulted(DefaultReason, HandlerVerdict)
    /// An async event handed to the handler.
    case delivered
    /// An async event no handler took.
    case notDelivered(DefaultReason)

    /// The verdict the μsrv acts on (allow for async events).
    public var verdict: HandlerVerdict {
        switch self {
        case .answered(let verdict), .defaulted(_, let verdict): verdict
        case .delivered, .notDelivered: .allow
        }
    }
}

/// How long a sync event waits for its handler, and what applies when it does not answer.
public struct EventPolicy: Sendable {
    public var timeout: Duration
    public var defaultVerdict: HandlerVerdict

    public init(timeout: Duration = .seconds(1), defaultVerdict: HandlerVerdict = .allow) {
        self.timeout = timeout
        self.defaultVerdict = defaultVerdict
    }
}

/// A subscription a handler asked for that the μsrv cannot give.
public struct EventHubError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// The events of one μsrv and the handlers attached to them. A handler (the sidecar) attaches
/// for some of the μsrv's events; the μsrv raises events; a sync event waits for the attached
/// handler's verdict up to the event's timeout and otherwise gets its default verdict, counted by
/// reason. At most one handler serves an event: a later attachment takes the event over (a
/// sidecar that reconnects).
public final class EventHub: Sendable {
    /// Per event: how often it was raised and how each ended.
    public struct Counts: Sendable, Equatable {
        public var raised = 0
        public var answered = 0
        public var delivered = 0
        public var defaulted: [DefaultReason: Int] = [:]
        /// Verdicts that came after their event's timeout, or named no waiting event.
        public var lateVerdicts = 0
    }

    /// One handler's attachment: the events it receives, until it detaches.
    public struct Attachment: Sendable {
        public let id: Int
        /// The event names it receives.
        public let names: [String]
        public let events: AsyncStream<Edgetrail_V1_Event>
    }

    private struct Subscriber {
        var events: Set<String>
        var handler: String
        var continuation: AsyncStream<Edgetrail_V1_Event>.Continuation
    }

    private struct Pending {
        var event: String
        var subscriber: Int
        var defaultVerdict: HandlerVerdict
        var continuation: CheckedContinuation<EventOutcome, Never>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var routes: [String: Int] = [:]
        var pending: [String: Pending] = [:]
        var nextSubscriber = 1
        var nextEvent: UInt64 = 1
        var counts: [String: Counts] = [:]
        var closed = false
    }

    public let microservice: String
    public let events: [String]
    public let syncEvents: Set<String>
    let policies: [String: EventPolicy]
    /// Events queued for one handler beyond which a further event is not delivered.
    let queueLimit: Int
    private let state = Mutex(State())

    public init(
        microservice: String, events: [String], syncEvents: Set<String>, policies: [String: EventPolicy] = [:],
        queueLimit: Int = 4096
    ) {
        self.microservice = microservice
        self.events = events
        self.syncEvents = syncEvents
        self.policies = policies
        self.queueLimit = queueLimit
    }

    public func policy(for event: String) -> EventPolicy { policies[event] ?? EventPolicy() }

    /// Attaches a handler for `names`; refuses events the μsrv does not publish.
    public func attach(events names: [String], handler: String) throws(EventHubError) -> Attachment {
        let unknown = names.filter { !events.contains($0) }
        guard unknown.isEmpty, !names.isEmpty else {
            throw EventHubError(
                message: names.isEmpty
                    ? "subscribe to at least one event; \(microservice) publishes: \(events.joined(separator: ", "))"
                    : "\(microservice) does not publish \(unknown.map { "'\($0)'" }.joined(separator: ", ")) "
                        + "(it publishes: \(events.joined(separator: ", ")))")
        }
        let (stream, continuation) = AsyncStream.makeStream(
            of: Edgetrail_V1_Event.self, bufferingPolicy: .bufferingOldest(queueLimit))
        let id = state.withLock { state -> Int? in
            guard !state.closed else { return nil }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = Subscriber(events: Set(names), handler: handler, continuation: continuation)
            for name in names { state.routes[name] = id }
            return id
        }
        guard let id else {
            continuation.finish()
            throw EventHubError(message: "\(microservice) is stopping")
        }
        return Attachment(id: id, names: names, events: stream)
    }

    /// Ends an attachment: its stream finishes and its unanswered sync events get their defaults.
    public func detach(_ id: Int) {
        let (subscriber, orphans) = state.withLock { state -> (Subscriber?, [Pending]) in
            guard let subscriber = state.subscribers.removeValue(forKey: id) else { return (nil, []) }
            for (event, route) in state.routes where route == id { state.routes[event] = nil }
            let orphaned = state.pending.filter { $0.value.subscriber == id }
            for (eventID, pending) in orphaned {
                state.pending[eventID] = nil
                state.counts[pending.event, default: Counts()].defaulted[.handlerLeft, default: 0] += 1
            }
            return (subscriber, Array(orphaned.values))
        }
        subscriber?.continuation.finish()
        for pending in orphans {
            pending.timer?.cancel()
            pending.continuation.resume(returning: .defaulted(.handlerLeft, pending.defaultVerdict))
        }
    }

    /// Stops taking attachments and ends every one (the μsrv is stopping).
    public func close() {
        let ids = state.withLock { state -> [Int] in
            state.closed = true
            return Array(state.subscribers.keys)
        }
        for id in ids { detach(id) }
    }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// The handler attached for `event`, if any.
    public func handler(for event: String) -> String? {
        state.withLock { state in state.routes[event].flatMap { state.subscribers[$0]?.handler } }
    }

    /// Takes a handler's verdict; false when no event waits for it (late, or unknown).
    @discardableResult
    public func answer(_ verdict: Edgetrail_V1_Verdict, from subscriber: Int) -> Bool {
        let pending = state.withLock { state -> Pending? in
            guard let pending = state.pending[verdict.eventID], pending.subscriber == subscriber else {
                // The event id says which event it meant; count it there when we can tell.
                let name = state.subscribers[subscriber]?.events.first ?? ""
                state.counts[name, default: Counts()].lateVerdicts += 1
                return nil
            }
            state.pending[verdict.eventID] = nil
            if verdict.decision == .allow || verdict.decision == .deny {
                state.counts[pending.event, default: Counts()].answered += 1
            } else {
                state.counts[pending.event, default: Counts()].defaulted[.handlerFailed, default: 0] += 1
            }
            return pending
        }
        guard let pending else { return false }
        pending.timer?.cancel()
        pending.continuation.resume(returning: Self.outcome(of: verdict, default: pending.defaultVerdict))
        return true
    }

    /// Raises an event. A sync event returns when its handler answered, its timeout passed, or
    /// its handler left; an async event returns once it is queued for its handler.
    public func raise(
        _ name: String, cookie: Cookie, attributes: [String: String] = [:], payload: Data = Data(),
        traceParent: TraceParent? = nil
    ) async -> EventOutcome {
        var event = Edgetrail_V1_Event()
        event.cookie = cookie.rawValue
        event.name = name
        event.service = microservice
        event.sync = syncEvents.contains(name)
        event.atNs = wallClockNanoseconds()
        event.attributes = attributes
        event.payload = payload
        event.traceparent = traceParent?.header ?? ""
        let policy = self.policy(for: name)
        guard event.sync else { return deliver(event) }
        event.timeoutMs = UInt32(clamping: policy.timeout.components.seconds * 1000 + policy.timeout.components.attoseconds / 1_000_000_000_000_000)
        event.defaultDecision = policy.defaultVerdict.denied ? .deny : .allow
        return await withCheckedContinuation { continuation in
            let outcome = state.withLock { state -> EventOutcome? in
                state.counts[name, default: Counts()].raised += 1
                guard let route = state.routes[name], let subscriber = state.subscribers[route] else {
                    state.counts[name, default: Counts()].defaulted[.noHandler, default: 0] += 1
                    return .defaulted(.noHandler, policy.defaultVerdict)
                }
                event.id = "\(state.nextEvent)"
                state.nextEvent += 1
                if let reason = Self.undelivered(subscriber.continuation.yield(event)) {
                    state.counts[name, default: Counts()].defaulted[reason, default: 0] += 1
                    return .defaulted(reason, policy.defaultVerdict)
                }
                state.pending[event.id] = Pending(
                    event: name, subscriber: route, defaultVerdict: policy.defaultVerdict, continuation: continuation)
                return nil
            }
            if let outcome {
                continuation.resume(returning: outcome)
                return
            }
            let id = event.id
            let timer = Task {
                guard (try? await Task.sleep(for: policy.timeout)) != nil else { return }
                self.expire(id)
            }
            // The verdict may already have come; then the timer has nothing to do.
            let stillPending = state.withLock { state -> Bool in
                guard state.pending[id] != nil else { return false }
                state.pending[id]?.timer = timer
                return true
            }
            if !stillPending { timer.cancel() }
        }
    }

    /// Counts an event raised while no handler was attached, and returns its outcome.
    public func unhandled(_ name: String) -> EventOutcome {
        state.withLock { state in Self.countUnhandled(name, in: &state) }
        return syncEvents.contains(name) ? .defaulted(.noHandler, policy(for: name).defaultVerdict) : .notDelivered(.noHandler)
    }

    /// Whether a handler is attached for `event`; when none is, the event is counted as raised
    /// and defaulted for want of one (`unhandled`), under the same lock: what a μsrv's data path
    /// asks for every event it could raise.
    public func isHandledElseCounted(_ event: String) -> Bool {
        state.withLock { state in
            if state.routes[event].flatMap({ state.subscribers[$0] }) != nil { return true }
            Self.countUnhandled(event, in: &state)
            return false
        }
    }

    private static func countUnhandled(_ name: String, in state: inout State) {
        // One look-up of the event's counts, changed in place.
        Self.modify(&state.counts[name, default: Counts()]) { counts in
            counts.raised += 1
            counts.defaulted[.noHandler, default: 0] += 1
        }
    }

    private static func modify<Value>(_ value: inout Value, _ change: (inout Value) -> Void) { change(&value) }

    /// A verdict as the μsrv acts on it: allow or deny as answered; anything else means the
    /// handler failed, and the event's default applies (with the handler's account as reason).
    static func outcome(of verdict: Edgetrail_V1_Verdict, default fallback: HandlerVerdict) -> EventOutcome {
        switch verdict.decision {
        case .allow, .deny:
            .answered(
                HandlerVerdict(
                    decision: verdict.decision == .deny ? .deny : .allow, reason: verdict.reason,
                    annotations: verdict.annotations))
        default:
            .defaulted(.handlerFailed, fallback.withHandlerError(verdict.reason))
        }
    }

    private func deliver(_ event: Edgetrail_V1_Event) -> EventOutcome {
        state.withLock { state in
            state.counts[event.name, default: Counts()].raised += 1
            guard let route = state.routes[event.name], let subscriber = state.subscribers[route] else {
                state.counts[event.name, default: Counts()].defaulted[.noHandler, default: 0] += 1
                return .notDelivered(.noHandler)
            }
            var event = event
            event.id = "\(state.nextEvent)"
            state.nextEvent += 1
            if let reason = Self.undelivered(subscriber.continuation.yield(event)) {
                state.counts[event.name, default: Counts()].defaulted[reason, default: 0] += 1
                return .notDelivered(reason)
            }
            state.counts[event.name, default: Counts()].delivered += 1
            return .delivered
        }
    }

    /// Why an event handed to a handler's stream did not get into it.
    private static func undelivered(_ result: AsyncStream<Edgetrail_V1_Event>.Continuation.YieldResult) -> DefaultReason? {
        switch result {
        case .enqueued: nil
        case .dropped: .handlerBusy
        case .terminated: .handlerLeft
        @unknown default: .handlerBusy
        }
    }

    private func expire(_ id: String) {
        let pending = state.withLock { state -> Pending? in
            guard let pending = state.pending.removeValue(forKey: id) else { return nil }
            state.counts[pending.event, default: Counts()].defaulted[.timedOut, default: 0] += 1
            return pending
        }
        pending?.continuation.resume(returning: .defaulted(.timedOut, pending!.defaultVerdict))
    }

    /// The counts per event name.
    public var counts: [String: Counts] { state.withLock { $0.counts } }
}
