import EdgetrailProto

/// The collector's two seams, as in the OpenTelemetry Collector: sources hand records to a
/// `RecordConsumer` (the pipeline's intake), and the pipeline hands released batches to a
/// `BatchSink` (Kafka, or memory in tests). A source knows only the first; the pipeline only
/// the second.

/// Which source brought records: the label of `records_in_total` and friends.
public enum RecordSource: String, Sendable, CaseIterable {
    case otlp, snapshots, flows
    /// Records accepted before a crash, read back from the intake journal.
    case journal
    /// `edgetrail bench collector`'s own sender.
    case bench
}

/// The answer a source gets when it hands records to the pipeline.
public enum IntakeResult: Sendable, Equatable {
    /// Journaled on disk and queued: the records survive a crash from here on. `tooLarge`
    /// records were refused because none could fit in a Kafka message (counted and logged).
    case accepted(tooLarge: Int = 0)
    /// The pipeline is full (or stopping); the sender should retry later. Nothing was kept.
    case full(String)
}

/// What a source hands records to. Every way in journals the records before it returns
/// `.accepted`, so from then on a crash loses nothing.
public protocol RecordConsumer: Sendable {
    /// The largest record one Kafka message can carry (exporters are told when one was larger).
    var largestRecordBytes: Int { get }
    /// Takes records without waiting; `.full` when there is no room, for sources that can ask
    /// their sender to retry (OTLP answers UNAVAILABLE).
    func offer(_ records: [Edgetrail_V1_Record], from source: RecordSource) -> IntakeResult
    /// Takes records, blocking this thread while the pipeline is full: for sources that run on
    /// a thread of their own and cannot push back (Redis notifications, a recording).
    func put(_ records: [Edgetrail_V1_Record], from source: RecordSource) -> IntakeResult
    /// Takes records, suspending (no thread held) while the pipeline is full: for async sources
    /// that cannot push back (the Datapath Manager's event stream).
    func deliver(_ records: [Edgetrail_V1_Record], from source: RecordSource) async -> IntakeResult
    /// Adds to a source's own counter (`edgetrail_collector_source_events_total`).
    func count(_ event: SourceEvent, _ amount: Int)
}

extension RecordConsumer {
    public func count(_ event: SourceEvent) { count(event, 1) }
}

/// What a source (or the filter stage) saw besides records: the catalog of
/// `edgetrail_collector_source_events_total{source, event}`. A counter is named here once and
/// nowhere else; dashboards and docs read these names.
public struct SourceEvent: Hashable, Sendable, CustomStringConvertible {
    public let source: String
    public let event: String

    private init(_ source: String, _ event: String) {
        self.source = source
        self.event = event
    }

    public var description: String { "\(source)/\(event)" }

    // MARK: OTLP
    public static let spanWithoutCookieDropped = SourceEvent("otlp", "span_without_cookie_dropped")
    public static let spanWithoutCookieBucketed = SourceEvent("otlp", "span_without_cookie_bucketed")
    public static let spanWithoutCookieHeld = SourceEvent("otlp", "span_without_cookie_held")
    public static let spanWithoutCookieAttached = SourceEvent("otlp", "span_without_cookie_attached")
    public static let spanWithoutCookieHoldFull = SourceEvent("otlp", "span_without_cookie_hold_full")
    public static let cookieAttributeNot16HexDigits = SourceEvent("otlp", "cookie_attribute_not_16_hex_digits")
    public static let cookieAttributeNotAString = SourceEvent("otlp", "cookie_attribute_not_a_string")
    public static let exportUnreadable = SourceEvent("otlp", "export_unreadable")
    public static let exportTooLarge = SourceEvent("otlp", "export_too_large")
    public static let connectionNotHTTP2 = SourceEvent("otlp", "connection_not_http2")

    /// The counter for a malformed cookie attribute, by the reason `SpanConverter` gives.
    public static func cookieAttribute(_ reason: String) -> SourceEvent {
        switch reason {
        case "not_a_string": cookieAttributeNotAString
        default: cookieAttributeNot16HexDigits
        }
    }

    // MARK: Snapshots (Redis)
    public static let malformedKey = SourceEvent("snapshots", "malformed_key")
    public static let unsupportedType = SourceEvent("snapshots", "unsupported_type")
    public static let redisReconnect = SourceEvent("snapshots", "reconnect")
    public static let valueTruncated = SourceEvent("snapshots", "value_truncated")
    public static let repeatSkipped = SourceEvent("snapshots", "repeat_skipped")

    // MARK: Flows (the Datapath Manager, or a recording)
    public static let datapathLostEvents = SourceEvent("flows", "datapath_lost_events")
    public static let datapathReconnect = SourceEvent("flows", "datapath_reconnect")
    public static let datapathManagerRestarted = SourceEvent("flows", "datapath_manager_restarted")
    public static let malformedLine = SourceEvent("flows", "malformed_line")

    // MARK: Filters
    public static let rulesReloadApplied = SourceEvent("filters", "reload_applied")
    public static let rulesReloadRefused = SourceEvent("filters", "reload_refused")
    public static let regexTimeBound = SourceEvent("filters", "regex_time_bound")
}
