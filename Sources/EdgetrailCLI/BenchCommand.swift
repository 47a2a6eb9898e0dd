import ArgumentParser
import EdgetrailBenchmarks
import EdgetrailCore
import EdgetrailDatapath
import EdgetrailNet
import Foundation

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput and latency; prints figures and the baseline they compare with.",
        discussion: """
            Run a release build for meaningful figures: 'make bench' builds one, starts the broker, \
            runs every benchmark and stops the broker. Timing lives here, never in pass/fail tests.
            """,
        subcommands: [Collector.self, OTLPLoadCommand.self, Central.self, Filters.self, Datapath.self, Proxy.self, Handler.self, Chain.self, Portal.self])

    struct Portal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The portal: a 1,000-span waterfall page rendered server-side, and the live trace log at 1,000 sessions/s.",
            discussion: """
                Renders a cookie's waterfall page with --spans spans (and its flow and snapshots) \
                --renders times, printing p50/p99 against the target of 50 ms, with the same timeline \
                encoded as JSON as the baseline. Then publishes --rate sessions a second for --seconds \
                into central's live feed, read over HTTP as server-sent events the way the portal reads \
                it: sessions delivered per second, events per second (batching), sessions lost, and the \
                lag from publish to reader.
                """)

        @Option(help: "Spans in the waterfall's session.")
        var spans = 1000

        @Option(help: "Renders to time.")
        var renders = 60

        @Option(help: "Sessions a second offered to the live log.")
        var rate = 1000

        @Option(help: "Seconds of live-log load.")
        var seconds = 10.0

        func run() async throws {
            var settings = PortalBenchmark.Settings()
            settings.spans = spans
            settings.renders = renders
            settings.sessionsPerSecond = rate
            settings.seconds = seconds
            try await PortalBenchmark.run(settings) { print($0) }
        }
    }

    struct Handler: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Round trip of a sync event through a Python handler (the sidecar), with and without one SDK call.",
            discussion: """
                A μsrv event hub in this process raises request_received; the handler sidecar \
                (python -m edgetrail.sidecar, on one core of its own when there are two) answers allow. \
                Prints events/s with --in-flight events outstanding and p50/p99 one event at a time, for \
                an in-process Swift handler (the floor), a Python handler returning allow, and one making \
                one policy_mgr.check call to a real policy-mgr μsrv. Targets: p99 ≤ 2 ms without an SDK \
                call, ≤ 4 ms with one. State goes to --redis; spans go over OTLP/gRPC to an OTLP sink in \
                the benchmark that takes each export and counts its spans (the sidecar and policy-mgr \
                pay for their telemetry, the collector's work stays out of the figure), or to --otlp \
                when given.
                """)

        @Option(help: "Seconds of load per handler (half as long again one event at a time).")
        var seconds = 5.0

        @Option(help: "Events outstanding at once for the events/s figure.")
        var inFlight = 8

        @Option(help: "The Python with the SDK installed (default: .venv/bin/python, as 'make setup' makes it).")
        var python = ".venv/bin/python"

        @Option(help: "Redis (HOST:PORT or socket path).")
        var redis = "127.0.0.1:16379"

        @Option(help: "Where spans are exported (HOST:PORT or socket path; default: the benchmark's own OTLP sink).")
        var otlp: String?

        func run() async throws {
            guard FileManager.default.isExecutableFile(atPath: python) else {
                throw ValidationError("\(python) is not there; run 'make setup' (it makes .venv with the SDK) or pass --python")
            }
            var settings = HandlerBenchmark.Settings(executable: selfExecutable(), python: python)
            settings.seconds = seconds
            settings.inFlight = inFlight
            settings.redis = redis
            settings.otlp = otlp
            try await HandlerBenchmark.run(settings) { print($0) }
        }
    }

    struct Datapath: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-packet cost of the eBPF datapath with 1 and 1,024 rules (needs root: namespaces, eBPF).")

        @Option(help: "UDP packets sent per rule set.")
        var packets = 200_000

        @Option(help: "The compiled datapath (built by scripts/build-bpf.sh).")
        var object: String?

        func run() throws {
            try DatapathBenchmark.run(
                objectPath: object ?? BPFDatapath.defaultObjectPath(), packets: packets) { print($0) }
        }
    }

    struct Proxy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Requests/s and latency through a proxy: how the node steers into it (root), or the http-proxy μsrv itself.",
            discussion: """
                --mode steering (the default; needs root): a client opens a new connection per \
                request to the origin's address; the node steers them into the proxy pod either with \
                the datapath's tc redirect or with iptables (a mangle mark on the node, policy \
                routing, TPROXY in the pod), to the same listener. The modes alternate, and a run \
                with no steering is the reference.

                --mode microservice: keep-alive clients fetch --response-bytes from the origin \
                directly and through the http-proxy μsrv in explicit mode (no handlers), alternately; \
                prints requests/s and p50/p99 latency of each, the ratio, and the p99 the proxy adds. \
                The proxy writes its state to --redis and exports its spans over OTLP/gRPC to an OTLP \
                sink in the benchmark that takes each export and counts its spans (so the proxy pays \
                for its telemetry while the collector's own work, measured by 'bench collector --otlp', \
                stays off the two cores being compared), or to --otlp when given (e.g. a collector).
                """)

        enum Mode: String, ExpressibleByArgument, CaseIterable { case steering, microservice }

        @Option(help: "What to measure: steering or microservice.")
        var mode: Mode = .steering

        @Option(help: "Seconds per mode and round.")
        var seconds: Double = 5

        @Option(help: "Concurrent client threads (default: 4 for steering, 8 for microservice).")
        var clients: Int?

        @Option(help: "Rounds (each runs every mode once).")
        var rounds = 2

        @Option(help: "The compiled datapath (built by scripts/build-bpf.sh; steering).")
        var object: String?

        @Option(help: "Response size (microservice).")
        var responseBytes = 10_240

        @Option(help: "Redis for the proxy's session state (microservice).")
        var redis = "127.0.0.1:16379"

        @Option(help: "Where the proxy exports its spans (microservice; default: the benchmark's own OTLP sink).")
        var otlp: String?

        func validate() throws {
            guard seconds > 0, clients ?? 1 > 0, rounds > 0, responseBytes >= 0 else {
                throw ValidationError("--seconds, --clients and --rounds must be above zero")
            }
        }

        func run() throws {
            switch mode {
            case .steering:
                try ProxyBenchmark.run(
                    objectPath: object ?? BPFDatapath.defaultObjectPath(), seconds: seconds, clients: clients ?? 4,
                    rounds: rounds
                ) { print($0) }
            case .microservice:
                var settings = MicroserviceProxyBenchmark.Settings(executable: selfExecutable())
                settings.seconds = seconds
                settings.clients = clients ?? 8
                settings.rounds = rounds
                settings.responseBytes = responseBytes
                settings.redis = redis
                settings.otlp = otlp
                try MicroserviceProxyBenchmark.run(settings) { print($0) }
            }
        }
    }

    struct Filters: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "ns per record of the record rules: none, filters/default.rules, and 100 rules.")

        @Option(help: "Records to run through each rule set.")
        var records = 200_000

        @Option(help: "The default rule file.")
        var defaultRules = "filters/default.rules"

        func run() throws {
            let text = try String(contentsOfFile: defaultRules, encoding: .utf8)
            try FilterBenchmark.run(defaultRules: text, records: records) { print($0) }
        }
    }

    struct Collector: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The collector's throughput: fed over OTLP by another process (--otlp), or its pipeline in process vs raw librdkafka.",
            discussion: """
                With --otlp: a collector process shipping to the broker, fed as users feed it by a separate \
                generator process (OTLP/gRPC export requests of 512 spans with the attributes an OpenTelemetry \
                SDK sets, the sessions' Redis writes, their flow events served as a Datapath Manager serves them), until the broker \
                acknowledged every record. Prints spans/s per collector CPU-second (its own CPU time), its \
                peak RSS, and the floor in the same run: decoding the same requests and encoding the same \
                records once, with no pipeline. Targets: >= 0.5x the floor, RSS <= 150 MB. Needs \
                'edgetrail infra up' (the broker and Redis).
                Without --otlp: the pipeline in this process against raw librdkafka producing the same messages.
                """)

        @Option(help: "The broker (started by 'edgetrail infra up').")
        var brokers = "127.0.0.1:19092"

        @Flag(help: "Feed a collector process over OTLP/gRPC from a separate generator process.")
        var otlp = false

        @Option(help: "Redis the sessions' state is written to (--otlp).")
        var redis = "127.0.0.1:16379"

        @Option(help: "Synthetic cookies (default 100,000; with --otlp 50,000, each 8 spans, 2 flow events, 2 snapshots).")
        var cookies: Int?

        @Option(help: "Export calls in flight at once (--otlp), as several SDKs would.")
        var concurrency = 4

        @Option(help: "Scratch folder for the journal and spool (removed after).")
        var workDir = ".run/bench-collector"

        func run() async throws {
            if otlp {
                var settings = OTLPCollectorBenchmark.Settings(executable: selfExecutable())
                settings.brokers = brokers
                settings.redis = redis
                settings.cookies = cookies ?? 50_000
                settings.concurrency = concurrency
                settings.workDirectory = workDir + "-otlp"
                try await OTLPCollectorBenchmark.run(settings) { print($0) }
            } else {
                try CollectorBenchmark.run(brokers: brokers, cookies: cookies ?? 100_000, workDirectory: workDir) { print($0) }
            }
        }
    }

    /// The generator process of `bench collector --otlp`.
    struct OTLPLoadCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "otlp-load", abstract: "Send the OTLP load of 'bench collector --otlp' (its generator process).",
            shouldDisplay: false)

        @Option(help: "The collector's OTLP receiver, HOST:PORT or a socket path.")
        var target: String

        @Option(help: "Redis for the sessions' state, HOST:PORT or a socket path.")
        var redis = "127.0.0.1:16379"

        @Option(help: "Where to serve the sessions' flow events, as a Datapath Manager does (a Unix socket path).")
        var flows: String

        @Option(help: "Cookies.")
        var cookies = 50_000

        @Option(help: "Export calls in flight at once.")
        var concurrency = 4

        func run() async throws {
            let target = try Address.endpoint(self.target, option: "--target")
            let redis = try Address.endpoint(self.redis, option: "--redis")
            let load = OTLPLoad(cookies: cookies)
            let feed = FlowFeed()
            try await feed.serve(on: flows) {
                // Unbuffered: the benchmark waits for this line on a pipe.
                FileHandle.standardOutput.write(Data("serving flow events on \(flows)\n".utf8))
                // Sends once the collector follows the flow events and takes OTLP.
                while !feed.followed || !SocketProbe.isListening(target) {
                    try await Task.sleep(for: .milliseconds(50))
                }
                try await load.send(to: target, redis: redis, flows: feed, concurrency: concurrency) { printError("  generator: \($0)") }
                // Serves on until stopped, so the collector never sees its flow source go away.
                try await Task.sleep(for: .seconds(24 * 3600))
            }
        }
    }

    struct Central: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "p50/p99 of GET /v1/cookies/{cookie} for random cookies in a large SQLite store.")

        @Option(help: "Cookies in the store (11 records each); an existing store at --store is reused.")
        var cookies = 1_000_000

        @Option(help: "Measured requests.")
        var requests = 2000

        @Option(help: "The SQLite file (kept between runs: loading 1,000,000 cookies takes minutes).")
        var store = ".run/bench-central.sqlite"

        @Option(help: "Port for the API under test.")
        var port = 17071

        func run() async throws {
            try await CentralBenchmark.run(
                cookies: cookies, requests: requests, storePath: store, port: port, print: { print($0) })
        }
    }
}

/// This program's own path, to start more of it as child processes.
func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
