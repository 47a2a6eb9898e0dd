import EdgetrailRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// The span source of the collector: the OTLP/gRPC trace receiver on its TCP address and, when
/// configured, on a Unix socket (which crosses network namespaces), handing spans to `consumer`.
/// Graceful shutdown stops accepting and lets open exports finish.
public struct OTLPSource: Service {
    let configuration: OTLPSourceConfiguration
    let consumer: any RecordConsumer
    let receiver: OTLPReceiver
    let logger: Logger

    public init(
        configuration: OTLPSourceConfiguration, consumer: any RecordConsumer, cnf: String, node: String, logger: Logger
    ) {
        self.configuration = configuration
        self.consumer = consumer
        self.logger = logger
        self.receiver = OTLPReceiver(consumer: consumer, configuration: configuration, cnf: cnf, node: node, logger: logger)
    }

    public func run() async throws {
        let refusals = OTLPRefusals(consumer: consumer, logger: logger)
        let watch = OTLPWireWatch(consumer: consumer, logger: logger, maxRequestBytes: configuration.maxRequestBytes)
        let transport = HTTP2ServerTransport.Posix.Config.defaults {
            $0.rpc.maxRequestPayloadSize = configuration.maxRequestBytes
            $0.channelDebuggingCallbacks = watch.callbacks
        }
        var addresses: [GRPCNIOTransportCore.SocketAddress] = [.ipv4(host: configuration.host, port: configuration.port)]
        if let socketPath = configuration.socketPath {
            try? FileManager.default.removeItem(atPath: socketPath)
            addresses.append(.unixDomainSocket(path: socketPath))
        }
        logger.info(
            "OTLP/gRPC receiver",
            metadata: ["listen": "\(configuration.host):\(configuration.port)", "socket": "\(configuration.socketPath ?? "-")"])
        try await withThrowingDiscardingTaskGroup { group in
            for address in addresses {
                let server = GRPCServer(
                    transport: .http2NIOPosix(address: address, transportSecurity: .plaintext, config: transport),
                    services: [receiver], interceptors: [refusals])
                group.addTask { try await GRPCServerService(server: server).run() }
            }
        }
    }
}
