import EdgetrailNodeAgent
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A pod's process kept running: restarted when it exits or is killed, with back-off, counted;
/// stopped for good by `stop`.
@Suite("Process supervisor")
struct SupervisorTests {
    func waitUntil(_ seconds: Double = 20, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    @Test("a process that keeps crashing is restarted again and again, each restart counted, its exit recorded")
    func crashing() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("supervisor-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let runs = directory.appendingPathComponent("runs").path
        let supervisor = Supervisor(
            name: "crasher", executable: "/bin/sh", arguments: ["-c", "echo run >> \(runs); exit 3"],
            logPath: directory.appendingPathComponent("log").path,
            backoff: RestartBackoff(initial: .milliseconds(20), maximum: .milliseconds(80), stableAfter: .seconds(60)))
        supervisor.start()
        // Each restart follows an exit of a run that got as far as writing its line.
        #expect(waitUntil { supervisor.current.restarts >= 3 })
        #expect(supervisor.current.lastExit == "exited with 3")
        let started = (try String(contentsOfFile: runs, encoding: .utf8)).split(separator: "\n").count
        #expect(started >= 3)
        supervisor.stop()
        #expect(supervisor.current.phase == .stopped)
        let restarts = supervisor.current.restarts
        usleep(200_000)
        #expect(supervisor.current.restarts == restarts, "nothing restarts after stop")
    }

    @Test("a killed process comes back with a new pid; stop ends it and it stays down")
    func killedAndStopped() throws {
        let supervisor = Supervisor(
            name: "sleeper", executable: "/bin/sleep", arguments: ["300"], logPath: "/dev/null",
            backoff: RestartBackoff(initial: .milliseconds(20), maximum: .milliseconds(80), stableAfter: .seconds(60)))
        supervisor.start()
        #expect(waitUntil { supervisor.current.phase == .running })
        let first = supervisor.current.pid
        kill(first, SIGKILL)
        #expect(waitUntil { supervisor.current.phase == .running && supervisor.current.pid != first })
        #expect(supervisor.current.restarts == 1)
        #expect(supervisor.current.lastExit == "killed by signal 9")
        let second = supervisor.current.pid
        supervisor.stop()
        #expect(supervisor.current.phase == .stopped)
        #expect(kill(second, 0) != 0, "the process is gone")
        usleep(200_000)
        #expect(supervisor.current.restarts == 1, "nothing restarts after stop")
    }
}
