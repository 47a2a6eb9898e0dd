import EdgetrailCore
import EdgetrailSpool
import EdgetrailTelemetry
import EdgetrailYAML
import Foundation
import Yams

/// The OTLP/gRPC span receiver's settings.
public struct OTLPSourceConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 4317
    /// Also listen on this Unix socket (crosses network namespaces); `nil` for none.
    public var socketPath: String?
    /// Larger export requests are refused (RESOURCE_EXHAUSTED) without reading them whole.
    public var maxRequestBytes = 4 << 20
    public var noCookie: NoCookiePolicy = .bucket
    /// Spans without a cookie are held by trace id until a span of their trace brings one;
    /// `noCookie` applies to those still without one when the hold lets them go.
    public var hold = TraceHoldConfiguration()

    public init() {}
}

/// The replay flow source: flow events recorded as JSON lines of `FlowEventMessage`.
public struct FlowReplaySourceConfiguration: Sendable {
    public var path: String
    /// Events per second; 0 replays as fast as the pipeline takes them.
    public var eventsPerSecond: Double = 0

    public init(path: String) { self.path = path }
}

/// Where flow events come from: the Datapath Manager's event stream on this node, or a
/// recording of one.
public enum FlowSourceConfiguration: Sendable {
    /// `StreamEvents` of the Datapath Manager listening on this Unix socket; its `Stats` are
    /// read every `statsIntervalNanoseconds` for /metrics.
    case datapath(socket: String, statsIntervalNanoseconds: UInt64 = 5_000_000_000)
    case replay(FlowReplaySourceConfiguration)
}

/// A whole collector: what it listens to, how it joins, where it ships.
public struct CollectorConfiguration: Sendable {
    public var dataDirectory: String
    public var intakeJournalBytes = 256 << 20
    public var intakeQueueRecords = 100_000
    public var shutdownDrainMilliseconds = 10_000
    public var join: CookieJoinConfiguration
    public var kafka: KafkaSinkConfiguration
    public var otlp: OTLPSourceConfiguration?
    public var flows: FlowSourceConfiguration?
    public var snapshots: RedisSnapshotSourceConfiguration?
    /// Where /metrics is served; `nil` for nowhere.
    public var metricsHost: String? = "127.0.0.1"
    public var metricsPort = 9464
    /// Filter rule files (applied once the rule language lands; listed files must exist).
    public var filterFiles: [String] = []
    /// A rule set published centrally that this collector follows (`filters: {kafka: …}`).
    public var publishedRules: PublishedRulesSettings?
    /// Also write every released batch (before cookie rules) to this capture file.
    public var captureFile: String?

    public init(cnf: String, node: String, brokers: String, dataDirectory: String) {
        self.dataDirectory = dataDirectory
        self.join = CookieJoinConfiguration(cnf: cnf, node: node)
        self.kafka = KafkaSinkConfiguration(brokers: brokers, spoolDirectory: dataDirectory + "/spool")
    }
}

extension CollectorConfiguration {
    /// Reads and validates a pipeline file (e.g. `collectors/edge.yaml`); every problem is
    /// reported as `FILE:LINE:COLUMN: message`. Nothing is half-applied: it is all or nothing.
    public static func load(path: String) throws(DiagnosticsError) -> CollectorConfiguration {
        try parse(TextFile.read(path, what: "the collector configuration"), fileName: path)
    }

    public static func parse(_ yaml: String, fileName: String) throws(DiagnosticsError) -> CollectorConfiguration {
        var context = YAMLContext(fileName: fileName)
        guard let (root, top) = context.document(yaml, what: "a collector pipeline (collector, sources, sinks, …)")
        else { throw DiagnosticsError(context.diagnostics) }
        let fields = context.fields(
            of: top, allowed: ["collector", "sources", "join", "filters", "sinks", "metrics"],
            what: "the collector configuration")

        var cnf = "default"
        var node = ProcessInfo.processInfo.hostName
        var dataDirectory = ".run/collector"
        var journalBytes: Int?
        if let collector = fields["collector"], let mapping = context.mapping(collector, what: "'collector'") {
            let collectorFields = context.fields(
                of: mapping, allowed: ["cnf", "node", "data_dir", "intake_journal_bytes"], what: "'collector'")
            // The CNF's name as a CNF spec must write it, so the collector's batches name a CNF that can exist.
            if let value = collectorFields["cnf"] { cnf = context.name(value, what: "'cnf'") ?? cnf }
            if let value = collectorFields["node"], let text = context.string(value, what: "'node'") {
                if text.trimmingCharacters(in: .whitespaces).isEmpty {
                    context.report("'node' is empty; name the edge node this collector runs on, e.g. edge-1", at: value)
                } else {
                    node = text
                }
            }
            if let value = collectorFields["data_dir"], let path = context.string(value, what: "'data_dir'") {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    context.report(
                        "'data_dir' '\(path)' is a file; the collector keeps its journal and spool in a directory there",
                        at: value)
                } else {
                    dataDirectory = path
                }
            }
            if let value = collectorFields["intake_journal_bytes"] {
                journalBytes = context.byteSize(value, what: "'intake_journal_bytes'")
            }
        }

