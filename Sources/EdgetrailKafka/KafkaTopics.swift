import CRdKafka

/// What `ensureTopic` found or did.
public enum TopicOutcome: Sendable, Hashable {
    case created(partitions: Int)
    case existed(partitions: Int)

    public var partitions: Int {
        switch self {
        case .created(let count), .existed(let count): count
        }
    }
}

extension KafkaError {
    /// The broker could not be reached or did not answer in time: worth trying again later.
    public var isUnreachable: Bool {
        guard let code else { return false }
        return [RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE]
            .contains { $0.rawValue == code }
    }
}

extension KafkaProducer {
    /// Creates `topic` with `partitions` partitions (the broker's default replication) unless it
    /// exists; either way says how many partitions it has. An existing topic is left as it is:
    /// Kafka can add partitions but never remove them, and adding moves keys to other partitions.
    ///
    /// - Parameters:
    ///   - configs: topic settings for a new topic, e.g. `cleanup.policy=compact` (the broker
    ///     checks them; one it does not know fails the creation).
    public func ensureTopic(
        _ topic: String, partitions: Int, configs: [String: String] = [:], timeoutMilliseconds: Int32 = 10_000
    ) throws(KafkaError) -> TopicOutcome {
        var errorText = [CChar](repeating: 0, count: 512)
        guard let newTopic = rd_kafka_NewTopic_new(topic, Int32(partitions), -1, &errorText, errorText.count) else {
            throw KafkaError("cannot ask for topic \(topic) with \(partitions) partitions: \(cString(errorText))")
        }
        defer { rd_kafka_NewTopic_destroy(newTopic) }
        for (name, value) in configs.sorted(by: { $0.key < $1.key }) {
            _ = rd_kafka_NewTopic_set_config(newTopic, name, value)
        }
        guard let queue = rd_kafka_queue_new(handle) else { throw KafkaError("cannot make a queue for the topic request") }
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMilliseconds, &errorText, errorText.count)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMilliseconds, &errorText, errorText.count)
        var topics: [OpaquePointer?] = [newTopic]
        rd_kafka_CreateTopics(handle, &topics, 1, options, queue)
        guard let event = rd_kafka_queue_poll(queue, Int32(timeoutMilliseconds) + 2000) else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT, context: "creating topic \(topic)")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        guard eventError == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(code: eventError, context: "creating topic \(topic)")
        }
        var count = 0
        guard let result = rd_kafka_event_CreateTopics_result(event),
            let results = rd_kafka_CreateTopics_result_topics(result, &count), count > 0, let first = results[0]
        else { throw KafkaError("the broker's answer to creating topic \(topic) named no topic") }
        let code = rd_kafka_topic_result_error(first)
        switch code {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            return .created(partitions: partitions)
        case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
            return .existed(partitions: try partitionCount(topic, timeoutMilliseconds: timeoutMilliseconds))
        default:
            let detail = rd_kafka_topic_result_error_string(first).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(code))
            throw KafkaError("creating topic \(topic): \(detail)", code: code.rawValue)
        }
    }

    /// How many partitions `topic` has, as the broker's metadata says.
    public func partitionCount(_ topic: String, timeoutMilliseconds: Int32 = 10_000) throws(KafkaError) -> Int {
        let handleForTopic = try topicHandle(topic)
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 0, handleForTopic, &metadata, timeoutMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(code: error, context: "reading the metadata of topic \(topic)")
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0 else { throw KafkaError("the broker has no topic \(topic)") }
        let entry = metadata.pointee.topics[0]
        guard entry.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(code: entry.err, context: "topic \(topic)") }
        return Int(entry.partition_cnt)
    }
}
