import CRdKafka
import Logging

/// Something went wrong talking to the broker or setting up the client.
public struct KafkaError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// librdkafka's error code, when there is one.
    public var code: Int32?

    public init(_ message: String, code: Int32? = nil) {
        self.message = message
        self.code = code
    }

    init(code: rd_kafka_resp_err_t, context: String) {
        self.message = "\(context): \(String(cString: rd_kafka_err2str(code)))"
        self.code = code.rawValue
    }

    public var description: String { message }

    /// The message was larger than the client's `message.max.bytes` or the broker's limit.
    public var isMessageTooLarge: Bool { code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue }
}

/// The librdkafka build this process loaded, and whether it can talk to the broker.
public enum KafkaRuntime {
    /// The lowest version known to pass the ApiVersions handshake with tansu (Debian's 2.0.2 fails
    /// it with "Read underflow").
    public static let minimumVersion: Int32 = 0x0210_0000

    /// e.g. "2.16.0".
    public static var versionString: String { String(cString: rd_kafka_version_str()) }

    /// Throws, saying what to do, when the loaded librdkafka is too old for the broker.
    public static func check() throws(KafkaError) {
        guard rd_kafka_version() >= minimumVersion else {
            throw KafkaError(
                "librdkafka \(versionString) was loaded, but 2.16 or later is needed to talk to the broker; "
                    + "run through 'make' (which sets LD_LIBRARY_PATH=.deps/lib) or export "
                    + "LD_LIBRARY_PATH=<repo>/.deps/lib after 'make setup'")
        }
    }
}

/// librdkafka's own log lines (connection failures, timeouts) go through swift-log rather than
/// straight to stderr: warnings and worse at `warning`, the rest at `debug`.
let kafkaLogger = Logger(label: "edgetrail.librdkafka")

private let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    _, level, facility, message in
    let text = message.map { String(cString: $0) } ?? ""
    let facilityText = facility.map { String(cString: $0) } ?? ""
    // syslog levels: 0-2 emergency..critical, 3 error (mostly transient: a broker went away), 4 warning
    let swiftLevel: Logger.Level = level <= 2 ? .error : level <= 4 ? .warning : .debug
    kafkaLogger.log(level: swiftLevel, "\(text)", metadata: ["facility": "\(facilityText)", "component": "librdkafka"])
}

/// Builds a librdkafka configuration from key/value pairs, reporting a bad one by name.
func makeConfiguration(_ properties: [(String, String)]) throws(KafkaError) -> OpaquePointer {
    let configuration = rd_kafka_conf_new()!
    rd_kafka_conf_set_log_cb(configuration, logCallback)
    var errorText = [CChar](repeating: 0, count: 512)
    for (key, value) in properties {
        let result = rd_kafka_conf_set(configuration, key, value, &errorText, errorText.count)
        if result != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(configuration)
            let detail = String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaError("bad Kafka client setting \(key)=\(value): \(detail)")
        }
    }
    return configuration
}

func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// How to reach the broker and produce to it.
public struct KafkaProducerConfiguration: Sendable {
    /// `host:port[,host:port]`.
    public var brokers: String
    /// Idempotent delivery: no duplicates or reordering from retries.
    public var idempotent: Bool = true
    /// `lz4`, `zstd`, `gzip`, `snappy` or `none`.
    public var compression: String = "lz4"
    /// How long librdkafka waits to fill a batch.
    public var lingerMilliseconds: Int = 5
    /// How long a message may wait for delivery before it is reported failed (0 = forever).
    public var messageTimeoutMilliseconds: Int = 0
    /// Extra librdkafka properties, applied last.
    public var properties: [String: String] = [:]

    public init(brokers: String) {
        self.brokers = brokers
    }

    var librdkafkaProperties: [(String, String)] {
        var result: [(String, String)] = [
            ("bootstrap.servers", brokers),
            ("enable.idempotence", idempotent ? "true" : "false"),
            ("compression.type", compression),
            ("linger.ms", String(lingerMilliseconds)),
            ("message.timeout.ms", String(messageTimeoutMilliseconds)),
        ]
        result += properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return result
    }
}

/// How to reach the broker and consume from it in a consumer group.
public struct KafkaConsumerConfiguration: Sendable {
    public var brokers: String
    public var groupID: String
    public var topics: [String]
    /// Where a group without committed offsets starts: `earliest` or `latest`.
    public var autoOffsetReset: String = "earliest"
    /// Short group timeouts: with librdkafka's defaults the first join takes ~23 s against tansu,
    /// with these ~3 s.
    public var sessionTimeoutMilliseconds: Int = 6000
    public var heartbeatIntervalMilliseconds: Int = 1000
    /// Commit offsets automatically (every 1 s) for messages handed out by `poll`.
    public var autoCommit: Bool = true
    public var properties: [String: String] = [:]

    public init(brokers: String, groupID: String, topics: [String]) {
        self.brokers = brokers
        self.groupID = groupID
        self.topics = topics
    }

    var librdkafkaProperties: [(String, String)] {
        var result: [(String, String)] = [
            ("bootstrap.servers", brokers),
            ("group.id", groupID),
            ("auto.offset.reset", autoOffsetReset),
            ("session.timeout.ms", String(sessionTimeoutMilliseconds)),
            ("heartbeat.interval.ms", String(heartbeatIntervalMilliseconds)),
            ("enable.auto.commit", autoCommit ? "true" : "false"),
        ]
        result += properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return result
    }
}
