import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailFilters
import EdgetrailKafka
import EdgetrailNet
import EdgetrailProto
import EdgetrailRuntime
import EdgetrailTelemetry
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SwiftProtobuf
import UnixSignals

/// Where central reads from, stores to and answers on.
public struct CentralConfiguration: Sendable {
    public var brokers: String
    public var topic = "edgetrail.telemetry"
    public var groupID = "edgetrail-central"
    /// `sqlite:PATH` or `postgres://…`.
    public var store: String
    public var host = "127.0.0.1"
    public var port = 7070
    /// How long sessions are kept after their last record (nanoseconds); nil keeps them for good.
    public var retainNanoseconds: UInt64?
    /// How often the retention sweep runs.
    public var retentionInterval: Duration = .seconds(60)
    /// Where filter rule sets are published and collectors report on them (`/v1/filters`).
    public var filtersTopic = "edgetrail.filters"
    public var filtersStatusTopic = "edgetrail.filters.status"

    public init(brokers: String, store: String) {
        self.brokers = brokers
        self.store = store
    }
}

/// What central has done; served on /metrics.
public struct CentralCounters: Sendable, Hashable {
    public var batches = 0
    public var inserted = 0
    public var duplicates = 0
    /// Messages that were not a CookieBatch: skipped (and counted), never fatal.
    public var malformed = 0
    public var storeErrors = 0
    /// Sessions deleted because they were older than the retention.
    public var expired = 0
}

/// Central: consumes the topic in a consumer group, stores records per cookie idempotently, and
/// answers `GET /v1/cookies/{cookie}` (one reconstructed timeline) and `GET /v1/cookies?…`.
public final class Central: @unchecked Sendable {
    public let configuration: CentralConfiguration
    public let store: any RecordStore
    private let logger: Logger
    private let lock = NSLock()
    private var countersStorage = CentralCounters()
    private let stop = NSLock()
    private var stopRequested = false

    public init(configuration: CentralConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try ListenAddress.checkFree([ListenAddress(host: configuration.host, port: configuration.port, setting: "--listen")])
        self.store = try RecordStores.open(configuration.store)
        declareMetrics()
    }

    /// Central over a store already opened (benchmarks, tests).
    public init(configuration: CentralConfiguration, logger: Logger, store: any RecordStore) {
        self.configuration = configuration
        self.logger = logger
        self.store = store
        declareMetrics()
    }

    public var counters: CentralCounters { lock.withLock { countersStorage } }

    /// Batches as they are stored, for `GET /v1/live`.
    public let live = LiveFeed()

    /// Central's /metrics: the same registry and text format as the collector's.
    public let metrics = MetricsRegistry()

    private func declareMetrics() {
        metrics.declare("edgetrail_central_batches_total", .counter, help: "CookieBatches stored.")
        metrics.declare(
            "edgetrail_central_records_total", .counter,
            help: "Records stored, by outcome (a duplicate was already stored).")
        metrics.declare(
            "edgetrail_central_malformed_messages_total", .counter,
            help: "Messages that were not a CookieBatch (skipped).")
        metrics.declare("edgetrail_central_store_errors_total", .counter, help: "Failed store attempts (retried).")
        metrics.declare(
            "edgetrail_central_sessions_expired_total", .counter, help: "Sessions deleted because they were older than --retain.")
        metrics.declare(
            "edgetrail_central_partitions", .gauge, help: "Partitions of the topic the consumer group gave this instance.")
        metrics.declare(
            "edgetrail_central_partition_lag", .gauge,
            help: "Messages between this instance's position and the partition's end, by partition.")
        metrics.declare("edgetrail_central_lag", .gauge, help: "Messages this instance has yet to read, over its partitions.")
        publishMetrics()
    }

    private func publishMetrics() {
        let counters = self.counters
        metrics.set("edgetrail_central_batches_total", to: Double(counters.batches))
        metrics.set("edgetrail_central_records_total", [("outcome", "inserted")], to: Double(counters.inserted))
        metrics.set("edgetrail_central_records_total", [("outcome", "duplicate")], to: Double(counters.duplicates))
        metrics.set("edgetrail_central_malformed_messages_total", to: Double(counters.malformed))
        metrics.set("edgetrail_central_store_errors_total", to: Double(counters.storeErrors))
        metrics.set("edgetrail_central_sessions_expired_total", to: Double(counters.expired))
    }

