import EdgetrailFilters
import EdgetrailNet
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// A running edge collector: its pipeline and every configured source, the OTLP servers and the
/// /metrics endpoint, as services in one group that shuts down gracefully on SIGINT/SIGTERM —
/// sources first, then the pipeline, which releases what the join holds and waits (bounded) for
/// the broker's acknowledgements.
public struct Collector: Sendable {
    public let configuration: CollectorConfiguration
    public let pipeline: CollectorPipeline
    private let logger: Logger

    public init(configuration: CollectorConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        var addresses: [ListenAddress] = []
        if let otlp = configuration.otlp {
            addresses.append(ListenAddress(host: otlp.host, port: otlp.port, setting: "sources.otlp.listen"))
        }
        if let host = configuration.metricsHost {
            addresses.append(ListenAddress(host: host, port: configuration.metricsPort, setting: "metrics.listen"))
        }
        try ListenAddress.checkFree(addresses)
        var sinkLogger = logger
        sinkLogger[metadataKey: "component"] = "kafka-sink"
        let sink = try KafkaSink(configuration: configuration.kafka, logger: sinkLogger)
        self.pipeline = try CollectorPipeline(configuration: configuration, sink: sink, logger: logger)
    }

    /// Runs until SIGTERM or SIGINT.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        try await makeServiceGroup(signals: signals).run()
    }

    /// The collector's services as a group; `triggerGracefulShutdown()` stops it like a signal.
    /// Each source is a service handing records to the pipeline; the pipeline runs on its thread.
    public func makeServiceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) throws -> ServiceGroup {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(
                service: ThreadService(name: "pipeline", run: { pipeline.run() }, stop: { pipeline.stop() }),
                successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "pipeline")
        ]
        let (cnf, node) = (configuration.join.cnf, configuration.join.node)
        func componentLogger(_ component: String) -> Logger {
            var logger = self.logger
            logger[metadataKey: "component"] = "\(component)"
            return logger
        }
        if let otlp = configuration.otlp {
            let source = OTLPSource(configuration: otlp, consumer: pipeline, cnf: cnf, node: node, logger: componentLogger("otlp-source"))
            services.append(.init(service: source, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "otlp"))
        }
        if let snapshots = configuration.snapshots {
            let source = RedisSnapshotSource(configuration: snapshots, consumer: pipeline, logger: componentLogger("snapshot-source"))
            services.append(.init(service: source, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "snapshots"))
        }
        switch configuration.flows {
        case .datapath(let socket, let statsInterval):
            let source = DatapathFlowSource(
                socket: socket, consumer: pipeline, metrics: pipeline.metrics, cnf: cnf, node: node,
                logger: componentLogger("flow-source"), statsInterval: .nanoseconds(Int64(statsInterval)))
            services.append(.init(service: source, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "flows"))
        case .replay(let flows):
            let source = FlowReplaySource(
                configuration: flows, consumer: pipeline, cnf: cnf, node: node, logger: componentLogger("flow-source"))
            // A replay that reached the end of its file is done; the collector goes on.
            services.append(.init(service: source, successTerminationBehavior: .ignore, serviceName: "flows"))
        case nil:
            break
        }
        if let published = configuration.publishedRules {
            var sources = Set<RecordKind>()
            if configuration.otlp != nil { sources.insert(.span) }
            if configuration.flows != nil { sources.insert(.flow) }
            if configuration.snapshots != nil { sources.insert(.snapshot) }
            let pipeline = self.pipeline
            let follower = RuleSetFollower(
                settings: published, brokers: configuration.kafka.brokers, node: node, cnf: cnf, sources: sources,
                dataDirectory: configuration.dataDirectory, logger: componentLogger("published-rules"),
                apply: { files, version in pipeline.applyPublished(files, version: version) },
                counted: { applied in pipeline.count(applied ? .rulesReloadApplied : .rulesReloadRefused) })
            // The set applied last time is in force before the first record, broker or not.
            follower.restoreKept()
            services.append(
                .init(
                    service: ThreadService(name: "published-rules", run: { follower.run() }, stop: { follower.stop() }),
                    successTerminationBehavior: .ignore, serviceName: "published-rules"))
        }
        if let host = configuration.metricsHost {
            let metrics = pipeline.metrics
            let router = Router()
            router.get("/metrics") { _, _ -> Response in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
            }
            var appLogger = logger
            appLogger.logLevel = .warning
            let app = Application(
                router: router, configuration: .init(address: .hostname(host, port: configuration.metricsPort)),
                logger: appLogger)
            services.append(.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "metrics"))
            logger.info("metrics", metadata: ["listen": "http://\(host):\(configuration.metricsPort)/metrics"])
        }
        return ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: signals, logger: logger))
    }
}
