#if canImport(Glibc)
import EdgetrailTestRecords
import Glibc
#endif
import EdgetrailCollector
import EdgetrailKafka
import EdgetrailProto
import EdgetrailInfra
import EdgetrailSpool
import EdgetrailTesting
import Foundation
import Logging
import SwiftProtobuf
import Testing

private func batch(_ cookie: UInt64, seq: UInt32 = 0, records: Int = 3) -> Edgetrail_V1_CookieBatch {
    TestRecords.batch(
        cookie: cookie, seq: seq, cnf: "", node: "",
        (0..<records).map { TestRecords.span(cookie: cookie, id: UInt8(truncatingIfNeeded: $0), operation: "op\($0)") })
}

/// Reads the topic from the start until `expected` messages arrived or `seconds` passed; returns
/// `sink.drain` waits on librdkafka for up to the timeout: on a thread of its own, off the
/// cooperative pool other suites share.
private func drain(_ sink: KafkaSink, _ milliseconds: Int) async throws -> Bool {
    nonisolated(unsafe) let sink = sink
    return try await onThread { try sink.drain(timeoutMilliseconds: milliseconds) }
}

/// (cookie, seq, key) of each message in arrival order.
private func consume(
    _ configuration: InfraConfiguration, topic: String, expected: Int, seconds: Double = 60
) throws -> [(UInt64, UInt32, String)] {
    try consumeMessages(configuration, topic: topic, expected: expected, seconds: seconds).map { message in
        let decoded = try Edgetrail_V1_CookieBatch(serializedBytes: message.value)
        return (decoded.cookie, decoded.seq, String(decoding: message.key, as: UTF8.self))
    }
}

/// The topic's messages from the start, until `expected` arrived or `seconds` passed, and a
/// little longer to catch duplicates arriving after the expected count.
private func consumeMessages(
    _ configuration: InfraConfiguration, topic: String, expected: Int, seconds: Double = 60
) throws -> [KafkaMessage] {
    let consumer = try KafkaConsumer(
        configuration: KafkaConsumerConfiguration(
            brokers: configuration.brokers, groupID: "check-\(UUID().uuidString)", topics: [topic]))
    defer { consumer.close() }
    var seen: [KafkaMessage] = []
    let deadline = Date().addingTimeInterval(seconds)
    while seen.count < expected, Date() < deadline {
        if let message = try consumer.poll(timeoutMilliseconds: 300) { seen.append(message) }
    }
    let extra = Date().addingTimeInterval(1.5)
    while Date() < extra {
        if let message = try consumer.poll(timeoutMilliseconds: 300) { seen.append(message) }
    }
    return seen
}

private func sinkConfiguration(_ services: InfraConfiguration, topic: String) -> KafkaSinkConfiguration {
    var configuration = KafkaSinkConfiguration(
        brokers: services.brokers, spoolDirectory: services.runDirectory + "/spool")
    configuration.topic = topic
    return configuration
}

private var logger: Logger {
    var logger = Logger(label: "test.kafka-sink")
    logger.logLevel = .error
    return logger
}

private func pid(of kind: InfraKind, _ configuration: InfraConfiguration) throws -> pid_t {
    guard let pid = LocalInfra(configuration: configuration).status([kind]).first?.pid else {
        throw InfraError("\(kind.rawValue) is not running from \(configuration.runDirectory)")
    }
    return pid
}