    /// Consumes until stopped. Offsets are committed only after the batch is stored, so a crash
    /// redelivers rather than loses; the store ignores what it already has.
    public func consume() {
        var consumerConfiguration = KafkaConsumerConfiguration(
            brokers: configuration.brokers, groupID: configuration.groupID, topics: [configuration.topic])
        consumerConfiguration.autoCommit = false
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(configuration: consumerConfiguration)
        } catch {
            logger.error("cannot start the Kafka consumer", metadata: ["error": "\(error)"])
            return
        }
        defer { consumer.close() }
        var uncommitted = 0
        var lastCommit = Date()
        var lastPartitions = Date.distantPast
        while !stop.withLock({ stopRequested }) {
            if Date().timeIntervalSince(lastPartitions) >= 1 {
                publishPartitions(consumer.partitions())
                lastPartitions = Date()
            }
            let message: KafkaMessage?
            do {
                message = try consumer.poll(timeoutMilliseconds: 100)
            } catch {
                logger.warning("Kafka consumer error", metadata: ["error": "\(error)"])
                Thread.sleep(forTimeInterval: 0.5)
                continue
            }
            if let message {
                ingest(message)
                uncommitted += 1
            }
            if uncommitted > 0, uncommitted >= 500 || Date().timeIntervalSince(lastCommit) > 0.5 {
                do {
                    try consumer.commit()
                    uncommitted = 0
                    lastCommit = Date()
                } catch {
                    logger.warning("offset commit failed; will retry", metadata: ["error": "\(error)"])
                }
            }
        }
        if uncommitted > 0 { try? consumer.commit() }
    }

    public func stopConsuming() {
        stop.withLock { stopRequested = true }
    }

    /// Sessions deleted per transaction: small, so storing and queries go on in between.
    static let expiryBatch = 500

    /// Deletes every session whose last record is older than the retention at `now` (Unix ns),
    /// a few hundred per transaction, yielding between them; returns how many it deleted.
    @discardableResult
    public func expireOldSessions(now: UInt64) -> Int {
        guard let retain = configuration.retainNanoseconds, now > retain else { return 0 }
        let cutoff = now - retain
        var total = 0
        while !stop.withLock({ stopRequested }) {
            let deleted: Int
            do {
                deleted = try store.expire(endedBefore: cutoff, limit: Self.expiryBatch)
            } catch {
                logger.warning("deleting expired sessions failed; will retry", metadata: ["error": "\(error)"])
                break
            }
            total += deleted
            lock.withLock { countersStorage.expired += deleted }
            publishMetrics()
            guard deleted == Self.expiryBatch else { break }
            // Let waiting writers and readers in before the next transaction.
            Thread.sleep(forTimeInterval: 0.005)
        }
        if total > 0 {
            logger.notice("deleted sessions older than the retention", metadata: ["sessions": "\(total)", "cutoff_ns": "\(cutoff)"])
        }
        return total
    }

    /// The retention sweep, every `retentionInterval`, until stopped.
    func sweep() {
        while !stop.withLock({ stopRequested }) {
            expireOldSessions(now: UInt64(Date().timeIntervalSince1970 * 1e9))
            let interval = configuration.retentionInterval
            let deadline = Date().addingTimeInterval(Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
            while Date() < deadline, !stop.withLock({ stopRequested }) { Thread.sleep(forTimeInterval: 0.1) }
        }
    }

    /// A retention like `7d`, `12h`, `30m`, `90s` or `2w`, in nanoseconds.
    public static func retention(_ text: String) -> UInt64? {
        let units: [(String, Double)] = [("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
        for (suffix, seconds) in units where text.hasSuffix(suffix) {
            let digits = text.dropLast(suffix.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Double(digits), value > 0,
                value * seconds <= 100 * 365 * 86400
            else { return nil }
            return UInt64(value * seconds * 1e9)
        }
        return nil
    }

    /// Which partitions this instance holds and how far behind it is, on /metrics.
    func publishPartitions(_ partitions: [KafkaConsumer.PartitionState]) {
        metrics.set("edgetrail_central_partitions", to: Double(partitions.count))
        metrics.replace(
            "edgetrail_central_partition_lag",
            with: partitions.map { ([("topic", $0.topic), ("partition", String($0.partition))], Double($0.lag)) })
        metrics.set("edgetrail_central_lag", to: Double(partitions.reduce(0) { $0 + $1.lag }))
    }

    /// Stores one message; a malformed one is counted and skipped, a store failure retried.
    func ingest(_ message: KafkaMessage) {
        defer { publishMetrics() }
        let batch: Edgetrail_V1_CookieBatch
        do {
            batch = try Edgetrail_V1_CookieBatch(serializedBytes: message.value)
        } catch {
            lock.withLock { countersStorage.malformed += 1 }
            logger.warning(
                "skipped a message that is not a CookieBatch",
                metadata: ["partition": "\(message.partition)", "offset": "\(message.offset)", "error": "\(error)"])
            return
        }
        var attempt = 0
        while true {
            do {
                let result = try store.store(batch)
                if result.inserted > 0 { live.publish(batch) }
                lock.withLock {
                    countersStorage.batches += 1
                    countersStorage.inserted += result.inserted
                    countersStorage.duplicates += result.duplicates
                }
                return
            } catch {
                attempt += 1
                lock.withLock { countersStorage.storeErrors += 1 }
                logger.warning(
                    "storing a batch failed; retrying", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                if stop.withLock({ stopRequested }) { return }
                Thread.sleep(forTimeInterval: min(5, 0.1 * Double(attempt)))
            }
        }
    }

    /// The HTTP API as a Hummingbird router.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        let store = self.store
        router.get("/v1/cookies/:cookie") { _, context -> Response in
            let text = context.parameters.get("cookie") ?? ""
            guard let cookie = Cookie(hex: text) else {
                return Self.json(.badRequest, ["error": "'\(text)' is not a cookie; write it as 16 hex digits"])
            }
            let records = try await Blocking.run { try store.records(cookie: cookie.rawValue) }
            guard !records.isEmpty else {
                return Self.json(.notFound, ["error": "no records for cookie \(cookie.hex)"])
            }
            return Self.json(.ok, CookieTimeline(cookie: cookie, records: records))
        }
        router.get("/v1/cookies") { request, _ -> Response in
            let query: CookieQuery
            switch Self.cookieQuery(request) {
            case .success(let parsed): query = parsed
            case .failure(let refusal): return refusal.response
            }
            return Self.json(.ok, ["cookies": try await Blocking.run { try store.cookies(query) }])
        }
        router.get("/v1/capture") { request, _ -> Response in
            let query: CookieQuery
            switch Self.cookieQuery(request) {
            case .success(let parsed): query = parsed
            case .failure(let refusal): return refusal.response
            }
            let frames = try await Blocking.run { try Self.capture(store, query) }
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: frames)))
        }
        router.get("/v1/graph") { request, _ -> Response in
            let query: CookieQuery
            switch Self.cookieQuery(request) {
            case .success(let parsed): query = parsed
            case .failure(let refusal): return refusal.response
            }
            guard query.cnf != nil else { return Self.json(.badRequest, ["error": "name the CNF: /v1/graph?cnf=NAME"]) }
            let graph = try await Blocking.run {
                ServiceGraph(
                    try store.cookies(query).compactMap { summary -> CookieTimeline? in
                        guard let cookie = Cookie(hex: summary.cookie) else { return nil }
                        return CookieTimeline(cookie: cookie, records: try store.records(cookie: cookie.rawValue))
                    })
            }
            return Self.json(.ok, graph)
        }
        let (brokers, filtersTopic, statusTopic) = (configuration.brokers, configuration.filtersTopic, configuration.filtersStatusTopic)
        router.get("/v1/filters") { request, _ -> Response in
            let name = request.uri.queryParameters["name"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
            do {
                let rollouts = try await Blocking.run {
                    try Self.filterRollouts(
                        published: KafkaTopicReader.readAll(brokers: brokers, topic: filtersTopic).map(\.value),
                        reports: KafkaTopicReader.readAll(brokers: brokers, topic: statusTopic).map(\.value), name: name)
                }
                return Self.json(.ok, rollouts)
            } catch {
                return Self.json(.serviceUnavailable, ["error": "cannot read the filter topics at \(brokers): \(error)"])
            }
        }
        let live = self.live
        router.get("/v1/live") { request, _ -> Response in
            let cnf = request.uri.queryParameters["cnf"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
            let events = live.subscribe(cnf: cnf)
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store"],
                body: ResponseBody { writer in
                    // A comment first, so the reader knows it is subscribed before anything is stored.
                    try await writer.write(ByteBuffer(string: ": live sessions\(cnf.map { " of " + $0 } ?? "")\n\n"))
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    // The stream ends when central shuts down, so a SIGTERM never waits on a reader.
                    for try await event in events.cancelOnGracefulShutdown() {
                        guard !event.sessions.isEmpty || event.lost > 0 else {
                            try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
                            continue
                        }
                        let data = try encoder.encode(event)
                        try await writer.write(ByteBuffer(string: "event: sessions\ndata: " + String(decoding: data, as: UTF8.self) + "\n\n"))
                    }
                    try await writer.finish(nil)
                })
        }
        let metrics = self.metrics
        router.get("/metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        router.get("/healthz") { _, _ in "ok\n" }
        return router
    }

    /// A 400 answer, as an error a `Result` can carry.
    struct Refusal: Error {
        var response: Response
    }

    /// The listing query in a request's URL, or the 400 that says what to write instead.
    static func cookieQuery(_ request: Request) -> Result<CookieQuery, Refusal> {
        var parameters: [String: String] = [:]
        for (name, value) in request.uri.queryParameters { parameters[String(name)] = String(value) }
        do {
            return .success(try CookieQuery(parameters: parameters))
        } catch {
            return .failure(Refusal(response: json(.badRequest, ["error": error.message])))
        }
    }

    /// The cookies `query` lists, newest first, each as one batch of all its stored records, in
    /// capture-file frames: recent real traffic for a filter dry-run. The records are what was
    /// shipped, so rules that were active at the edge have already been applied to them.
    static func capture(_ store: any RecordStore, _ query: CookieQuery) throws -> [UInt8] {
        var frames: [UInt8] = []
        for summary in try store.cookies(query) {
            guard let cookie = Cookie(hex: summary.cookie) else { continue }
            var batch = Edgetrail_V1_CookieBatch()
            batch.cookie = cookie.rawValue
            batch.cnf = summary.cnf
            batch.node = summary.node
            batch.final = true
            batch.records = try store.records(cookie: cookie.rawValue)
            frames += try batch.captureFrame()
        }
        return frames
    }

    /// The newest version of each rule set (or of `name`) and each node's last answer on it.
    static func filterRollouts(published: [[UInt8]], reports: [[UInt8]], name: String?) -> FilterRollouts {
        let sets = PublishedRuleSet.newest(published).values.filter { name == nil || $0.name == name }
        let answers = reports.compactMap { try? JSONDecoder().decode(RuleSetStatus.self, from: Data($0)) }
        return FilterRollouts(
            rollouts: sets.sorted { $0.name < $1.name }.map { set in
                let last = RuleSetStatus.lastPerNode(answers.filter { $0.name == set.name })
                return FilterRollouts.Rollout(
                    name: set.name, version: set.version, selector: set.selector.description, author: set.author,
                    publishedAtNs: set.publishedAtNs,
                    nodes: last.keys.sorted().map { node in
                        let answer = last[node]!
                        return FilterRollouts.Answer(
                            node: node, cnf: answer.cnf, version: answer.version, outcome: answer.outcome.rawValue, errors: answer.errors,
                            atNs: answer.atNs)
                    })
            })
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Runs the consumer and the HTTP API until SIGINT/SIGTERM.
    public func run() async throws {
        try await makeServiceGroup(signals: [.sigterm, .sigint]).run()
    }

    /// Central's services as a group; `triggerGracefulShutdown()` stops it like a signal.
    public func makeServiceGroup(signals: [UnixSignal]) -> ServiceGroup {
        var appLogger = logger
        appLogger.logLevel = .warning
        let app = Application(
            router: router(), configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
            logger: appLogger)
        let consumer = ThreadService(name: "central-consumer", run: { self.consume() }, stop: { self.stopConsuming() })
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: consumer, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "consumer"),
            .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "api"),
        ]
        if configuration.retainNanoseconds != nil {
            // Its own thread: a sweep never holds up the consumer or the API.
            let retention = ThreadService(name: "central-retention", run: { self.sweep() }, stop: { self.stopConsuming() })
            services.append(.init(service: retention, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "retention"))
        }
        return ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: signals, logger: logger))
    }
}
