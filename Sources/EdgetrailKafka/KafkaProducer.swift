import CRdKafka
import Synchronization

/// The broker's answer for one produced message.
public struct DeliveryReport: Sendable, Hashable {
    /// The id given to `send`.
    public var id: UInt64
    public var partition: Int32
    public var offset: Int64
    /// `nil` when the broker acknowledged the message.
    public var error: String?
    /// librdkafka's code for `error`.
    public var errorCode: Int32? = nil

    /// The message was larger than the broker (or the client's `message.max.bytes`) takes; sending
    /// it again can never succeed.
    public var isMessageTooLarge: Bool { errorCode == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue }
}

/// A librdkafka producer. Messages are handed over with `send` and acknowledged (or failed)
/// through `poll`, which returns the delivery reports that arrived since the last call.
public final class KafkaProducer: @unchecked Sendable {
    let handle: OpaquePointer
    private let reports = DeliveryReports()
    private let topics = Mutex<[String: OpaquePointer]>([:])

    public init(configuration: KafkaProducerConfiguration) throws(KafkaError) {
        try KafkaRuntime.check()
        let conf = try makeConfiguration(configuration.librdkafkaProperties)
        rd_kafka_conf_set_dr_msg_cb(conf, deliveryCallback)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(reports).toOpaque())
        var errorText = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("could not create a Kafka producer: \(cString(errorText))")
        }
        self.handle = handle
    }

    deinit {
        rd_kafka_flush(handle, 1000)
        topics.withLock { topics in
            for topic in topics.values { rd_kafka_topic_destroy(topic) }
        }
        rd_kafka_destroy(handle)
    }

    func topicHandle(_ name: String) throws(KafkaError) -> OpaquePointer {
        let result = topics.withLock { topics -> OpaquePointer? in
            if let existing = topics[name] { return existing }
            guard let created = rd_kafka_topic_new(handle, name, nil) else { return nil }
            topics[name] = created
            return created
        }
        guard let result else { throw KafkaError(code: rd_kafka_last_error(), context: "topic \(name)") }
        return result
    }

    /// Queues one message. When librdkafka's queue is full this polls (delivering reports to the
    /// next `poll`) until there is room, so it never drops a message.
    ///
    /// - Parameters:
    ///   - id: returned in the message's `DeliveryReport`; must not be 0.
    public func send(topic: String, key: [UInt8], value: [UInt8], id: UInt64) throws(KafkaError) {
        var message = key
        message += value
        try send(topic: topic, message: message, keyLength: key.count, id: id)
    }

    /// Like `send(topic:key:value:id:)` for a key and value stored back to back (as the spool
    /// keeps them), without copying them apart.
    public func send(topic: String, message: [UInt8], keyLength: Int, id: UInt64) throws(KafkaError) {
        precondition(id != 0, "delivery ids start at 1")
        precondition(keyLength <= message.count)
        let topicHandle = try topicHandle(topic)
        while true {
            let result = message.withUnsafeBytes { bytes in
                rd_kafka_produce(
                    topicHandle, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                    bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0 + keyLength) }, bytes.count - keyLength,
                    keyLength > 0 ? bytes.baseAddress : nil, keyLength, UnsafeMutableRawPointer(bitPattern: UInt(id)))
            }
            if result == 0 { return }
            let error = rd_kafka_last_error()
            guard error == RD_KAFKA_RESP_ERR__QUEUE_FULL else {
                throw KafkaError(code: error, context: "could not queue a message for \(topic)")
            }
            rd_kafka_poll(handle, 10)
        }
    }

    /// Serves librdkafka's callbacks for up to `timeoutMilliseconds` and returns the delivery
    /// reports that arrived.
    public func poll(timeoutMilliseconds: Int32 = 0) -> [DeliveryReport] {
        rd_kafka_poll(handle, timeoutMilliseconds)
        return reports.take()
    }

    /// The fatal error librdkafka raised, if any: the producer cannot continue (e.g. an idempotent
    /// producer whose sequence the broker no longer knows) and must be replaced.
    public var fatalError: String? {
        var errorText = [CChar](repeating: 0, count: 512)
        let code = rd_kafka_fatal_error(handle, &errorText, errorText.count)
        return code == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : cString(errorText)
    }

    /// True when a broker answers a metadata request within the timeout.
    public func brokerReachable(timeoutMilliseconds: Int32) -> Bool {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 0, nil, &metadata, timeoutMilliseconds)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        return error == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Messages queued or in flight that the broker has not answered yet.
    public var outstanding: Int { Int(rd_kafka_outq_len(handle)) }

    /// Waits until every queued message has been answered or the timeout passes; returns the
    /// delivery reports that arrived meanwhile.
    public func flush(timeoutMilliseconds: Int32) -> [DeliveryReport] {
        rd_kafka_flush(handle, timeoutMilliseconds)
        return reports.take()
    }
}

/// Collects delivery reports from librdkafka's callback until `poll` takes them.
final class DeliveryReports: Sendable {
    private let pending = Mutex<[DeliveryReport]>([])

    func append(_ report: DeliveryReport) {
        pending.withLock { $0.append(report) }
    }

    func take() -> [DeliveryReport] {
        pending.withLock { reports in
            defer { reports.removeAll(keepingCapacity: true) }
            return reports
        }
    }
}

private let deliveryCallback:
    @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, message, opaque in
        guard let message, let opaque else { return }
        let reports = Unmanaged<DeliveryReports>.fromOpaque(opaque).takeUnretainedValue()
        let id = UInt64(UInt(bitPattern: message.pointee._private))
        let error = message.pointee.err
        reports.append(
            DeliveryReport(
                id: id, partition: message.pointee.partition, offset: message.pointee.offset,
                error: error == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : String(cString: rd_kafka_err2str(error)),
                errorCode: error == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : error.rawValue))
    }
