import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailNet
import EdgetrailProto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization

/// `edgetrail bench handler`: the round trip of a sync event through a Python handler — a μsrv's
/// event hub raises `request_received`, the sidecar (`python -m edgetrail.sidecar`, pinned to one
/// core when there are two) runs the handler and answers allow, the hub's `raise` returns. Three
/// handlers in the same run: the floor (a Swift handler in the hub's own process, no sidecar), a
/// Python handler that returns allow, and one that first makes one SDK call (`policy_mgr.check`
/// to a real policy-mgr μsrv). Latency is one event at a time; events/s with several in flight.
public enum HandlerBenchmark {
    public struct Settings: Sendable {
        public var executable: String
        public var python: String
        public var seconds: Double = 5
        public var inFlight = 8
        public var redis = "127.0.0.1:16379"
        /// Where the μsrvs and the sidecar export their spans; nil: an `OTLPSink` in this process.
        public var otlp: String?

        public init(executable: String, python: String) {
            self.executable = executable
            self.python = python
        }
    }

    struct Figures {
        var events: Int
        var defaulted: Int
        var seconds: Double
        var p50: Double
        var p99: Double
        var perSecond: Double { Double(events) / seconds }
    }

    public static func run(_ settings: Settings, print say: @escaping @Sendable (String) -> Void) async throws {
        var template = Array("/tmp/et-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw BenchmarkError("cannot create a directory under /tmp") }
        let runDirectory = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: runDirectory) }
        let pin = ProcessInfo.processInfo.activeProcessorCount >= 2
        if pin { MicroserviceProxyBenchmark.pinThisProcess(to: 1) }
        let sink = settings.otlp == nil ? try await OTLPSink.start() : nil
        defer { sink?.stop() }
        let otlp = settings.otlp ?? sink!.address

        let handlers = [
            "allow.py": "from edgetrail.sdk import Verdict\n\n\ndef handle(event, ctx):\n    return Verdict.allow()\n",
            "call.py": """
                from edgetrail.sdk import Verdict, policy_mgr


                def handle(event, ctx):
                    decision = policy_mgr.check(method=event.attributes["http.method"], url=event.attributes["http.url"])
                    return Verdict.deny(reason=decision.reason) if decision.denied else Verdict.allow()

                """,
        ]
        for (name, text) in handlers {
            try text.write(toFile: "\(runDirectory)/\(name)", atomically: true, encoding: .utf8)
        }
        try "policy:\n  default: allow\n  rules: []\n".write(
            toFile: "\(runDirectory)/policy.yaml", atomically: true, encoding: .utf8)

        let hub = EventHub(
            microservice: "bench", events: ["request_received"], syncEvents: ["request_received"],
            policies: ["request_received": EventPolicy(timeout: .seconds(5))])
        let server = GRPCServer(
            transport: .http2NIOPosix(
                address: .unixDomainSocket(path: "\(runDirectory)/bench.events.sock"), transportSecurity: .plaintext),
            services: [EventStreamService(hub: hub)])
        let serving = Task { try await server.serve() }
        defer {
            server.beginGracefulShutdown()
            serving.cancel()
        }
        _ = try await server.listeningAddress
        let policy = try LineChild.start(
            settings.executable,
            [
                "microservice", "run", "policy-mgr", "--name", "policy-mgr", "--cnf", "bench", "--run-dir", runDirectory,
                "--config", "\(runDirectory)/policy.yaml", "--redis", settings.redis, "--otlp", otlp,
                "--log-level", "error",
            ], waitFor: "ready", core: pin ? 1 : nil)
        defer { policy.stop() }

        say(
            "handler benchmark: sync request_received events raised by a μsrv event hub, answered through the "
                + "EventStream; latency one event at a time (\(settings.seconds / 2) s), events/s with "
                + "\(settings.inFlight) in flight (\(settings.seconds) s)")
        say(
            pin
                ? "  cores: the Python sidecar on core 0; the hub, policy-mgr and everything else on core 1"
                : "  cores: one core for everything (pinning needs two)")
        say(
            "  spans over OTLP/gRPC to "
                + (sink != nil
                    ? "this benchmark's OTLP sink at \(otlp) (takes each export, counts its spans)"
                    : "\(otlp) (\(SocketProbe.describe(otlp)))")
                + ", state to Redis \(settings.redis) (\(SocketProbe.describe(settings.redis)))")