        // Sinks: exactly one Kafka sink.
        var brokers: String?
        var topic: String?
        var compression: String?
        var spoolBytes: Int?
        var maxMessageBytes: Int?
        var partitions: Int?
        if let sinks = fields["sinks"], let mapping = context.mapping(sinks, what: "'sinks'") {
            let sinkFields = context.fields(of: mapping, allowed: ["kafka"], what: "'sinks'")
            if let kafka = sinkFields["kafka"], let kafkaMapping = context.mapping(kafka, what: "'kafka'") {
                let kafkaFields = context.fields(
                    of: kafkaMapping, allowed: ["brokers", "topic", "partitions", "compression", "spool_bytes", "max_message_bytes"],
                    what: "'kafka'")
                if let value = kafkaFields["brokers"] {
                    if let parsed = context.hostPort(value, what: "'brokers'") { brokers = "\(parsed.host):\(parsed.port)" }
                } else {
                    context.report("the kafka sink is missing the required field 'brokers'", at: kafka)
                }
                if let value = kafkaFields["topic"], let text = context.string(value, what: "'topic'") {
                    if let problem = KafkaTopicName.problem(text) {
                        context.report("'\(text)' is not a Kafka topic name: \(problem)", at: value)
                    } else {
                        topic = text
                    }
                }
                if let value = kafkaFields["partitions"] {
                    partitions = context.integer(value, what: "'partitions'", in: 1...10_000)
                }
                if let value = kafkaFields["compression"] {
                    compression = context.choice(value, what: "compression", from: ["lz4", "zstd", "none"])
                }
                if let value = kafkaFields["spool_bytes"] { spoolBytes = context.byteSize(value, what: "'spool_bytes'") }
                if let value = kafkaFields["max_message_bytes"],
                    let size = context.byteSize(value, what: "'max_message_bytes'")
                {
                    if let problem = KafkaSinkConfiguration.messageSizeProblem(size) {
                        context.report("'max_message_bytes' \(problem)", at: value)
                    } else {
                        maxMessageBytes = size
                    }
                }
            } else if sinkFields["kafka"] == nil {
                context.report("'sinks' needs a 'kafka' sink", at: sinks)
            }
        } else {
            context.report("missing required section 'sinks' (a kafka sink with its brokers)", at: root)
        }

        var configuration = CollectorConfiguration(
            cnf: cnf, node: node, brokers: brokers ?? "127.0.0.1:19092", dataDirectory: dataDirectory)
        if let journalBytes { configuration.intakeJournalBytes = journalBytes }
        if let topic { configuration.kafka.topic = topic }
        if let compression { configuration.kafka.compression = compression }
        if let spoolBytes { configuration.kafka.spool.capacityBytes = spoolBytes }
        if let maxMessageBytes { configuration.kafka.maxMessageBytes = maxMessageBytes }
        configuration.kafka.partitions = partitions

