import EdgetrailCore
import EdgetrailNet
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `edgetrail bench proxy --mode microservice`: requests/s and p50/p99 latency of keep-alive
/// clients fetching a response (10 KB by default) from the origin directly, and through the
/// http-proxy μsrv in explicit mode with no handlers attached, alternately in the same run. The
/// origin and the proxy are `edgetrail` processes; with two or more cores the proxy gets one core
/// to itself and the origin and the clients share another, so "one core" is what the proxy has.
public enum MicroserviceProxyBenchmark {
    public struct Figures: Sendable {
        public var requests: Int
        public var failures: Int
        public var seconds: Double
        public var p50Microseconds: Double
        public var p99Microseconds: Double
        public var perSecond: Double { Double(requests) / seconds }
    }

    public struct Settings: Sendable {
        public var executable: String
        public var seconds: Double = 5
        public var clients = 8
        public var rounds = 2
        public var responseBytes = 10_240
        public var redis = "127.0.0.1:16379"
        /// Where the proxy exports its spans; nil: an `OTLPSink` in this process.
        public var otlp: String?

        public init(executable: String) {
            self.executable = executable
        }
    }

    public static func run(_ settings: Settings, print say: (String) -> Void) throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let pin = cores >= 2
        let runDirectory = NSTemporaryDirectory() + "edgetrail-bench-proxy-\(getpid())"
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runDirectory) }
        if pin { pinThisProcess(to: 1) }
        let sink = settings.otlp == nil ? try OTLPSink.startBlocking() : nil
        defer { sink?.stop() }
        let otlp = settings.otlp ?? sink!.address
        let origin = try Child.start(
            settings.executable, ["origin", "--listen", "127.0.0.1:0", "--log-level", "warning"], core: pin ? 1 : nil)
        defer { origin.stop() }
        let proxy = try Child.start(
            settings.executable,
            [
                "microservice", "run", "http-proxy", "--name", "bench-proxy", "--cnf", "bench", "--run-dir", runDirectory,
                "--listen", "127.0.0.1:0", "--upstream", origin.listen, "--redis", settings.redis, "--otlp", otlp,
                "--log-level", "error",
            ], core: pin ? 0 : nil)
        defer { proxy.stop() }
        say(
            "proxy μsrv benchmark: GET of \(settings.responseBytes) bytes over keep-alive connections; per mode and round "
                + "\(settings.seconds) s with \(settings.clients) clients (requests/s), then \(settings.seconds / 2) s with one "
                + "(latency); \(settings.rounds) rounds, modes alternating")
        say(
            pin
                ? "  cores: proxy on core 0 (one event loop); origin and clients on core 1"
                : "  cores: one core for everything (pinning needs two)")
        say(
            "  proxy telemetry: spans over OTLP/gRPC to "
                + (sink != nil
                    ? "this benchmark's OTLP sink at \(otlp) (takes each export, counts its spans)"
                    : "\(otlp) (\(SocketProbe.describe(otlp)))")
                + ", state to Redis \(settings.redis) (\(SocketProbe.describe(settings.redis)))")
        let path = "/_origin/bytes/\(settings.responseBytes)"
        enum Mode: String, CaseIterable { case direct = "origin directly", proxy = "through the http-proxy μsrv" }
        // Throughput with `clients` busy connections; latency with one connection at a time, so
        // that the figure is what the proxy adds to a request, not time queued behind others.
        var throughput: [Mode: [Figures]] = [:]
        // CPU time per request of the process serving it (the origin directly; the proxy): steadier
        // than requests/s on a shared machine.
        var cpuPerRequest: [Mode: [Double]] = [:]
        var latency: [Mode: [Figures]] = [:]
        for round in 0..<settings.rounds {
            for mode in Mode.allCases {
                let target = mode == .direct ? origin.listen : proxy.listen
                // Warm up connections and caches.
                _ = try Load.run(address: target, path: path, clients: settings.clients, seconds: 0.3)
                let cpuBefore = (origin.cpuSeconds, proxy.cpuSeconds)
                let busy = try Load.run(address: target, path: path, clients: settings.clients, seconds: settings.seconds)
                let cpu = mode == .direct ? origin.cpuSeconds - cpuBefore.0 : proxy.cpuSeconds - cpuBefore.1
                cpuPerRequest[mode, default: []].append(busy.requests > 0 ? cpu / Double(busy.requests) * 1e6 : 0)
                let single = try Load.run(address: target, path: path, clients: 1, seconds: settings.seconds / 2)
                throughput[mode, default: []].append(busy)
                latency[mode, default: []].append(single)
                say(
                    "  round \(round + 1)  " + mode.rawValue.padding(toLength: 30, withPad: " ", startingAt: 0)
                        + String(
                            format: "%8.0f requests/s (%d clients), %4.0f µs CPU each  one client: p50 %5.0f µs  p99 %5.0f µs  (%d failed)",
                            busy.perSecond, settings.clients, cpuPerRequest[mode]!.last!, single.p50Microseconds,
                            single.p99Microseconds, busy.failures + single.failures))
            }
        }
        func mean(_ figures: [Mode: [Figures]], _ mode: Mode, _ value: (Figures) -> Double) -> Double {
            let runs = figures[mode] ?? []
            return runs.isEmpty ? 0 : runs.map(value).reduce(0, +) / Double(runs.count)
        }
        say("  mean:")
        for mode in Mode.allCases {
            say(
                "    " + mode.rawValue.padding(toLength: 30, withPad: " ", startingAt: 0)
                    + String(
                        format: "%8.0f requests/s  one client: p50 %5.0f µs  p99 %5.0f µs",
                        mean(throughput, mode, \.perSecond), mean(latency, mode, \.p50Microseconds),
                        mean(latency, mode, \.p99Microseconds)))
        }
        let direct = mean(throughput, .direct, \.perSecond)
        let ratio = direct > 0 ? mean(throughput, .proxy, \.perSecond) / direct : 0
        let added = (mean(latency, .proxy, \.p99Microseconds) - mean(latency, .direct, \.p99Microseconds)) / 1000
        say(String(format: "  proxy / direct requests/s: %.2f×   (target: ≥ 0.5×)", ratio))
        let cpuMean = { (mode: Mode) in (cpuPerRequest[mode] ?? []).reduce(0, +) / Double(max(1, cpuPerRequest[mode]?.count ?? 0)) }
        say(
            String(
                format: "  CPU per request (8 clients): the proxy %.0f µs, the origin serving directly %.0f µs (%.1f×)",
                cpuMean(.proxy), cpuMean(.direct), cpuMean(.direct) > 0 ? cpuMean(.proxy) / cpuMean(.direct) : 0))
        say(String(format: "  p99 added by the proxy (one client): %.2f ms   (target: ≤ 1 ms)", added))
        if let sink {
            // The proxy exports in batches every 100 ms: give the last one time to arrive.
            Thread.sleep(forTimeInterval: 0.3)
            let proxied = (throughput[.proxy] ?? []).reduce(0) { $0 + $1.requests } + (latency[.proxy] ?? []).reduce(0) { $0 + $1.requests }
            say("  spans the sink received: \(sink.spans) (\(proxied) requests measured through the proxy, plus warm-ups)")
        }
    }

    /// Pins every thread of this process to `core`.
    static func pinThisProcess(to core: Int) {
        let taskset = Process()
        taskset.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        taskset.arguments = ["-a", "-p", "-c", "\(core)", "\(getpid())"]
        taskset.standardOutput = FileHandle.nullDevice
        taskset.standardError = FileHandle.nullDevice
        try? taskset.run()
        taskset.waitUntilExit()
    }
}

