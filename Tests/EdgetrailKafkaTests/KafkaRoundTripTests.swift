import EdgetrailKafka
import EdgetrailProto
import EdgetrailInfra
import EdgetrailTestRecords
import EdgetrailTesting
import Foundation
import SwiftProtobuf
import Testing

@Suite("Kafka through librdkafka and the broker", .serialized)
struct KafkaRoundTripTests {
    @Test("10,000 batches keyed by 500 cookies all come back, in order per cookie")
    func tenThousandRecordsInOrderPerKey() async throws {
        try await TestInfra.with([.broker]) { configuration in
            let topic = "edgetrail.test.\(UInt32.random(in: 0...UInt32.max))"
            let cookies = (0..<500).map { _ in UInt64.random(in: 1...UInt64.max) }
            let perCookie = 20

            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: configuration.brokers))
            var acknowledged = 0
            var failures: [String] = []
            var id: UInt64 = 0
            for seq in 0..<perCookie {
                for cookie in cookies {
                    let batch = TestRecords.batch(
                        cookie: cookie, seq: UInt32(seq), final: false, cnf: "", node: "",
                        [TestRecords.span(cookie: cookie, trace: nil, id: nil, operation: "request \(seq)")])
                    id += 1
                    try producer.send(
                        topic: topic, key: Array(String(format: "%016llx", cookie).utf8),
                        value: try batch.serializedBytes(), id: id)
                    for report in producer.poll() {
                        if let error = report.error { failures.append(error) } else { acknowledged += 1 }
                    }
                }
            }
            for report in producer.flush(timeoutMilliseconds: 30_000) {
                if let error = report.error { failures.append(error) } else { acknowledged += 1 }
            }
            #expect(failures.isEmpty, "delivery failures: \(failures.prefix(3))")
            #expect(acknowledged == 500 * perCookie)

            // The poll loop blocks: on a thread of its own, off the cooperative pool other suites share.
            let (seen, count, keyMismatches) = try await onThread { () throws -> ([UInt64: [UInt32]], Int, Int) in
                let consumer = try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        brokers: configuration.brokers, groupID: "test-\(topic)", topics: [topic]))
                defer { consumer.close() }
                var seen: [UInt64: [UInt32]] = [:]
                var count = 0
                var keyMismatches = 0
                let deadline = Date().addingTimeInterval(90)
                while count < 500 * perCookie, Date() < deadline {
                    guard let message = try consumer.poll(timeoutMilliseconds: 500) else { continue }
                    let batch = try Edgetrail_V1_CookieBatch(serializedBytes: message.value)
                    if String(decoding: message.key, as: UTF8.self) != String(format: "%016llx", batch.cookie) {
                        keyMismatches += 1
                    }
                    seen[batch.cookie, default: []].append(batch.seq)
                    count += 1
                }
                return (seen, count, keyMismatches)
            }
            #expect(count == 500 * perCookie)
            #expect(keyMismatches == 0)
            // What a consumer holds, and how far behind it is, once it has read everything.
            let partitions = try await onThread { () throws -> [KafkaConsumer.PartitionState] in
                let consumer = try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        brokers: configuration.brokers, groupID: "lag-\(topic)", topics: [topic]))
                defer { consumer.close() }
                var read = 0
                let deadline = Date().addingTimeInterval(90)
                while read < 500 * perCookie, Date() < deadline {
                    if try consumer.poll(timeoutMilliseconds: 500) != nil { read += 1 }
                }
                // The end is learnt from fetches: poll on until every partition has reported one.
                var states = consumer.partitions()
                while states.contains(where: { $0.highWatermark < 0 }), Date() < deadline {
                    _ = try consumer.poll(timeoutMilliseconds: 200)
                    states = consumer.partitions()
                }
                return states
            }
            #expect(!partitions.isEmpty)
            #expect(partitions.allSatisfy { $0.topic == topic && $0.lag == 0 && $0.position == $0.highWatermark })
            #expect(partitions.reduce(0) { $0 + $1.highWatermark } == Int64(500 * perCookie))
            #expect(Set(seen.keys) == Set(cookies))
            let outOfOrder = seen.filter { $0.value != (0..<UInt32(perCookie)).map { $0 } }
            #expect(outOfOrder.isEmpty, "\(outOfOrder.count) cookies arrived out of order or incomplete")
        }
    }

    @Test("a topic is created with the partitions asked for; asked again, it is found as it is")
    func ensureTopic() async throws {
        try await TestInfra.with([.broker]) { configuration in
            let topic = "edgetrail.partitions.\(UInt32.random(in: 0...UInt32.max))"
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: configuration.brokers))
            let (first, count, second) = try await onThread { () throws -> (TopicOutcome, Int, TopicOutcome) in
                let first = try producer.ensureTopic(topic, partitions: 7)
                let count = try producer.partitionCount(topic)
                return (first, count, try producer.ensureTopic(topic, partitions: 3))
            }
            #expect(first == .created(partitions: 7))
            #expect(count == 7)
            // An existing topic is never changed: asking for 3 finds the 7 it has.
            #expect(second == .existed(partitions: 7))
        }
    }

    @Test("asking a broker that is not there fails as unreachable, within the timeout")
    func ensureTopicUnreachable() async throws {
        var configuration = KafkaProducerConfiguration(brokers: "127.0.0.1:1")
        configuration.properties["log_level"] = "0"
        let producer = try KafkaProducer(configuration: configuration)
        let started = Date()
        let outcome = try await onThread { () -> Result<TopicOutcome, KafkaError> in
            do throws(KafkaError) {
                return .success(try producer.ensureTopic("nowhere", partitions: 2, timeoutMilliseconds: 1000))
            } catch {
                return .failure(error)
            }
        }
        guard case .failure(let error) = outcome else {
            Issue.record("a topic was made on a broker that is not there")
            return
        }
        #expect(error.isUnreachable, "\(error)")
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test("a bad client setting is refused with its name")
    func badSetting() {
        var configuration = KafkaProducerConfiguration(brokers: "127.0.0.1:1")
        configuration.compression = "brotli"
        #expect {
            _ = try KafkaProducer(configuration: configuration)
        } throws: { error in
            "\(error)".contains("bad Kafka client setting compression.type=brotli")
        }
    }

    @Test("the loaded librdkafka is the 2.16 runtime the broker needs")
    func runtimeVersion() throws {
        try KafkaRuntime.check()
        #expect(KafkaRuntime.versionString.hasPrefix("2.16"))
    }
}
