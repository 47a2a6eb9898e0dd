import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailProto
import Testing

/// The event hub as a handler and a μsrv see it: who gets which event, and what a sync event
/// ends with when the handler answers, is too slow, is missing or goes away.
@Suite("Event hub: sync verdicts, deadlines and defaults")
struct EventHubTests {
    let cookie = Cookie(0x0123_4567_89ab_cdef)

    func hub(timeout: Duration = .seconds(5), defaultVerdict: HandlerVerdict = .allow) -> EventHub {
        EventHub(
            microservice: "http-proxy", events: ["request_received", "response_sent"], syncEvents: ["request_received"],
            policies: ["request_received": EventPolicy(timeout: timeout, defaultVerdict: defaultVerdict)])
    }

    /// Answers the next event on `attachment` with `decision`, from another task.
    func answer(_ hub: EventHub, _ attachment: EventHub.Attachment, deny reason: String?) -> Task<Edgetrail_V1_Event?, Never> {
        Task {
            for await event in attachment.events {
                var verdict = Edgetrail_V1_Verdict()
                verdict.eventID = event.id
                verdict.decision = reason == nil ? .allow : .deny
                verdict.reason = reason ?? ""
                hub.answer(verdict, from: attachment.id)
                return event
            }
            return nil
        }
    }

