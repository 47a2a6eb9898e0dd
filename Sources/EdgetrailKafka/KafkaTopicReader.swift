import CRdKafka
import Foundation

/// Reads a whole topic from its start to its end as of the call, outside any consumer group
/// (nothing is committed): what a control topic's readers need, e.g. the newest version of every
/// published rule set, or every collector's last report.
public enum KafkaTopicReader {
    /// Every message of `topic`, partition by partition in offset order. A topic that does not
    /// exist has none. Throws when the broker does not answer within `timeoutMilliseconds`.
    public static func readAll(brokers: String, topic: String, timeoutMilliseconds: Int32 = 10_000) throws(KafkaError) -> [KafkaMessage] {
        try KafkaRuntime.check()
        let conf = try makeConfiguration([
            ("bootstrap.servers", brokers), ("group.id", "edgetrail-reader"), ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"), ("allow.auto.create.topics", "false"),
        ])
        var errorText = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("could not create a Kafka reader: \(cString(errorText))")
        }
        defer { rd_kafka_destroy(handle) }
        rd_kafka_poll_set_consumer(handle)

        // The topic's partitions (none: the topic does not exist yet).
        var metadata: UnsafePointer<rd_kafka_metadata>?
        guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
            throw KafkaError(code: rd_kafka_last_error(), context: "topic \(topic)")
        }
        let error = rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeoutMilliseconds)
        rd_kafka_topic_destroy(topicHandle)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(code: error, context: "reading the metadata of topic \(topic)")
        }
        var partitions: [Int32] = []
        if metadata.pointee.topic_cnt > 0, metadata.pointee.topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR {
            let entry = metadata.pointee.topics[0]
            partitions = (0..<Int(entry.partition_cnt)).map { entry.partitions[$0].id }
        }
        rd_kafka_metadata_destroy(metadata)

        // Where each partition ends now; only those with messages are read.
        var ends: [Int32: Int64] = [:]
        for partition in partitions {
            var low: Int64 = 0
            var high: Int64 = 0
            let answer = rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, timeoutMilliseconds)
            guard answer == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(code: answer, context: "reading where partition \(partition) of \(topic) ends")
            }
            if high > low { ends[partition] = high }
        }
        guard !ends.isEmpty else { return [] }
        let list = rd_kafka_topic_partition_list_new(Int32(ends.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for partition in ends.keys.sorted() {
            rd_kafka_topic_partition_list_add(list, topic, partition)?.pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
        }
        let assigned = rd_kafka_assign(handle, list)
        guard assigned == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: assigned, context: "reading \(topic)") }

        var messages: [KafkaMessage] = []
        var remaining = ends
        let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
        while !remaining.isEmpty {
            guard Date() < deadline else {
                throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT, context: "reading \(topic) to its end")
            }
            guard let message = rd_kafka_consumer_poll(handle, 200) else { continue }
            defer { rd_kafka_message_destroy(message) }
            let value = message.pointee
            if value.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                remaining[value.partition] = nil
                continue
            }
            guard value.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
            messages.append(KafkaMessage(value, topic: topic))
            if let end = remaining[value.partition], value.offset + 1 >= end { remaining[value.partition] = nil }
        }
        return messages.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
    }
}
