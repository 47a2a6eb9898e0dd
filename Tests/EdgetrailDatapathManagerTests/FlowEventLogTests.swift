@testable import EdgetrailDatapathManager
import EdgetrailProto
import Testing

// What a subscriber that reconnects to the Datapath Manager gets back: the log numbers every
// event of a run and keeps the newest; what it no longer keeps is counted, never silent.

private func events(_ ports: ClosedRange<UInt32>) -> [Edgetrail_V1_FlowEventMessage] {
    ports.map { port in
        var message = Edgetrail_V1_FlowEventMessage()
        message.event.tuple.srcPort = port
        return message
    }
}

private func ports(_ replay: FlowEventLog.Replay) -> [UInt32] {
    replay.events.map(\.event.tuple.srcPort)
}

@Suite("Flow event log: numbering and replay for subscribers that reconnect")
struct FlowEventLogTests {
    @Test("events are numbered from 1 in the order published and carry the run")
    func numbering() {
        var log = FlowEventLog(run: 77, capacity: 10)
        let first = log.append(events(1...3), ringLoss: 0)
        let second = log.append(events(4...4), ringLoss: 0)
        #expect((first + second).map(\.sequence) == [1, 2, 3, 4])
        #expect((first + second).allSatisfy { $0.managerRun == 77 })
        #expect(log.lastSequence == 4)
    }

    @Test("ring-buffer losses go on the first event of their batch, or on the next event when a poll had none")
    func ringLossCarried() {
        var log = FlowEventLog(run: 1, capacity: 10)
        #expect(log.append([], ringLoss: 5).isEmpty)
        let batch = log.append(events(1...2), ringLoss: 2)
        #expect(batch.map(\.event.lostEvents) == [7, 0])
        #expect(log.append(events(3...3), ringLoss: 0).map(\.event.lostEvents) == [0])
    }

    @Test("a subscriber resuming after event N gets every later event, once, in order, with nothing counted lost")
    func resumeWithinTheLog() {
        var log = FlowEventLog(run: 9, capacity: 10)
        _ = log.append(events(1...6), ringLoss: 0)
        let replay = log.replay(run: 9, after: 4)
        #expect(ports(replay) == [5, 6])
        #expect(replay.events.map(\.sequence) == [5, 6])
        #expect(replay.notReplayed == 0 && !replay.otherRun)
        #expect(log.replay(run: 9, after: 6).events.isEmpty, "up to date: nothing to replay")
    }

    @Test("events pushed out of the log are counted as not replayed; the ones still held come back")
    func resumeBeyondTheLog() {
        var log = FlowEventLog(run: 9, capacity: 3)
        _ = log.append(events(1...10), ringLoss: 0)
        let replay = log.replay(run: 9, after: 2)
        // 3...10 were missed; the log holds 8, 9, 10.
        #expect(ports(replay) == [8, 9, 10])
        #expect(replay.notReplayed == 5)
    }

    @Test("replayed events keep the ring-buffer losses they reported")
    func replayKeepsRingLoss() {
        var log = FlowEventLog(run: 3, capacity: 10)
        _ = log.append(events(1...1), ringLoss: 0)
        _ = log.append(events(2...3), ringLoss: 4)
        #expect(log.replay(run: 3, after: 1).events.map(\.event.lostEvents) == [4, 0])
    }

    @Test("a subscriber of an earlier run gets this run from its first event, and is told it is another run")
    func otherRun() {
        var log = FlowEventLog(run: 2, capacity: 4)
        _ = log.append(events(1...3), ringLoss: 0)
        let replay = log.replay(run: 1, after: 500)
        #expect(ports(replay) == [1, 2, 3])
        #expect(replay.otherRun && replay.notReplayed == 0)
        _ = log.append(events(4...6), ringLoss: 0)
        let later = log.replay(run: 1, after: 500)
        #expect(ports(later) == [3, 4, 5, 6])
        #expect(later.notReplayed == 2, "events 1 and 2 of this run are no longer held")
    }

    @Test("run 0 asks for no replay: a subscriber that starts live")
    func live() {
        var log = FlowEventLog(run: 2, capacity: 4)
        _ = log.append(events(1...3), ringLoss: 0)
        #expect(log.replay(run: 0, after: 0) == FlowEventLog.Replay(events: [], notReplayed: 0, otherRun: false))
    }

    @Test("a sequence number from the future (a confused subscriber) replays nothing and counts nothing")
    func future() {
        var log = FlowEventLog(run: 2, capacity: 4)
        _ = log.append(events(1...3), ringLoss: 0)
        let replay = log.replay(run: 2, after: 99)
        #expect(replay.events.isEmpty && replay.notReplayed == 0)
    }
}
