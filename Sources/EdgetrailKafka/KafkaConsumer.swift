import CRdKafka

/// One message read from a topic.
public struct KafkaMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]
    public var value: [UInt8]

    /// A copy of librdkafka's message (its key and payload leave with it).
    init(_ message: rd_kafka_message_t, topic: String) {
        self.topic = topic
        partition = message.partition
        offset = message.offset
        key = message.key.map { Array(UnsafeRawBufferPointer(start: $0, count: message.key_len)) } ?? []
        value = message.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: message.len)) } ?? []
    }
}

/// A librdkafka consumer in a consumer group, subscribed to the configured topics.
public final class KafkaConsumer: @unchecked Sendable {
    private let handle: OpaquePointer
    private var closed = false

    public init(configuration: KafkaConsumerConfiguration) throws(KafkaError) {
        try KafkaRuntime.check()
        let conf = try makeConfiguration(configuration.librdkafkaProperties)
        var errorText = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("could not create a Kafka consumer: \(cString(errorText))")
        }
        self.handle = handle
        rd_kafka_poll_set_consumer(handle)
        let list = rd_kafka_topic_partition_list_new(Int32(configuration.topics.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in configuration.topics {
            rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        }
        let error = rd_kafka_subscribe(handle, list)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_destroy(handle)
            throw KafkaError(code: error, context: "could not subscribe to \(configuration.topics)")
        }
    }

    deinit {
        close()
        rd_kafka_destroy(handle)
    }

    /// The next message, or `nil` when none arrived within the timeout. Transient conditions
    /// (end of partition, rebalances) return `nil`; errors the client cannot recover from throw.
    public func poll(timeoutMilliseconds: Int32) throws(KafkaError) -> KafkaMessage? {
        guard let message = rd_kafka_consumer_poll(handle, timeoutMilliseconds) else { return nil }
        defer { rd_kafka_message_destroy(message) }
        let value = message.pointee
        if value.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if value.err == RD_KAFKA_RESP_ERR__PARTITION_EOF || value.err == RD_KAFKA_RESP_ERR__TRANSPORT {
                return nil
            }
            if value.err == RD_KAFKA_RESP_ERR__FATAL || value.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC {
                throw KafkaError(code: value.err, context: "consumer")
            }
            return nil
        }
        return KafkaMessage(value, topic: value.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "")
    }

    /// Commits the offsets of the messages handed out so far, synchronously.
    public func commit() throws(KafkaError) {
        let error = rd_kafka_commit(handle, nil, 0)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR && error != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(code: error, context: "commit")
        }
    }

    /// One partition this consumer holds, where it is and how far behind.
    public struct PartitionState: Sendable, Hashable {
        public var topic: String
        public var partition: Int32
        /// The next offset it will read (-1 before it has read or been told one).
        public var position: Int64
        /// The partition's end as last seen in a fetch (-1 before the first).
        public var highWatermark: Int64
        /// Messages between its position and the end (0 when either is not known yet).
        public var lag: Int64 { position >= 0 && highWatermark >= 0 ? max(0, highWatermark - position) : 0 }
    }

    /// The partitions the group gave this consumer, each with its position and the end as last
    /// fetched. No broker round trip: cheap enough to call every second.
    public func partitions() -> [PartitionState] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_position(handle, list)
        var states: [PartitionState] = []
        for index in 0..<Int(list.pointee.cnt) {
            let element = list.pointee.elems[index]
            let topic = String(cString: element.topic)
            var low: Int64 = -1
            var high: Int64 = -1
            if rd_kafka_get_watermark_offsets(handle, element.topic, element.partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR {
                high = -1
            }
            states.append(PartitionState(topic: topic, partition: element.partition, position: element.offset, highWatermark: high))
        }
        return states.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
    }

    /// Leaves the group (committing when auto-commit is on). Called by deinit if not before.
    public func close() {
        guard !closed else { return }
        closed = true
        rd_kafka_consumer_close(handle)
    }
}
