import ArgumentParser
import EdgetrailCentral
import Logging

struct CentralCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "central",
        abstract: "Consume the telemetry topic, store records per cookie, and answer queries over HTTP.",
        discussion: """
            Reads CookieBatches in a consumer group, stores each record once (a redelivered batch is \
            not stored twice), and serves:
              GET /v1/cookies/{cookie}   one cookie's reconstructed timeline (JSON)
              GET /v1/cookies?cnf=&service=&since=&until=&error=true&limit=
              GET /v1/graph?cnf=&limit=  a CNF's service graph from its recent sessions' spans
              GET /v1/live?cnf=          sessions as they are stored (server-sent events, batched)
              GET /v1/capture?cnf=&limit=   recent sessions as a capture (for filter dry runs)
              GET /v1/filters?name=      published filter rule sets and each node's answer
              GET /metrics, GET /healthz
            'edgetrail trace COOKIE' prints a timeline from it.
            """)

    @Option(help: "Kafka-protocol brokers, HOST:PORT.")
    var brokers = "127.0.0.1:19092"

    @Option(help: "Where to store: sqlite:PATH or postgres://USER@HOST:PORT/DATABASE.")
    var store = "sqlite:.run/central.sqlite"

    @Option(help: "Topic to consume.")
    var topic = "edgetrail.telemetry"

    @Option(help: "Consumer group.")
    var group = "edgetrail-central"

    @Option(help: "HTTP address of the query API, HOST:PORT.")
    var listen = "127.0.0.1:7070"

    @Option(help: "Keep sessions this long after their last record, then delete them in the background (e.g. 7d, 12h, 30m; default: keep).")
    var retain: String?

    @Option(help: .hidden)
    var retentionInterval: Double = 60

    @Option(help: "Where filter rule sets are published ('edgetrail filters publish'), for /v1/filters.")
    var filtersTopic = "edgetrail.filters"

    @Option(help: "Where collectors report on them.")
    var filtersStatusTopic = "edgetrail.filters.status"

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        let address = try Address.hostPort(listen, option: "--listen", ports: 1...65535)
        var configuration = CentralConfiguration(brokers: brokers, store: store)
        configuration.topic = topic
        configuration.groupID = group
        configuration.filtersTopic = filtersTopic
        configuration.filtersStatusTopic = filtersStatusTopic
        configuration.host = address.host
        configuration.port = address.port
        if let retain {
            guard let nanoseconds = Central.retention(retain) else {
                throw ValidationError("--retain '\(retain)' is not a duration; write it like 7d, 12h, 30m or 90s")
            }
            configuration.retainNanoseconds = nanoseconds
            configuration.retentionInterval = .milliseconds(Int64(max(0.1, retentionInterval) * 1000))
        }
        let logger = makeLogger(label: "edgetrail.central", component: "central", level: logLevel)
        do {
            let central = try Central(configuration: configuration, logger: logger)
            logger.notice(
                "central started",
                metadata: ["brokers": "\(brokers)", "topic": "\(topic)", "store": "\(store)",
                           "api": "http://\(listen)"])
            try await central.run()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }
}