        if let sources = fields["sources"], let mapping = context.mapping(sources, what: "'sources'") {
            let sourceFields = context.fields(of: mapping, allowed: ["otlp", "flows", "snapshots"], what: "'sources'")
            if let otlp = sourceFields["otlp"], let otlpMapping = context.mapping(otlp, what: "'otlp'") {
                var settings = OTLPSourceConfiguration()
                let otlpFields = context.fields(
                    of: otlpMapping,
                    allowed: ["listen", "socket", "max_request_bytes", "no_cookie", "hold_without_cookie", "hold_max_spans"],
                    what: "'otlp'")
                if let value = otlpFields["listen"], let parsed = context.hostPort(value, what: "'listen'") {
                    settings.host = parsed.host
                    settings.port = parsed.port
                }
                if let value = otlpFields["socket"] { settings.socketPath = context.string(value, what: "'socket'") }
                if let value = otlpFields["max_request_bytes"],
                    let size = context.byteSize(value, what: "'max_request_bytes'")
                {
                    settings.maxRequestBytes = size
                }
                if let value = otlpFields["no_cookie"],
                    let choice = context.choice(value, what: "no_cookie policy", from: NoCookiePolicy.allCases.map(\.rawValue))
                {
                    settings.noCookie = NoCookiePolicy(rawValue: choice)!
                }
                if let value = otlpFields["hold_without_cookie"],
                    let duration = context.duration(value, what: "'hold_without_cookie'")
                {
                    settings.hold.holdNanoseconds = duration
                }
                if let value = otlpFields["hold_max_spans"],
                    let number = context.integer(value, what: "'hold_max_spans'", in: 1...10_000_000)
                {
                    settings.hold.maxSpans = number
                }
                configuration.otlp = settings
            }
            if let flows = sourceFields["flows"], let flowMapping = context.mapping(flows, what: "'flows'") {
                let flowFields = context.fields(
                    of: flowMapping, allowed: ["datapath", "stats_interval", "replay", "rate"], what: "'flows'")
                if flowFields["datapath"] != nil, flowFields["replay"] != nil {
                    context.report("the flows source takes 'datapath: SOCKET' or 'replay: FILE', not both", at: flows)
                } else if let value = flowFields["datapath"], let socket = context.string(value, what: "'datapath'") {
                    if flowFields["rate"] != nil {
                        context.report("'rate' paces a replay; the datapath's events come as they happen", at: flowFields["rate"])
                    }
                    var interval: UInt64 = 5_000_000_000
                    if let value = flowFields["stats_interval"], let parsed = context.duration(value, what: "'stats_interval'") {
                        if parsed == 0 { context.report("'stats_interval' must be above zero", at: value) }
                        interval = parsed
                    }
                    configuration.flows = .datapath(socket: socket, statsIntervalNanoseconds: interval)
                } else if let value = flowFields["replay"], let path = context.string(value, what: "'replay'") {
                    if flowFields["stats_interval"] != nil {
                        context.report("'stats_interval' reads the Datapath Manager's counters; a replay has none", at: flowFields["stats_interval"])
                    }
                    var settings = FlowReplaySourceConfiguration(path: path)
                    if !FileManager.default.isReadableFile(atPath: path) {
                        context.report("cannot read the flow recording '\(path)'", at: value)
                    }
                    if let rate = flowFields["rate"] {
                        settings.eventsPerSecond = Double(context.integer(rate, what: "'rate'", in: 0...10_000_000) ?? 0)
                    }
                    configuration.flows = .replay(settings)
                } else if flowFields["replay"] == nil, flowFields["datapath"] == nil {
                    context.report(
                        "the flows source needs 'datapath: SOCKET' (the Datapath Manager's events) or 'replay: FILE' "
                            + "(recorded flow events, JSON lines)", at: flows)
                }
            }
            if let snapshots = sourceFields["snapshots"],
                let snapshotMapping = context.mapping(snapshots, what: "'snapshots'")
            {
                let snapshotFields = context.fields(
                    of: snapshotMapping, allowed: ["redis", "pattern", "database", "max_value_bytes"], what: "'snapshots'")
                if let value = snapshotFields["redis"], let parsed = context.endpoint(value, what: "'redis'", example: "127.0.0.1:16379") {
                    var settings = RedisSnapshotSourceConfiguration(endpoint: parsed)
                    if let pattern = snapshotFields["pattern"] {
                        settings.keyPattern = context.string(pattern, what: "'pattern'") ?? settings.keyPattern
                    }
                    if let database = snapshotFields["database"] {
                        settings.database = context.integer(database, what: "'database'", in: 0...15) ?? 0
                    }
                    if let value = snapshotFields["max_value_bytes"],
                        let size = context.byteSize(value, what: "'max_value_bytes'")
                    {
                        if size < 1 << 10 || size > maxValueBytesLimit(maxMessageBytes) {
                            context.report(
                                "'max_value_bytes' must be between 1KiB and \(maxValueBytesLimit(maxMessageBytes)) bytes "
                                    + "(a quarter of sinks.kafka.max_message_bytes, so a snapshot fits in a message)",
                                at: value)
                        } else {
                            settings.maxValueBytes = size
                        }
                    }
                    configuration.snapshots = settings
                } else if snapshotFields["redis"] == nil {
                    context.report("the snapshots source needs 'redis: HOST:PORT' or 'redis: SOCKET-PATH'", at: snapshots)
                }
            }
        }

        if let join = fields["join"], let mapping = context.mapping(join, what: "'join'") {
            let joinFields = context.fields(
                of: mapping, allowed: ["idle_timeout", "settle", "grace", "max_open_records", "max_records_per_cookie"],
                what: "'join'")
            if let value = joinFields["idle_timeout"], let duration = context.duration(value, what: "'idle_timeout'") {
                configuration.join.idleTimeoutNanoseconds = duration
            }
            if let value = joinFields["settle"], let duration = context.duration(value, what: "'settle'") {
                configuration.join.settleNanoseconds = duration
            }
            if let value = joinFields["grace"], let duration = context.duration(value, what: "'grace'") {
                configuration.join.graceNanoseconds = duration
            }
            if let value = joinFields["max_open_records"],
                let number = context.integer(value, what: "'max_open_records'", in: 1...100_000_000)
            {
                configuration.join.maxOpenRecords = number
            }
            if let value = joinFields["max_records_per_cookie"],
                let number = context.integer(value, what: "'max_records_per_cookie'", in: 1...10_000_000)
            {
                configuration.join.maxRecordsPerCookie = number
            }
        }

