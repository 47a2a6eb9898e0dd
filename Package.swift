// swift-tools-version:6.0
//
// One target per architectural part; dependencies point inward to EdgetrailCore,
// which holds the domain vocabulary and does no I/O.
import PackageDescription

let package = Package(
    name: "edgetrail",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "edgetrail", targets: ["edgetrail"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // MARK: C libraries (Debian packages, found through pkg-config)
        .systemLibrary(
            name: "CRdKafka", path: "Sources/CRdKafka", pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(
            name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(
            name: "CBPF", path: "Sources/CBPF", pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev"])]),

        // MARK: Core: vocabulary shared by every part, no I/O
        .target(name: "EdgetrailCore"),

        // MARK: Wire schema (generated; `make proto`)
        .target(
            name: "EdgetrailProto",
            dependencies: [
                "EdgetrailCore",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            exclude: ["Generated/SOURCES.sha256"]),

        // MARK: OTLP trace schema (generated from the pinned opentelemetry-proto; `make proto`)
        .target(
            name: "EdgetrailOTLP",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            exclude: ["Generated/SOURCE"]),

        // MARK: Reading operator-written YAML with file:line:column diagnostics
        .target(
            name: "EdgetrailYAML",
            dependencies: ["EdgetrailCore", .product(name: "Yams", package: "Yams")]),

        // MARK: CNF specification: model, YAML reader, validation
        .target(
            name: "EdgetrailCNF",
            dependencies: ["EdgetrailCore", "EdgetrailYAML", .product(name: "Yams", package: "Yams")]),

        // MARK: Blocking socket helpers shared by the clients and the service manager
        .target(name: "EdgetrailNet", dependencies: ["EdgetrailCore"]),

        // MARK: Clients of the real parts
        .target(
            name: "EdgetrailKafka",
            dependencies: ["EdgetrailCore", "CRdKafka", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "EdgetrailRedis",
            dependencies: ["EdgetrailCore", "CHiredis"]),
        .target(
            name: "EdgetrailClamAV",
            dependencies: ["EdgetrailNet"]),

        // MARK: Telemetry processing without I/O: the cookie join
        .target(
            name: "EdgetrailTelemetry",
            dependencies: [
                "EdgetrailCore", "EdgetrailProto", "EdgetrailOTLP",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),

        // MARK: The filter rule language: parser, checker (lint)
        .target(
            name: "EdgetrailFilters",
            dependencies: [
                "EdgetrailCore", "EdgetrailProto", "EdgetrailTelemetry",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),

        // MARK: The eBPF datapath: loads bpf/.output/datapath.bpf.o through libbpf, attaches it,
        // fills its maps, reads its flow events
        .target(
            name: "EdgetrailDatapath",
            dependencies: ["EdgetrailCore", "CBPF", .product(name: "Logging", package: "swift-log")]),

        // MARK: The Datapath Manager's API: its client and wire messages (no libbpf); what the
        // collector, the CLI and the node agent link to talk to a manager
        .target(
            name: "EdgetrailDatapathAPI",
            dependencies: [
                "EdgetrailCore", "EdgetrailProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]),

        // MARK: The Datapath Manager: owns the datapath on a node, serves it over gRPC (Unix socket)
        .target(
            name: "EdgetrailDatapathManager",
            dependencies: [
                "EdgetrailCore", "EdgetrailDatapath", "EdgetrailDatapathAPI", "EdgetrailProto", "EdgetrailRuntime", "EdgetrailYAML",
                "EdgetrailNet",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]),

        // MARK: The edge node's namespace plumbing (node, client, origin, pods), where the node
        // agent lives; it reaches the datapath only through the Datapath Manager's API
        .target(name: "EdgetrailNode", dependencies: ["EdgetrailCore", "EdgetrailNet"]),

        // MARK: The node agent: a CNF as pods on an edge node (plans, updates, restarts)
        .target(
            name: "EdgetrailNodeAgent",
            dependencies: [
                "EdgetrailCore", "EdgetrailCNF", "EdgetrailNode", "EdgetrailNet", "EdgetrailInfra", "EdgetrailProto",
                "EdgetrailDatapathAPI", "EdgetrailRuntime",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // MARK: The node agent's API: a client for `edgetrail cnf …` and the portal
        .target(
            name: "EdgetrailNodeAgentAPI",
            dependencies: [
                "EdgetrailProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]),

        // MARK: Durable on-disk queue (the collector's spool in front of Kafka)
        .target(name: "EdgetrailSpool", dependencies: ["CZlib"]),

        // MARK: Running long-lived parts: blocking loops as lifecycle services
        .target(
            name: "EdgetrailRuntime",
            dependencies: [
                "EdgetrailCore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),

        // MARK: The μsrv kit: event stream and sync verdicts, session context from gRPC metadata,
        // session state in Redis, spans over OTLP; every μsrv is a thin target on it
        .target(
            name: "EdgetrailMicroservice",
            dependencies: [
                "EdgetrailCore", "EdgetrailCNF", "EdgetrailProto", "EdgetrailOTLP", "EdgetrailRedis", "EdgetrailRuntime",
                "EdgetrailNet",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]),

        // MARK: The four sample μsrvs, each a thin target on the kit
        .target(
            name: "EdgetrailHTTPProxy",
            dependencies: [
                "EdgetrailMicroservice", "EdgetrailCore", "EdgetrailProto", "EdgetrailDatapathAPI", "EdgetrailRuntime",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "EdgetrailPolicyManager",
            dependencies: [
                "EdgetrailMicroservice", "EdgetrailCore", "EdgetrailProto", "EdgetrailYAML",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ]),
        .target(
            name: "EdgetrailContentInspect",
            dependencies: [
                "EdgetrailMicroservice", "EdgetrailCore", "EdgetrailProto",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ]),
        .target(
            name: "EdgetrailAntiVirus",
            dependencies: [
                "EdgetrailMicroservice", "EdgetrailCore", "EdgetrailProto", "EdgetrailClamAV", "EdgetrailRuntime",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ]),

        // MARK: A real HTTP origin for local edge nodes, tests and benchmarks
        .target(
            name: "EdgetrailOrigin",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // MARK: The edge collector: sources -> join -> filters -> Kafka sink
        .target(
            name: "EdgetrailCollector",
            dependencies: [
                "EdgetrailCore", "EdgetrailProto", "EdgetrailOTLP", "EdgetrailTelemetry", "EdgetrailSpool",
                "EdgetrailKafka", "EdgetrailRedis", "EdgetrailYAML", "EdgetrailRuntime", "EdgetrailFilters",
                "EdgetrailDatapathAPI", "EdgetrailNet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ]),

        // MARK: Central's API: the reconstruction contract (timelines, listings, queries) and a client;
        // what the CLI and the portal read central through, without linking its stores
        .target(
            name: "EdgetrailCentralAPI",
            dependencies: [
                "EdgetrailCore", "EdgetrailProto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]),

        // MARK: Central: consumes the topic, stores records per cookie, answers queries
        .target(
            name: "EdgetrailCentral",
            dependencies: [
                "EdgetrailCore", "EdgetrailCentralAPI", "EdgetrailProto", "EdgetrailTelemetry", "EdgetrailKafka", "EdgetrailRuntime", "EdgetrailNet",
                "EdgetrailFilters", "CLibPQ",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]),

        // MARK: The operator portal: server-rendered pages and the JSON API under /api/v1. It reads
        // central through its API target and the node through the agent's and the manager's API
        // targets; it links none of their implementations.
        .target(
            name: "EdgetrailPortal",
            dependencies: [
                "EdgetrailCore", "EdgetrailCNF", "EdgetrailCentralAPI", "EdgetrailNodeAgentAPI", "EdgetrailDatapathAPI",
                "EdgetrailProto", "EdgetrailRuntime", "EdgetrailFilters",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]),

        // MARK: Benchmarks that print figures (edgetrail bench …)
        .target(
            name: "EdgetrailBenchmarks",
            dependencies: [
                "EdgetrailCore", "EdgetrailProto", "EdgetrailTelemetry", "EdgetrailKafka", "EdgetrailCollector",
                "EdgetrailCentral", "EdgetrailFilters", "EdgetrailDatapath", "EdgetrailRuntime", "EdgetrailNode", "EdgetrailNet",
                "EdgetrailMicroservice", "EdgetrailPortal", "EdgetrailCentralAPI", "EdgetrailOTLP", "EdgetrailRedis",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]),

        // MARK: Local infrastructure (redis-server, the broker, clamd, PostgreSQL): what the parts rely on
        .target(
            name: "EdgetrailInfra",
            dependencies: ["EdgetrailCore", "EdgetrailNet"]),

        // MARK: Command line
        .target(
            name: "EdgetrailCLI",
            dependencies: [
                "EdgetrailCore", "EdgetrailCNF", "EdgetrailInfra", "EdgetrailKafka", "EdgetrailCollector", "EdgetrailCentral",
                "EdgetrailCentralAPI", "EdgetrailTelemetry",
                "EdgetrailBenchmarks", "EdgetrailOTLP", "EdgetrailNet", "EdgetrailFilters", "EdgetrailDatapath", "EdgetrailNode",
                "EdgetrailDatapathManager", "EdgetrailDatapathAPI", "EdgetrailRuntime", "EdgetrailNodeAgent", "EdgetrailNodeAgentAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "EdgetrailRedis", "EdgetrailClamAV", "EdgetrailProto", "EdgetrailYAML",
                "EdgetrailMicroservice", "EdgetrailHTTPProxy", "EdgetrailPolicyManager", "EdgetrailContentInspect",
                "EdgetrailAntiVirus", "EdgetrailOrigin", "EdgetrailPortal",
                .product(name: "Yams", package: "Yams"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "edgetrail",
            dependencies: [
                "EdgetrailCLI", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),

        // MARK: Test support: starts the real services tests need, in a private run directory
        .target(
            name: "EdgetrailTesting",
            dependencies: ["EdgetrailInfra", "EdgetrailNet"],
            path: "Tests/EdgetrailTesting"),
        // MARK: Test support: one builder of records and batches for every suite
        .target(name: "EdgetrailTestRecords", dependencies: ["EdgetrailProto"], path: "Tests/EdgetrailTestRecords"),

        // MARK: Tests
        .testTarget(name: "EdgetrailCoreTests", dependencies: ["EdgetrailCore"]),
        .testTarget(name: "EdgetrailCNFTests", dependencies: ["EdgetrailCNF"]),
        .testTarget(
            name: "EdgetrailNodeAgentTests", dependencies: ["EdgetrailNodeAgent", "EdgetrailCNF", "EdgetrailCore", "EdgetrailNode"]),
        .testTarget(name: "EdgetrailSpoolTests", dependencies: ["EdgetrailSpool"]),
        .testTarget(
            name: "EdgetrailRuntimeTests",
            dependencies: [
                "EdgetrailRuntime", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "EdgetrailDatapathTests",
            dependencies: ["EdgetrailDatapath", "EdgetrailCore", "EdgetrailTesting", "EdgetrailNode", "EdgetrailNet"]),
        .testTarget(
            name: "EdgetrailDatapathManagerTests",
            dependencies: [
                "EdgetrailDatapathManager", "EdgetrailDatapathAPI", "EdgetrailDatapath", "EdgetrailCore", "EdgetrailProto",
                "EdgetrailNode", "EdgetrailNet",
                "EdgetrailTesting",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "EdgetrailFiltersTests",
            dependencies: ["EdgetrailTestRecords", "EdgetrailFilters", "EdgetrailCore", "EdgetrailProto", "EdgetrailTelemetry"]),
        .testTarget(
            name: "EdgetrailCollectorTests",
            dependencies: ["EdgetrailTestRecords", 
                "EdgetrailCollector", "EdgetrailKafka", "EdgetrailProto", "EdgetrailTesting", "EdgetrailRuntime",
                "EdgetrailDatapath", "EdgetrailDatapathManager", "EdgetrailDatapathAPI", "EdgetrailNode", "EdgetrailNet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .testTarget(
            name: "EdgetrailCentralTests",
            dependencies: ["EdgetrailTestRecords", "EdgetrailCentral", "EdgetrailCentralAPI", "EdgetrailProto", "EdgetrailTesting", "EdgetrailCore"]),
        .testTarget(
            name: "EdgetrailCentralAPITests", dependencies: ["EdgetrailTestRecords", "EdgetrailCentralAPI", "EdgetrailProto", "EdgetrailCore"]),
        .testTarget(
            name: "EdgetrailTelemetryTests", dependencies: ["EdgetrailTestRecords", "EdgetrailTelemetry", "EdgetrailProto", "EdgetrailOTLP"]),
        .testTarget(
            name: "EdgetrailProtoTests",
            dependencies: ["EdgetrailProto", "EdgetrailCore"]),
        .testTarget(
            name: "EdgetrailInfraTests",
            dependencies: ["EdgetrailInfra", "EdgetrailTesting"]),
        .testTarget(
            name: "EdgetrailKafkaTests",
            dependencies: ["EdgetrailTestRecords", 
                "EdgetrailKafka", "EdgetrailProto", "EdgetrailTesting",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .testTarget(
            name: "EdgetrailRedisTests",
            dependencies: ["EdgetrailRedis", "EdgetrailTesting"]),
        .testTarget(
            name: "EdgetrailClamAVTests",
            dependencies: ["EdgetrailClamAV", "EdgetrailTesting"]),
        .testTarget(
            name: "EdgetrailMicroserviceTests",
            dependencies: [
                "EdgetrailMicroservice", "EdgetrailHTTPProxy", "EdgetrailPolicyManager", "EdgetrailContentInspect",
                "EdgetrailAntiVirus", "EdgetrailOrigin", "EdgetrailClamAV", "EdgetrailRedis", "EdgetrailCore", "EdgetrailCNF",
                "EdgetrailProto", "EdgetrailOTLP", "EdgetrailYAML", "EdgetrailTesting", "EdgetrailInfra", "EdgetrailNet",
                "EdgetrailNode", "EdgetrailDatapath",
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]),
        .testTarget(
            name: "EdgetrailPortalTests",
            dependencies: [
                "EdgetrailPortal", "EdgetrailCentralAPI", "EdgetrailCentral", "EdgetrailCore", "EdgetrailProto",
                "EdgetrailTestRecords",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]),
        .testTarget(
            name: "EdgetrailCLITests",
            dependencies: ["EdgetrailCLI"]),
    ],
    swiftLanguageModes: [.v6]
)