    @Test("a sync event waits for the handler's verdict, which carries its reason")
    func answered() async throws {
        let hub = hub()
        let attachment = try hub.attach(events: ["request_received"], handler: "on_request.py")
        let handler = answer(hub, attachment, deny: "blocked by policy")
        let outcome = await hub.raise(
            "request_received", cookie: cookie, attributes: ["http.url": "/x"],
            traceParent: TraceParent(header: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        #expect(outcome == .answered(HandlerVerdict(decision: .deny, reason: "blocked by policy")))
        let event = try #require(await handler.value)
        #expect(event.cookie == cookie.rawValue)
        #expect(event.sync)
        #expect(event.service == "http-proxy")
        #expect(event.attributes == ["http.url": "/x"])
        #expect(event.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        #expect(hub.counts["request_received"]?.answered == 1)
    }

    @Test("a handler that does not answer in time gets the event's default verdict, counted as timed_out")
    func timedOut() async throws {
        let hub = hub(timeout: .milliseconds(50), defaultVerdict: HandlerVerdict(decision: .deny, reason: "fail closed"))
        let attachment = try hub.attach(events: ["request_received"], handler: "slow.py")
        let outcome = await hub.raise("request_received", cookie: cookie)
        #expect(outcome == .defaulted(.timedOut, HandlerVerdict(decision: .deny, reason: "fail closed")))
        // The verdict that comes afterwards answers nothing and is counted as late.
        var late = Edgetrail_V1_Verdict()
        for await event in attachment.events {
            late.eventID = event.id
            break
        }
        #expect(!hub.answer(late, from: attachment.id))
        #expect(hub.counts["request_received"]?.defaulted[.timedOut] == 1)
        #expect(hub.counts["request_received"]?.lateVerdicts == 1)
    }

    @Test("a sync event tells the handler its timeout and default; a failed handler's answer applies the default at once")
    func handlerFailed() async throws {
        let hub = hub(timeout: .seconds(60), defaultVerdict: HandlerVerdict(decision: .deny, reason: "fail closed"))
        let attachment = try hub.attach(events: ["request_received"], handler: "broken.py")
        let handler = Task { () -> Edgetrail_V1_Event? in
            for await event in attachment.events {
                var verdict = Edgetrail_V1_Verdict()
                verdict.eventID = event.id
                verdict.reason = "broken.py:3: ZeroDivisionError: division by zero"
                hub.answer(verdict, from: attachment.id)
                return event
            }
            return nil
        }
        let started = ContinuousClock.now
        let outcome = await hub.raise("request_received", cookie: cookie)
        #expect(ContinuousClock.now - started < .seconds(60), "the default applies without waiting out the timeout")
        #expect(
            outcome
                == .defaulted(
                    .handlerFailed,
                    HandlerVerdict(
                        decision: .deny, reason: "fail closed",
                        annotations: ["handler_error": "broken.py:3: ZeroDivisionError: division by zero"])))
        let event = try #require(await handler.value)
        #expect(event.timeoutMs == 60_000)
        #expect(event.defaultDecision == .deny)
        #expect(hub.counts["request_received"]?.defaulted[.handlerFailed] == 1)
        #expect(hub.counts["request_received"]?.answered == 0)
    }

    @Test("with no handler attached a sync event gets its default at once, counted as no_handler")
    func noHandler() async {
        let hub = hub()
        let outcome = await hub.raise("request_received", cookie: cookie)
        #expect(outcome == .defaulted(.noHandler, .allow))
        #expect(await hub.raise("response_sent", cookie: cookie) == .notDelivered(.noHandler))
        #expect(hub.counts["request_received"]?.defaulted[.noHandler] == 1)
    }

    @Test("a handler that leaves with events unanswered lets them go with their defaults, counted as handler_left")
    func handlerLeft() async throws {
        let hub = hub()
        let attachment = try hub.attach(events: ["request_received"], handler: "on_request.py")
        let leaving = Task {
            for await _ in attachment.events {
                hub.detach(attachment.id)
                return
            }
        }
        let outcome = await hub.raise("request_received", cookie: cookie)
        await leaving.value
        #expect(outcome == .defaulted(.handlerLeft, .allow))
        #expect(hub.handler(for: "request_received") == nil)
    }

    @Test("async events reach their handler without waiting; a later attachment takes the event over")
    func asyncAndTakeover() async throws {
        let hub = hub()
        let first = try hub.attach(events: ["response_sent"], handler: "first.py")
        #expect(await hub.raise("response_sent", cookie: cookie, payload: .init([1, 2, 3])) == .delivered)
        let second = try hub.attach(events: ["response_sent", "request_received"], handler: "second.py")
        #expect(hub.handler(for: "response_sent") == "second.py")
        #expect(await hub.raise("response_sent", cookie: cookie) == .delivered)
        hub.close()
        var firstEvents: [Edgetrail_V1_Event] = []
        for await event in first.events { firstEvents.append(event) }
        var secondEvents: [Edgetrail_V1_Event] = []
        for await event in second.events { secondEvents.append(event) }
        #expect(firstEvents.map(\.payload) == [.init([1, 2, 3])])
        #expect(firstEvents.allSatisfy { !$0.sync })
        #expect(secondEvents.count == 1)
        #expect(hub.counts["response_sent"]?.delivered == 2)
    }

    @Test("a subscription to an event the μsrv does not publish is refused, naming what it publishes")
    func unknownEvent() {
        let hub = hub()
        #expect {
            _ = try hub.attach(events: ["scan_done"], handler: "x.py")
        } throws: { error in
            "\(error)" == "http-proxy does not publish 'scan_done' (it publishes: request_received, response_sent)"
        }
        hub.close()
        #expect(throws: EventHubError.self) { _ = try hub.attach(events: ["response_sent"], handler: "x.py") }
    }

    @Test("a handler whose queue is full gets no more events; sync ones get their default, counted as handler_busy")
    func busy() async throws {
        let hub = EventHub(
            microservice: "policy-mgr", events: ["policy_check"], syncEvents: ["policy_check"],
            policies: ["policy_check": EventPolicy(timeout: .milliseconds(300))], queueLimit: 1)
        let attachment = try hub.attach(events: ["policy_check"], handler: "stuck.py")
        defer { withExtendedLifetime(attachment) {} }
        // The first waits in the queue (and times out); the second finds the queue full.
        let first = Task { await hub.raise("policy_check", cookie: cookie) }
        while hub.counts["policy_check"]?.raised != 1 { try await Task.sleep(for: .milliseconds(1)) }
        let second = await hub.raise("policy_check", cookie: cookie)
        let firstOutcome = await first.value
        #expect(firstOutcome == .defaulted(.timedOut, .allow))
        #expect(second == .defaulted(.handlerBusy, .allow))
    }
}