        // The floor: a handler in the hub's process answering at once (no sidecar, no gRPC).
        let attachment = try hub.attach(events: ["request_received"], handler: "in-process")
        let answering = Task {
            for await event in attachment.events {
                var verdict = Edgetrail_V1_Verdict()
                verdict.eventID = event.id
                verdict.decision = .allow
                hub.answer(verdict, from: attachment.id)
            }
        }
        let floor = try await measure(hub, settings)
        hub.detach(attachment.id)
        answering.cancel()
        report(say, "in-process Swift handler (floor)", floor)

        var results: [String: Figures] = [:]
        for (label, file) in [("Python handler, returns allow", "allow.py"), ("Python handler, one SDK call", "call.py")] {
            let sidecar = try LineChild.start(
                settings.python,
                [
                    "-m", "edgetrail.sidecar", "--microservice", "bench", "--run-dir", runDirectory, "--cnf", "bench",
                    "--peer", "policy-mgr=policy-mgr", "--redis", settings.redis, "--otlp", otlp,
                    "--handler", "request_received=\(runDirectory)/\(file)", "--log-level", "error",
                ], waitFor: "attached", core: pin ? 0 : nil)
            defer { sidecar.stop() }
            let figures = try await measure(hub, settings)
            results[file] = figures
            report(say, label, figures)
        }
        say(
            String(
                format: "  p99 handler round trip: %.2f ms returning allow (target ≤ 2 ms), %.2f ms with one SDK call (target ≤ 4 ms); floor %.2f ms",
                (results["allow.py"]?.p99 ?? 0) / 1000, (results["call.py"]?.p99 ?? 0) / 1000, floor.p99 / 1000))
        if let sink { say("  spans the sink received from policy-mgr and the sidecars: \(sink.spans)") }
    }

    private static func report(_ say: (String) -> Void, _ label: String, _ figures: Figures) {
        say(
            "  " + label.padding(toLength: 34, withPad: " ", startingAt: 0)
                + String(
                    format: "%7.0f events/s   one at a time: p50 %6.0f µs  p99 %6.0f µs   (%d defaulted)", figures.perSecond,
                    figures.p50, figures.p99, figures.defaulted))
    }

    /// Warm-up, then latency with one event at a time, then throughput with `inFlight` raisers.
    private static func measure(_ hub: EventHub, _ settings: Settings) async throws -> Figures {
        _ = await raise(hub, raisers: 2, seconds: 0.5)
        let single = await raise(hub, raisers: 1, seconds: settings.seconds / 2)
        let busy = await raise(hub, raisers: settings.inFlight, seconds: settings.seconds)
        return Figures(
            events: busy.events, defaulted: single.defaulted + busy.defaulted, seconds: busy.seconds, p50: single.p50,
            p99: single.p99)
    }

    private static func raise(_ hub: EventHub, raisers: Int, seconds: Double) async -> Figures {
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + .milliseconds(Int(seconds * 1000))
        let attributes = [
            "http.method": "GET", "http.url": "http://10.201.0.2/index.html", "http.host": "10.201.0.2",
            "client": "10.200.0.2:41000", "http.content_type": "", "http.body_inspected": "true",
        ]
        let results = await withTaskGroup(of: ([Int64], Int).self) { group in
            for raiser in 0..<raisers {
                group.addTask {
                    var latencies: [Int64] = []
                    var defaulted = 0
                    var serial: UInt64 = UInt64(raiser) << 40
                    while clock.now < deadline {
                        serial += 1
                        let parent = TraceParent(
                            traceID: Array(repeating: 0x2a, count: 8) + withUnsafeBytes(of: serial.bigEndian, Array.init),
                            parentID: withUnsafeBytes(of: (serial | 1).bigEndian, Array.init), sampled: true)
                        let began = clock.now
                        let outcome = await hub.raise(
                            "request_received", cookie: Cookie(serial | 1), attributes: attributes, traceParent: parent)
                        let took = clock.now - began
                        if case .answered = outcome {
                            latencies.append(took.components.seconds * 1_000_000 + took.components.attoseconds / 1_000_000_000_000)
                        } else {
                            defaulted += 1
                        }
                    }
                    return (latencies, defaulted)
                }
            }
            var all: ([Int64], Int) = ([], 0)
            for await part in group {
                all.0 += part.0
                all.1 += part.1
            }
            return all
        }
        let elapsed = clock.now - started
        let latencies = results.0.sorted()
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))])
        }
        return Figures(
            events: latencies.count, defaulted: results.1,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            p50: percentile(0.5), p99: percentile(0.99))
    }
}
