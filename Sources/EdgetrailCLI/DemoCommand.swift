import ArgumentParser
import EdgetrailCNF
import EdgetrailClamAV
import EdgetrailCore
import EdgetrailKafka
import EdgetrailProto
import EdgetrailRedis
import EdgetrailServices
import Foundation
import SwiftProtobuf

/// The main job on embedded defaults: bring the local services up, validate the example CNF,
/// and show one session's data crossing each real part, then stop what it started.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Bring the local services up, validate the example CNF and exercise each real part.",
        discussion: """
            Starts Redis, the Kafka-protocol broker and clamd under the run directory, validates
            examples/edgesecurity/cnf.yaml, then for one session cookie: writes its state to Redis and
            sees the keyspace notification, ships a CookieBatch to the broker and reads it back, and
            has clamd scan an EICAR body and a clean one. Services it started are stopped at the end
            unless --keep-services is given.
            """)

    @OptionGroup var options: ServicesOptions

    @Option(help: "The CNF spec to validate.")
    var spec = "examples/edgesecurity/cnf.yaml"

    @Option(help: "Kafka topic to ship the sample batch to.")
    var topic = "edgetrail.telemetry"

    @Flag(help: "Leave the services running afterwards.")
    var keepServices = false

    func run() throws {
        let configuration = options.configuration
        let services = LocalServices(configuration: configuration)
        let alreadyUp = Set(services.status().filter(\.isUp).map(\.kind))
        step("starting local services in \(configuration.runDirectory)")
        do {
            try services.up(ServiceKind.defaults) { print("    \($0)") }
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        defer {
            if !keepServices {
                step("stopping the services this demo started")
                services.down(ServiceKind.defaults.filter { !alreadyUp.contains($0) }) { print("    \($0)") }
            }
        }
        for line in services.status(ServiceKind.defaults) { print("    \(line)") }

        step("validating \(spec)")
        do {
            let cnf = try CNFSpecReader.load(path: spec)
            print("    ok: CNF '\(cnf.name)' for node '\(cnf.node)'")
            for microservice in cnf.microservices {
                print("      μsrv \(microservice.name) (\(microservice.kind.rawValue)) publishes \(microservice.events.joined(separator: ", "))")
            }
            for handler in cnf.handlers {
                print("      handler \(handler.file) on \(handler.microservice).\(handler.event)")
            }
            for rule in cnf.datapath { print("      rule \(rule.shorthand)") }
        } catch {
            for diagnostic in error.diagnostics { print("    \(diagnostic)") }
            throw ExitCode.failure
        }

        let cookie = Cookie(UInt64.random(in: 1...UInt64.max))
        step("one session, cookie \(cookie)")
        do {
            try exerciseRedis(configuration: configuration, cookie: cookie)
            try exerciseBroker(configuration: configuration, cookie: cookie)
            try exerciseClamAV(configuration: configuration)
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        step("done")
    }

    private func step(_ text: String) { print("==> \(text)") }

    private func exerciseRedis(configuration: ServicesConfiguration, cookie: Cookie) throws {
        let subscriber = try RedisConnection(host: configuration.host, port: configuration.redisPort)
        try subscriber.command("PSUBSCRIBE", "__keyspace@0__:cookie:*")
        _ = try subscriber.nextReply(timeoutMilliseconds: 0)
        let writer = try RedisConnection(host: configuration.host, port: configuration.redisPort)
        let key = "\(cookie.redisKeyPrefix)http-proxy:session"
        try writer.command("HSET", key, "client", "10.200.0.2:41000", "origin", "10.201.0.2:80", "state", "open")
        guard let message = try subscriber.nextReply(timeoutMilliseconds: 5000),
            case .array(let parts) = message, parts.count == 4
        else {
            throw RedisError("no keyspace notification for \(key) within 5 s")
        }
        print("    redis: HSET \(key) -> notification '\(parts[3].text ?? "?")' on \(parts[2].text ?? "?")")
    }

    private func exerciseBroker(configuration: ServicesConfiguration, cookie: Cookie) throws {
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        var batch = Edgetrail_V1_CookieBatch()
        batch.cookie = cookie.rawValue
        batch.cnf = "edgesecurity"
        batch.node = "edge-1"
        batch.final = true
        batch.createdAtNs = now
        var span = Edgetrail_V1_Record()
        span.cookie = cookie.rawValue
        span.service = "http-proxy"
        span.span.operation = "request_received"
        span.span.startNs = now - 2_000_000
        span.span.endNs = now
        span.span.status = .ok
        var snapshot = Edgetrail_V1_Record()
        snapshot.cookie = cookie.rawValue
        snapshot.service = "http-proxy"
        snapshot.snapshot.key = "\(cookie.redisKeyPrefix)http-proxy:session"
        snapshot.snapshot.stringValue = Data("open".utf8)
        snapshot.snapshot.atNs = now
        batch.records = [span, snapshot]
        let bytes = try [UInt8](batch.serializedBytes() as Data)

        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: configuration.brokers))
        try producer.send(topic: topic, key: Array(cookie.hex.utf8), value: bytes, id: 1)
        let reports = producer.flush(timeoutMilliseconds: 15_000)
        guard let report = reports.first, report.error == nil else {
            throw KafkaError("the broker did not acknowledge the batch: \(reports.first?.error ?? "timed out")")
        }
        print("    broker: CookieBatch (\(bytes.count) bytes, 2 records) acknowledged at partition \(report.partition) offset \(report.offset)")

        var consumerConfiguration = KafkaConsumerConfiguration(
            brokers: configuration.brokers, groupID: "edgetrail-demo-\(cookie.hex)", topics: [topic])
        consumerConfiguration.autoOffsetReset = "earliest"
        let consumer = try KafkaConsumer(configuration: consumerConfiguration)
        defer { consumer.close() }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            guard let message = try consumer.poll(timeoutMilliseconds: 500) else { continue }
            guard message.key == Array(cookie.hex.utf8) else { continue }
            let decoded = try Edgetrail_V1_CookieBatch(serializedBytes: message.value)
            print("    broker: read it back in a consumer group: cookie \(Cookie(decoded.cookie)), \(decoded.records.count) records (\(decoded.records.map { $0.span.operation.isEmpty ? "snapshot" : "span \($0.span.operation)" }.joined(separator: ", ")))")
            return
        }
        throw KafkaError("the batch did not come back from the broker within 30 s")
    }

    private func exerciseClamAV(configuration: ServicesConfiguration) throws {
        let client = ClamAVClient(socketPath: configuration.clamdSocket)
        let eicar = Array(#"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.utf8)
        let infected = try client.scan(eicar)
        let clean = try client.scan(Array("<html>hello from the origin</html>".utf8))
        print("    clamd: EICAR body -> \(describe(infected)); clean body -> \(describe(clean))")
    }

    private func describe(_ verdict: ScanVerdict) -> String {
        switch verdict {
        case .clean: "clean"
        case .infected(let signature): "infected (\(signature))"
        }
    }
}