        if let filters = fields["filters"], let mapping = context.mapping(filters, what: "'filters'") {
            let filterFields = context.fields(of: mapping, allowed: ["files", "kafka"], what: "'filters'")
            if let kafka = filterFields["kafka"], let kafkaMapping = context.mapping(kafka, what: "'kafka'") {
                let kafkaFields = context.fields(of: kafkaMapping, allowed: ["topic", "name", "status_topic"], what: "'kafka'")
                var settings = PublishedRulesSettings(name: "")
                if let value = kafkaFields["name"], let text = context.name(value, what: "'name'") {
                    settings.name = text
                } else if kafkaFields["name"] == nil {
                    context.report("filters.kafka needs the 'name' of the rule set to follow", at: kafka)
                }
                for (field, keyPath) in [("topic", \PublishedRulesSettings.topic), ("status_topic", \PublishedRulesSettings.statusTopic)] {
                    guard let value = kafkaFields[field], let text = context.string(value, what: "'\(field)'") else { continue }
                    if let problem = KafkaTopicName.problem(text) {
                        context.report("'\(text)' is not a Kafka topic name: \(problem)", at: value)
                    } else {
                        settings[keyPath: keyPath] = text
                    }
                }
                configuration.publishedRules = settings
            }
            if let files = filterFields["files"] {
                for node in context.sequence(files, what: "files") {
                    guard let path = context.string(node, what: "a rule file") else { continue }
                    if !FileManager.default.isReadableFile(atPath: path) {
                        context.report("cannot read the filter rule file '\(path)'", at: node)
                    }
                    configuration.filterFiles.append(path)
                }
            }
        }

        if let metrics = fields["metrics"], let mapping = context.mapping(metrics, what: "'metrics'") {
            let metricsFields = context.fields(of: mapping, allowed: ["listen"], what: "'metrics'")
            if let value = metricsFields["listen"] {
                if value.scalar?.string == "off" {
                    configuration.metricsHost = nil
                } else if let parsed = context.hostPort(value, what: "'listen'") {
                    configuration.metricsHost = parsed.host
                    configuration.metricsPort = parsed.port
                }
            }
        }

        // (A source written wrongly was reported where it is; "no sources" is for none written.)
        if configuration.otlp == nil, configuration.flows == nil, configuration.snapshots == nil, context.diagnostics.isEmpty {
            context.report("no sources: configure at least one of otlp, flows, snapshots under 'sources'", at: root)
        }
        guard context.diagnostics.isEmpty else { throw DiagnosticsError(context.diagnostics) }
        return configuration
    }
}

/// Snapshot values may take up to a quarter of a Kafka message.
private func maxValueBytesLimit(_ maxMessageBytes: Int?) -> Int {
    (maxMessageBytes ?? KafkaSinkConfiguration(brokers: "", spoolDirectory: "").maxMessageBytes) / 4
}

extension KafkaSinkConfiguration {
    /// Why `bytes` cannot be the largest Kafka message, if it cannot.
    static func messageSizeProblem(_ bytes: Int) -> String? {
        if bytes < 64 << 10 { return "must be at least 64KiB (a batch must hold a span with its attributes)" }
        // librdkafka's ceiling for message.max.bytes.
        if bytes > 1_000_000_000 { return "must be at most 1000000000 bytes (librdkafka's message.max.bytes)" }
        return nil
    }
}

/// What Kafka accepts as a topic name; the broker would refuse the others at the first produce.
enum KafkaTopicName {
    static func problem(_ name: String) -> String? {
        if name.isEmpty { return "it is empty" }
        if name == "." || name == ".." { return "'.' and '..' are not allowed" }
        if name.utf8.count > 249 { return "it is longer than 249 characters" }
        if let bad = name.first(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-")) }) {
            return "'\(bad)' is not allowed; use letters, digits, '.', '_' and '-'"
        }
        return nil
    }
}

/// `filters: {kafka: {topic, name, status_topic}}`: the published rule set a collector follows.
public struct PublishedRulesSettings: Sendable, Equatable {
    public var topic = "edgetrail.filters"
    public var name: String
    public var statusTopic = "edgetrail.filters.status"

    public init(name: String) {
        self.name = name
    }
}