/// An `edgetrail` child process that prints `ready … listen=HOST:PORT`.
private struct Child {
    let child: LineChild
    let listen: String

    static func start(_ executable: String, _ arguments: [String], core: Int?) throws -> Child {
        let child = try LineChild.start(executable, arguments, waitFor: "ready", core: core)
        guard let listen = child.field("listen") else {
            child.stop()
            throw BenchmarkError("\(arguments.prefix(3).joined(separator: " ")) said no listen address: \(child.readyLine)")
        }
        return Child(child: child, listen: listen)
    }

    var cpuSeconds: Double { child.cpuSeconds }
    func stop() { child.stop() }
}

/// Keep-alive client threads, each sending GET after GET on one connection and timing each.
private enum Load {
    static func run(address: String, path: String, clients: Int, seconds: Double) throws
        -> MicroserviceProxyBenchmark.Figures
    {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw BenchmarkError("bad address \(address)") }
        let host = String(parts[0])
        let stop = Atomic<Bool>(false)
        let results = Mutex<(latencies: [UInt64], failures: Int)>(([], 0))
        let done = DispatchGroup()
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\n\r\n".utf8)
        for _ in 0..<clients {
            done.enter()
            Thread {
                defer { done.leave() }
                var latencies: [UInt64] = []
                latencies.reserveCapacity(100_000)
                var failures = 0
                var connection = Connection(host: host, port: port)
                while !stop.load(ordering: .relaxed) {
                    let started = DispatchTime.now().uptimeNanoseconds
                    if connection?.exchange(request) == true {
                        latencies.append(DispatchTime.now().uptimeNanoseconds - started)
                    } else {
                        failures += 1
                        connection = Connection(host: host, port: port)
                        if connection == nil { usleep(10_000) }
                    }
                }
                results.withLock {
                    $0.latencies += latencies
                    $0.failures += failures
                }
            }.start()
        }
        let started = Date()
        Thread.sleep(forTimeInterval: seconds)
        stop.store(true, ordering: .relaxed)
        done.wait()
        let elapsed = Date().timeIntervalSince(started)
        let (latencies, failures) = results.withLock { ($0.latencies.sorted(), $0.failures) }
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000
        }
        return MicroserviceProxyBenchmark.Figures(
            requests: latencies.count, failures: failures, seconds: elapsed, p50Microseconds: percentile(0.5),
            p99Microseconds: percentile(0.99))
    }

    /// One keep-alive connection reading responses with a Content-Length.
    struct Connection {
        let fd: Int32
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)

        init?(host: String, port: Int) {
            fd = SocketProbe.connect(to: .tcp(host: host, port: port))
            guard fd >= 0 else { return nil }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            SocketIO.setTimeout(fd, seconds: 5)
        }

        /// Sends the request and reads the whole response; false when the connection failed.
        mutating func exchange(_ request: [UInt8]) -> Bool {
            guard SocketIO.writeAll(fd, request) else { return close() }
            var received = 0
            var headerEnd = -1
            var bodyLength = 0
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + received, $0.count - received, 0) }
                guard count > 0 else { return close() }
                received += count
                if headerEnd < 0, let end = Self.headerEnd(buffer, received) {
                    headerEnd = end
                    guard buffer.starts(with: Array("HTTP/1.1 200".utf8)), let length = Self.contentLength(buffer, end) else {
                        return close()
                    }
                    bodyLength = length
                }
                if headerEnd >= 0 {
                    if received >= headerEnd + bodyLength { return true }
                    // The body may be larger than the buffer: read the rest and drop it.
                    if received == buffer.count {
                        bodyLength -= received - headerEnd
                        received = 0
                        headerEnd = 0
                    }
                } else if received == buffer.count {
                    return close()
                }
            }
        }

        private func close() -> Bool {
            Glibc.close(fd)
            return false
        }

        static func headerEnd(_ bytes: [UInt8], _ count: Int) -> Int? {
            guard count >= 4 else { return nil }
            for index in 0...(count - 4)
            where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
                return index + 4
            }
            return nil
        }

        static func contentLength(_ bytes: [UInt8], _ end: Int) -> Int? {
            let head = String(decoding: bytes[0..<end], as: UTF8.self).lowercased()
            guard let range = head.range(of: "content-length:") else { return nil }
            return Int(head[range.upperBound...].prefix { $0 == " " || $0.isNumber }.trimmingCharacters(in: .whitespaces))
        }
    }
}