@Suite("Kafka sink with its spool, against the real broker", .serialized)
struct KafkaSinkTests {
    @Test("every shipped batch is acknowledged, leaves the spool, and is on the topic keyed by its cookie")
    func shipsEverything() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "sink-\(UUID().uuidString.prefix(8))"
            let sink = try KafkaSink(configuration: sinkConfiguration(services, topic: topic), logger: logger)
            for cookie in 1...2000 as ClosedRange<UInt64> {
                try sink.ship(batch(cookie))
                if cookie % 100 == 0 { try sink.pump() }
            }
            #expect(try await drain(sink, 30_000))
            #expect(sink.counters.acknowledged == 2000)
            #expect(sink.counters.acknowledgedRecords == 6000)
            #expect(sink.spoolBytes == 0 && sink.pendingBatches == 0)
            let seen = try await onThread { try consume(services, topic: topic, expected: 2000) }
            #expect(seen.count == 2000)
            #expect(Set(seen.map(\.0)) == Set(1...2000))
            #expect(seen.allSatisfy { $0.2 == String(format: "%016llx", $0.0) })
        }
    }

    @Test("the sink creates its topic with the configured partitions before the first batch, and keys spread cookies over them")
    func createsTopicWithPartitions() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "sink-partitions-\(UUID().uuidString.prefix(8))"
            var configuration = sinkConfiguration(services, topic: topic)
            configuration.partitions = 5
            let sink = try KafkaSink(configuration: configuration, logger: logger)
            for cookie in 1...500 as ClosedRange<UInt64> { try sink.ship(batch(cookie)) }
            #expect(try await drain(sink, 30_000))
            #expect(sink.counters.acknowledged == 500)
            let messages = try await onThread { try consumeMessages(services, topic: topic, expected: 500) }
            #expect(messages.count == 500)
            #expect(Set(messages.map(\.partition)) == Set(0..<5), "a broker-made topic would have its default count")
            // One cookie, one partition.
            var partitionOf: [String: Int32] = [:]
            for message in messages {
                let key = String(decoding: message.key, as: UTF8.self)
                #expect(partitionOf[key, default: message.partition] == message.partition)
                partitionOf[key] = message.partition
            }
        }
    }

    @Test("while the broker is paused batches wait in the spool; once it is back every one arrives once")
    func brokerOutage() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "outage-\(UUID().uuidString.prefix(8))"
            let sink = try KafkaSink(configuration: sinkConfiguration(services, topic: topic), logger: logger)
            try sink.ship(batch(1))
            #expect(try await drain(sink, 20_000))
            let broker = try pid(of: .broker, services)
            kill(broker, SIGSTOP)
            for cookie in 2...1001 as ClosedRange<UInt64> { try sink.ship(batch(cookie)) }
            let pauseEnds = Date().addingTimeInterval(5)
            while Date() < pauseEnds { try sink.pump(timeoutMilliseconds: 100) }
            #expect(sink.pendingBatches == 1000, "nothing can be acknowledged while the broker is paused")
            #expect(sink.spoolBytes > 0)
            kill(broker, SIGCONT)
            #expect(try await drain(sink, 60_000))
            let seen = try await onThread { try consume(services, topic: topic, expected: 1001) }
            #expect(seen.count == 1001, "every batch arrives, none twice")
            #expect(Set(seen.map(\.0)) == Set(1...1001))
        }
    }

    @Test("past the in-flight limit batches wait on disk, shipping never blocks, and all arrive once")
    func backlogDuringOutage() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "backlog-\(UUID().uuidString.prefix(8))"
            var configuration = sinkConfiguration(services, topic: topic)
            configuration.maxInFlightBatches = 50
            let sink = try KafkaSink(configuration: configuration, logger: logger)
            let broker = try pid(of: .broker, services)
            kill(broker, SIGSTOP)
            let started = Date()
            for cookie in 1...500 as ClosedRange<UInt64> { try sink.ship(batch(cookie)) }
            try sink.pump(timeoutMilliseconds: 100)
            #expect(Date().timeIntervalSince(started) < 5, "shipping does not wait for the broker")
            #expect(sink.backlogBatches == 450)
            #expect(sink.pendingBatches == 500)
            kill(broker, SIGCONT)
            #expect(try await drain(sink, 60_000))
            #expect(sink.backlogBatches == 0)
            let seen = try await onThread { try consume(services, topic: topic, expected: 500) }
            #expect(seen.count == 500, "every batch arrives, none twice")
            #expect(Set(seen.map(\.0)) == Set(1...500))
        }
    }

    @Test("batches a sink had not got acknowledged are sent by the next sink opened on the same spool")
    func recoveryAfterCrash() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "crash-\(UUID().uuidString.prefix(8))"
            let broker = try pid(of: .broker, services)
            kill(broker, SIGSTOP)
            do {
                let doomed = try KafkaSink(configuration: sinkConfiguration(services, topic: topic), logger: logger)
                for cookie in 1...300 as ClosedRange<UInt64> { try doomed.ship(batch(cookie)) }
                #expect(doomed.pendingBatches == 300)
            }  // dropped without a drain: as if the collector had been killed
            kill(broker, SIGCONT)
            let sink = try KafkaSink(configuration: sinkConfiguration(services, topic: topic), logger: logger)
            #expect(sink.counters.resent == 300)
            #expect(try await drain(sink, 60_000))
            #expect(sink.spoolBytes == 0)
            let seen = try await onThread { try consume(services, topic: topic, expected: 300) }
            #expect(Set(seen.map(\.0)) == Set(1...300), "every batch arrives (a resend may repeat one)")
        }
    }

    @Test("after the broker restarts empty the sink reconnects and ships what comes next")
    func brokerRestartsEmpty() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "restart-\(UUID().uuidString.prefix(8))"
            let sink = try KafkaSink(configuration: sinkConfiguration(services, topic: topic), logger: logger)
            for cookie in 1...100 as ClosedRange<UInt64> { try sink.ship(batch(cookie)) }
            #expect(try await drain(sink, 20_000))
            let local = LocalInfra(configuration: services)
            local.down([.broker])
            for cookie in 101...200 as ClosedRange<UInt64> { try sink.ship(batch(cookie)) }
            try sink.pump(timeoutMilliseconds: 500)
            try local.up([.broker])
            #expect(try await drain(sink, 60_000), "producer restarts: \(sink.counters.producerRestarts)")
            let seen = try await onThread { try consume(services, topic: topic, expected: 100, seconds: 30) }
            #expect(Set(seen.map(\.0)) == Set(101...200), "the new, empty broker holds exactly the batches sent after the restart")
        }
    }

    @Test("a full spool refuses a batch, counts it, and keeps everything it already holds")
    func fullSpoolRefuses() async throws {
        try await TestInfra.with([.broker]) { services in
            var configuration = sinkConfiguration(services, topic: "full-\(UUID().uuidString.prefix(8))")
            configuration.spool.capacityBytes = 2_000
            let broker = try pid(of: .broker, services)
            kill(broker, SIGSTOP)
            defer { kill(broker, SIGCONT) }
            let sink = try KafkaSink(configuration: configuration, logger: logger)
            var refused = 0
            for cookie in 1...100 as ClosedRange<UInt64> {
                do { try sink.ship(batch(cookie)) } catch is SpoolError { refused += 1 }
            }
            #expect(refused > 0)
            #expect(sink.counters.refusedBatches == refused)
            #expect(sink.counters.refusedRecords == refused * 3)
            #expect(sink.pendingBatches == 100 - refused)
        }
    }

    @Test("a spooled batch too large for the broker is split until every piece fits and arrives; a record too large alone is dropped and counted; the sink starts regardless")
    func oversizedSpooledBatches() async throws {
        try await TestInfra.with([.broker]) { services in
            let topic = "oversize-\(UUID().uuidString.prefix(8))"
            let broker = try pid(of: .broker, services)
            // Spooled under a 1 MB limit while the broker is away, as an older collector would.
            kill(broker, SIGSTOP)
            do {
                let earlier = try KafkaSink(configuration: sinkConfiguration(services, topic: topic), logger: logger)
                var large = batch(1, records: 200)
                for index in large.records.indices { large.records[index].span.tags["body"] = String(repeating: "a", count: 1_000) }
                try earlier.ship(large)
                var single = batch(2, records: 1)
                single.records[0].span.tags["body"] = String(repeating: "b", count: 100_000)
                try earlier.ship(single)
            }
            kill(broker, SIGCONT)
            var configuration = sinkConfiguration(services, topic: topic)
            configuration.maxMessageBytes = 64 << 10
            let sink = try KafkaSink(configuration: configuration, logger: logger)
            #expect(try await drain(sink, 60_000), "nothing stays stuck in the spool")
            #expect(sink.spoolBytes == 0)
            #expect(sink.counters.splitBatches >= 3, "200 KB in pieces under 64 KiB takes at least three splits")
            #expect(sink.counters.tooLargeRecords == 1)
            let messages = try await onThread { try consumeMessages(services, topic: topic, expected: 4) }
            let batches = try messages.map { try Edgetrail_V1_CookieBatch(serializedBytes: $0.value) }
            #expect(messages.allSatisfy { $0.key.count + $0.value.count <= 64 << 10 })
            #expect(batches.allSatisfy { $0.cookie == 1 }, "the record too large alone never reaches the topic")
            #expect(messages.allSatisfy { String(decoding: $0.key, as: UTF8.self) == "0000000000000001" })
            let operations = batches.flatMap(\.records).map(\.span.operation)
            #expect(Set(operations) == Set((0..<200).map { "op\($0)" }), "every record of the split batch arrives")
        }
    }
}
