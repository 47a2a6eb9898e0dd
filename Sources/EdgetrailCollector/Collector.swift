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
        self.pipeline = try CollectorPipeline(configuration: configuration, logger: logger)
    }

    /// Runs until SIGTERM or SIGINT.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        try await makeServiceGroup(signals: signals).run()
    }

    /// The collector's services as a group; `triggerGracefulShutdown()` stops it like a signal.
    public func makeServiceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) throws -> ServiceGroup {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(
                service: ThreadService(name: "pipeline", run: { pipeline.run() }, stop: { pipeline.stop() }),
                successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "pipeline")
        ]
        if let otlp = configuration.otlp {
            let receiver = OTLPReceiver(pipeline: pipeline, configuration: otlp, logger: logger)
            let refusals = OTLPRefusals(pipeline: pipeline, logger: logger)
            let watch = OTLPWireWatch(pipeline: pipeline, logger: logger, maxRequestBytes: otlp.maxRequestBytes)
            let config = HTTP2ServerTransport.Posix.Config.defaults {
                $0.rpc.maxRequestPayloadSize = otlp.maxRequestBytes
                $0.channelDebuggingCallbacks = watch.callbacks
            }
            let tcp = GRPCServer(
                transport: .http2NIOPosix(
                    address: .ipv4(host: otlp.host, port: otlp.port), transportSecurity: .plaintext, config: config),
                services: [receiver], interceptors: [refusals])
            services.append(
                .init(
                    service: GRPCServerService(server: tcp), successTerminationBehavior: .gracefullyShutdownGroup,
                    serviceName: "otlp-tcp"))
            if let socketPath = otlp.socketPath {
                try? FileManager.default.removeItem(atPath: socketPath)
                let unix = GRPCServer(
                    transport: .http2NIOPosix(
                        address: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext, config: config),
                    services: [receiver], interceptors: [refusals])
                services.append(
                    .init(
                        service: GRPCServerService(server: unix), successTerminationBehavior: .gracefullyShutdownGroup,
                        serviceName: "otlp-unix"))
            }
            logger.info(
                "OTLP/gRPC receiver",
                metadata: ["listen": "\(otlp.host):\(otlp.port)", "socket": "\(otlp.socketPath ?? "-")"])
        }
        if let snapshots = configuration.snapshots {
            var sourceLogger = logger
            sourceLogger[metadataKey: "component"] = "snapshot-source"
            let source = RedisSnapshotSource(configuration: snapshots, logger: sourceLogger)
            let stop = StopFlag()
            let pipeline = self.pipeline
            let service = ThreadService(
                name: "snapshots",
                run: {
                    var reported = RedisSnapshotCounters()
                    while !stop.isSet {
                        let records = source.step(timeoutMilliseconds: 100)
                        if !records.isEmpty { _ = pipeline.accept(records, source: "snapshots", wait: true) }
                        let counters = source.counters
                        pipeline.count("snapshots", "malformed_key", counters.malformedKeys - reported.malformedKeys)
                        pipeline.count("snapshots", "unsupported_type", counters.unsupportedTypes - reported.unsupportedTypes)
                        pipeline.count("snapshots", "reconnect", counters.reconnects - reported.reconnects)
                        pipeline.count("snapshots", "value_truncated", counters.truncatedValues - reported.truncatedValues)
                        pipeline.count("snapshots", "repeat_skipped", counters.repeatsSkipped - reported.repeatsSkipped)
                        reported = counters
                    }
                }, stop: { stop.set() })
            services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "snapshots"))
        }
        switch configuration.flows {
        case .datapath(let socket, let statsInterval):
            var flowLogger = logger
            flowLogger[metadataKey: "component"] = "flow-source"
            let source = DatapathFlowSource(
                socket: socket, pipeline: pipeline, cnf: configuration.join.cnf, node: configuration.join.node,
                logger: flowLogger, statsInterval: .nanoseconds(Int64(statsInterval)))
            services.append(.init(service: source, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "flows"))
        case .replay(let flows):
            var flowLogger = logger
            flowLogger[metadataKey: "component"] = "flow-source"
            let sourceLogger = flowLogger
            let replay = FlowReplaySource(configuration: flows)
            let stop = StopFlag()
            let pipeline = self.pipeline
            let join = configuration.join
            let service = ThreadService(
                name: "flows",
                run: {
                    replay.run(
                        cnf: join.cnf, node: join.node, logger: sourceLogger, clock: wallClockNanoseconds,
                        shouldStop: { stop.isSet }
                    ) { records, lost, malformed in
                        _ = pipeline.accept(records, source: "flows", wait: true)
                        pipeline.count("flows", "datapath_lost_events", lost)
                        pipeline.count("flows", "malformed_line", malformed)
                    }
                }, stop: { stop.set() })
            // A replay that reached the end of its file is done; the collector goes on.
            services.append(.init(service: service, successTerminationBehavior: .ignore, serviceName: "flows"))
        case nil:
            break
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

/// A gRPC server as a service that stops accepting and finishes its RPCs on graceful shutdown.
struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await server.serve()
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}
