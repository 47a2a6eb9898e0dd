import EdgetrailCore
import EdgetrailFilters
import EdgetrailProto
import EdgetrailRuntime
import EdgetrailSpool
import EdgetrailTelemetry
import Foundation
import Logging
import SwiftProtobuf

/// The collector's processing path: intake journal → filters (record rules) → cookie join →
/// filters (cookie rules) → a batch sink (Kafka with its spool). One thread runs it; sources hand
/// records in from any thread through its `RecordConsumer` side.
///
/// Crash safety: records are journaled before `accept` returns. A journal entry is released
/// once every record in it has been spooled by the sink (or dropped by a rule), so a SIGKILL at
/// any point loses nothing accepted: on restart the journal's unreleased entries are joined
/// again (a record may then ship twice; central stores each record once).
public final class CollectorPipeline: RecordConsumer, @unchecked Sendable {
    public let configuration: CollectorConfiguration
    public let metrics: MetricsRegistry
    private let logger: Logger
    private let clock: @Sendable () -> UInt64
    private let journal: Spool
    private let queue: IntakeQueue
    /// The largest record the join can ship in one Kafka message; larger ones are refused at
    /// intake, before anything is journaled or acknowledged.
    public let largestRecordBytes: Int
    private var join: CookieJoin
    /// Spans without a cookie, waiting for a span of their trace that brings it.
    private var hold: TraceHold
    private let noCookie: NoCookiePolicy
    private var filters: FilterStage
    private let sink: any BatchSink
    /// Records of each journal entry not yet spooled or dropped.
    private var remaining: [UInt64: Int] = [:]
    private let stopLock = NSLock()
    private var stopRequested = false
    /// A published rule set to apply on the pipeline thread (its files and its version).
    private var pendingPublished: (files: [RuleFile], version: String)?
    /// The rule files' rules and the published set's, compiled together (files first).
    private var fileRules: (files: [RuleFile], version: String)
    private var publishedRules: (files: [RuleFile], version: String)?
    private let ruleWatcher: RuleFileWatcher
    private let capture: CaptureFile.Writer?
    private let counterLock = NSLock()
    private var acceptedBySource: [RecordSource: Int] = [:]
    private var refusedBySource: [RecordSource: Int] = [:]
    private var tooLargeBySource: [RecordSource: Int] = [:]
    private var releasedByReason: [JoinRelease: Int] = [:]
    private var lastPublish: UInt64 = 0
    /// Rule matches abandoned at the regex time bound, as of the last publish (for the warning).
    private var regexTimeBoundsSeen = 0
    /// Extra figures sources report (dropped without cookie, lost datapath events, …).
    private var sourceCounters: [SourceEvent: Int] = [:]

    /// A pipeline that ships to `sink` (for the collector, a `KafkaSink` on
    /// `configuration.kafka`); it reads back what its intake journal still holds.
    public init(
        configuration: CollectorConfiguration, sink: any BatchSink, logger: Logger,
        metrics: MetricsRegistry = MetricsRegistry(), clock: @escaping @Sendable () -> UInt64 = wallClockNanoseconds
    ) throws {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
        var journalConfiguration = SpoolConfiguration(directory: configuration.dataDirectory + "/intake")
        journalConfiguration.capacityBytes = configuration.intakeJournalBytes
        journal = try Spool(configuration: journalConfiguration)
        queue = IntakeQueue(capacity: configuration.intakeQueueRecords)
        var joinConfiguration = configuration.join
        joinConfiguration.maxBatchBytes = configuration.kafka.maxMessageBytes - KafkaSink.messageOverheadBytes
        // Held records as bytes only: decoded again at release just when cookie rules or the
        // capture need them.
        joinConfiguration.keepsDecodedRecords = false
        join = CookieJoin(configuration: joinConfiguration)
        largestRecordBytes = join.largestRecordBytes
        hold = TraceHold(configuration: configuration.otlp?.hold ?? TraceHoldConfiguration())
        noCookie = configuration.otlp?.noCookie ?? .bucket
        // Rules are validated at start: a collector never runs with half its rules.
        let loaded = try RuleCompiler.loadFiles(paths: configuration.filterFiles)
        fileRules = loaded
        let rules = RuleCompiler.compile(loaded.files, version: loaded.version)
        filters = FilterStage(rules: rules)
        ruleWatcher = RuleFileWatcher(paths: configuration.filterFiles)
        capture = try configuration.captureFile.map { try CaptureFile.Writer(path: $0) }
        if !configuration.filterFiles.isEmpty {
            logger.notice(
                "filter rules active",
                metadata: ["version": "\(rules.version)", "files": "\(configuration.filterFiles.joined(separator: ","))",
                           "record_rules": "\(rules.recordRules.count)", "cookie_rules": "\(rules.cookieRules.count)"])
        }
        self.sink = sink
        Self.declareMetrics(metrics)
        // Records accepted before a crash come first.
        for entry in journal.recovered {
            guard let container = try? Edgetrail_V1_CookieBatch(serializedBytes: entry.payload) else {
                logger.warning("unreadable intake journal entry skipped", metadata: ["id": "\(entry.id)"])
                journal.acknowledge([entry.id])
                continue
            }
            queue.put(IntakeItem(records: container.records, encoded: [], origin: entry.id, source: .journal))
        }
        if !journal.recovered.isEmpty {
            logger.notice(
                "joining records recovered from the intake journal",
                metadata: ["entries": "\(journal.recovered.count)"])
        }
    }

    // MARK: Intake (any thread): the RecordConsumer side

    public func offer(_ records: [Edgetrail_V1_Record], from source: RecordSource) -> IntakeResult {
        intake(records, source: source, mode: .offer)
    }

    public func put(_ records: [Edgetrail_V1_Record], from source: RecordSource) -> IntakeResult {
        intake(records, source: source, mode: .wait)
    }

    public func deliver(_ records: [Edgetrail_V1_Record], from source: RecordSource) async -> IntakeResult {
        guard !records.isEmpty else { return .accepted() }
        // Suspends without holding a thread; room may be taken again before this one queues, so
        // the queue can pass its capacity by the few deliveries that were waiting.
        await queue.waitForRoom()
        return intake(records, source: source, mode: .force)
    }

    private enum IntakeMode {
        /// Refuse when full.
        case offer
        /// Block the calling thread while full.
        case wait
        /// Queue even when full (the caller waited for room already).
        case force
    }

    /// Journals and queues `records` from `source`.
    private func intake(_ records: [Edgetrail_V1_Record], source: RecordSource, mode: IntakeMode) -> IntakeResult {
        guard !records.isEmpty else { return .accepted() }
        if mode == .offer, queue.isFull {
            countRefused(source, records.count)
            return .full("the collector's intake queue is full; retry shortly")
        }
        // Each record is encoded once: the journal entry and, later, the shipped batch frame
        // the same bytes.
        var records = records
        // Every record names the CNF and node it was seen on, whichever source brought it.
        let (cnf, node) = (configuration.join.cnf, configuration.join.node)
        for index in records.indices where records[index].cnf.isEmpty || records[index].node.isEmpty {
            if records[index].cnf.isEmpty { records[index].cnf = cnf }
            if records[index].node.isEmpty { records[index].node = node }
        }
        var encoded = records.map(RecordWire.encode)
        let tooLarge = refuseTooLarge(&records, &encoded, source: source)
        guard !records.isEmpty else { return .accepted(tooLarge: tooLarge) }
        let id: UInt64
        do {
            id = try journal.append(RecordWire.container(encoded))
        } catch {
            countRefused(source, records.count)
            logger.warning(
                "intake journal refused records", metadata: ["source": "\(source)", "records": "\(records.count)",
                                                              "error": "\(error)"])
            return .full("\(error)")
        }
        let item = IntakeItem(records: records, encoded: encoded, origin: id, source: source)
        let queued: Bool
        switch mode {
        case .offer: queued = queue.offer(item)
        case .wait: queued = queue.put(item)
        case .force: queued = queue.force(item)
        }
        if !queued {
            // Shutting down (or filled meanwhile): the journal keeps the records for the next start.
            if mode == .offer {
                countRefused(source, 0)
                return .full("the collector is shutting down or full; retry")
            }
            return .accepted(tooLarge: tooLarge)
        }
        counterLock.withLock { acceptedBySource[source, default: 0] += records.count }
        return .accepted(tooLarge: tooLarge)
    }

    /// Takes out the records no Kafka message could carry: a batch holds at least one record,
    /// so such a record would be refused by the broker forever. Each is counted and logged.
    private func refuseTooLarge(
        _ records: inout [Edgetrail_V1_Record], _ encoded: inout [[UInt8]], source: RecordSource
    ) -> Int {
        guard encoded.contains(where: { $0.count > largestRecordBytes }) else { return 0 }
        var keptRecords: [Edgetrail_V1_Record] = []
        var keptEncoded: [[UInt8]] = []
        var refused = 0
        for (record, bytes) in zip(records, encoded) {
            guard bytes.count > largestRecordBytes else {
                keptRecords.append(record)
                keptEncoded.append(bytes)
                continue
            }
            refused += 1
            logger.warning(
                "refused a record too large for any Kafka message",
                metadata: [
                    "source": "\(source)", "cookie": "\(Cookie(record.cookie))", "kind": "\(record.kindName)",
                    "bytes": "\(bytes.count)", "limit": "\(largestRecordBytes)",
                    "hint": "raise sinks.kafka.max_message_bytes (and the broker's limit) or send smaller records",
                ])
        }
        counterLock.withLock { tooLargeBySource[source, default: 0] += refused }
        records = keptRecords
        encoded = keptEncoded
        return refused
    }

    public func count(_ event: SourceEvent, _ amount: Int) {
        guard amount != 0 else { return }
        counterLock.withLock { sourceCounters[event, default: 0] += amount }
    }

    private func countRefused(_ source: RecordSource, _ amount: Int) {
        counterLock.withLock { refusedBySource[source, default: 0] += amount }
    }

    /// Installs a published rule set's files (compiled after the rule files' rules); they take
    /// effect between cookies, on the pipeline thread.
    public func applyPublished(_ files: [RuleFile], version: String) {
        stopLock.withLock { pendingPublished = (files, version) }
    }

    /// The rules in force: the files', then the published set's.
    private func recompose() {
        let version = [fileRules.version, publishedRules?.version].compactMap { $0 }.joined(separator: "+")
        let rules = RuleCompiler.compile(fileRules.files + (publishedRules?.files ?? []), version: version)
        filters.replace(with: rules)
        logger.notice("filter rules now active", metadata: ["version": "\(rules.version)"])
    }

    // MARK: Processing (the pipeline thread)

    /// Runs until `stop`; then releases everything the join holds and waits (bounded) for the
    /// broker to acknowledge what is spooled.
    public func run() {
        while !stopLock.withLock({ stopRequested }) {
            step(timeout: 0.05)
        }
        // Sources are stopped: take what they queued last, then empty the join. Spans the trace
        // hold still waits for stay in the intake journal and are held again on the next start.
        step(timeout: 0)
        ship(join.drain())
        let drained = (try? sink.drain(timeoutMilliseconds: configuration.shutdownDrainMilliseconds)) ?? false
        if !drained {
            let figures = sink.figures
            logger.warning(
                "shutting down with batches not yet acknowledged; they stay spooled and go out on the next start",
                metadata: ["batches": "\(figures.pendingBatches)", "spool_bytes": "\(figures.spoolBytes)"])
        }
        publishMetrics(force: true)
    }

    public func stop() {
        stopLock.withLock { stopRequested = true }
        queue.close()
    }

    /// One round: take queued records, filter and join them, release due cookies, ship, collect
    /// acknowledgements.
    func step(timeout: Double) {
        switch ruleWatcher.poll() {
        case .applied(let files, let version):
            fileRules = (files, version)
            recompose()
            count(.rulesReloadApplied)
        case .refused(let diagnostics):
            count(.rulesReloadRefused)
            logger.warning(
                "changed filter rules refused; the previous rules stay active",
                metadata: ["version": "\(filters.rules.version)",
                           "errors": "\(diagnostics.map(\.description).joined(separator: "; "))"])
        case nil:
            break
        }
        if let published = stopLock.withLock({ () -> (files: [RuleFile], version: String)? in
            defer { pendingPublished = nil }
            return pendingPublished
        }) {
            publishedRules = published
            recompose()
        }
        let items = queue.take(timeout: timeout)
        let now = clock()
        var released: [JoinedBatch] = []
        for item in items {
            remaining[item.origin, default: 0] += item.records.count
            let hasBytes = item.encoded.count == item.records.count
            for (index, record) in item.records.enumerated() {
                let bytes = hasBytes ? item.encoded[index] : []
                if hold.shouldHold(record) {
                    let size = bytes.isEmpty ? RecordWire.encode(record).count : bytes.count
                    released += letGo(hold.hold(record, bytes: size, origin: item.origin, now: now), now: now)
                    continue
                }
                if case .span(let span) = record.kind, record.cookie != 0, hold.heldSpans > 0 {
                    released += letGo(hold.attach(cookie: record.cookie, trace: span.traceID), now: now)
                }
                released += process(record, encoded: bytes, origin: item.origin, now: now)
            }
        }
        released += letGo(hold.tick(now: now), now: now)
        released += join.tick(now: now)
        ship(released)
        do {
            try sink.pump()
        } catch {
            logger.warning("Kafka sink error", metadata: ["error": "\(error)"])
        }
        publishMetrics(force: false)
    }

    /// Filters one record and adds it to the join; `encoded` is reused unless a rule changed it.
    private func process(_ record: Edgetrail_V1_Record, encoded: [UInt8], origin: UInt64, now: UInt64) -> [JoinedBatch] {
        var record = record
        var modified = false
        guard filters.admit(&record, modified: &modified) else {
            finished([origin])
            return []
        }
        // A redacted record is encoded again when its batch goes out.
        return join.add(record, encoded: modified ? [] : encoded, origin: origin, now: now)
    }

    /// Spans the trace hold let go: with their trace's cookie, or, still without one, kept in
    /// the no-cookie bucket or dropped as `sources.otlp.no_cookie` says.
    private func letGo(_ spans: [HeldSpan], now: UInt64) -> [JoinedBatch] {
        var released: [JoinedBatch] = []
        for span in spans {
            switch span.reason {
            case .attached:
                count(.spanWithoutCookieAttached)
            case .expired, .full:
                if span.reason == .full { count(.spanWithoutCookieHoldFull) }
                guard noCookie == .bucket else {
                    count(.spanWithoutCookieDropped)
                    finished([span.origin])
                    continue
                }
                count(.spanWithoutCookieBucketed)
            }
            released += process(span.record, encoded: [], origin: span.origin, now: now)
        }
        return released
    }

    private func ship(_ released: [JoinedBatch]) {
        for joined in released {
            counterLock.withLock { releasedByReason[joined.reason, default: 0] += 1 }
            var batch = joined.batch
            if batch.records.isEmpty, capture != nil || filters.hasCookieRules {
                batch.records = joined.encodedRecords.compactMap { try? Edgetrail_V1_Record(serializedBytes: $0) }
            }
            capture?.write(batch)
            if filters.keep(batch) {
                do {
                    try sink.ship(batch, encodedRecords: joined.encodedRecords)
                } catch {
                    // Counted and logged by the sink (spool full).
                }
            }
            finished(joined.origins)
        }
    }

    /// Marks records of these journal entries as done; entries with nothing left are released.
    private func finished(_ origins: [UInt64]) {
        var done: [UInt64] = []
        for origin in origins {
            guard let left = remaining[origin] else { continue }
            if left <= 1 {
                remaining[origin] = nil
                done.append(origin)
            } else {
                remaining[origin] = left - 1
            }
        }
        if !done.isEmpty { journal.acknowledge(done) }
    }

    // MARK: Metrics

    static func declareMetrics(_ metrics: MetricsRegistry) {
        metrics.declare("edgetrail_collector_records_in_total", .counter, help: "Records accepted, by source.")
        metrics.declare(
            "edgetrail_collector_records_refused_total", .counter,
            help: "Records a source could not hand in (intake full); the sender was told to retry.")
        metrics.declare(
            "edgetrail_collector_records_dropped_total", .counter,
            help: "Records dropped, by stage and reason. Nothing is dropped without being counted here.")
        metrics.declare("edgetrail_collector_records_out_total", .counter, help: "Records the broker acknowledged.")
        metrics.declare("edgetrail_collector_batches_out_total", .counter, help: "CookieBatches the broker acknowledged.")
        metrics.declare(
            "edgetrail_collector_batches_released_total", .counter, help: "Batches the join released, by reason.")
        metrics.declare("edgetrail_collector_open_cookies", .gauge, help: "Cookies the join holds records for.")
        metrics.declare("edgetrail_collector_open_records", .gauge, help: "Records the join holds.")
        metrics.declare(
            "edgetrail_collector_held_spans", .gauge,
            help: "Spans without a cookie held until a span of their trace brings it.")
        metrics.declare("edgetrail_collector_spool_bytes", .gauge, help: "Bytes spooled and not yet acknowledged.")
        metrics.declare("edgetrail_collector_spool_batches", .gauge, help: "Batches spooled and not yet acknowledged.")
        metrics.declare(
            "edgetrail_collector_spool_backlog_batches", .gauge,
            help: "Spooled batches waiting for room in the producer (they stay on disk meanwhile).")
        metrics.declare("edgetrail_collector_intake_journal_bytes", .gauge, help: "Bytes of accepted records not yet spooled.")
        metrics.declare(
            "edgetrail_collector_delivery_seconds_sum", .counter, help: "Seconds from spooling to acknowledgement, summed.")
        metrics.declare("edgetrail_collector_delivery_seconds_count", .counter, help: "Acknowledged batches timed.")
        metrics.declare("edgetrail_collector_producer_restarts_total", .counter, help: "Kafka producers replaced.")
        metrics.declare(
            "edgetrail_collector_filter_rule_matches_total", .counter, help: "Records or cookies each filter rule matched.")
        metrics.declare(
            "edgetrail_collector_source_events_total", .counter,
            help: "What sources saw besides records: spans without cookie, lost datapath events, reconnects, …")
    }

    private func publishMetrics(force: Bool) {
        let now = clock()
        guard force || now &- lastPublish > 250_000_000 else { return }
        lastPublish = now
        let (accepted, refused, releasedCounts, sourceEvents, tooLarge) = counterLock.withLock {
            (acceptedBySource, refusedBySource, releasedByReason, sourceCounters, tooLargeBySource)
        }
        metrics.set(
            "edgetrail_collector_records_dropped_total", [("stage", "intake"), ("reason", "too_large")],
            to: Double(tooLarge.values.reduce(0, +)))
        for (source, value) in accepted {
            metrics.set("edgetrail_collector_records_in_total", [("source", source.rawValue)], to: Double(value))
        }
        for (source, value) in refused {
            metrics.set("edgetrail_collector_records_refused_total", [("source", source.rawValue)], to: Double(value))
        }
        for (reason, value) in releasedCounts {
            metrics.set("edgetrail_collector_batches_released_total", [("reason", reason.rawValue)], to: Double(value))
        }
        for (event, value) in sourceEvents {
            metrics.set(
                "edgetrail_collector_source_events_total", [("source", event.source), ("event", event.event)],
                to: Double(value))
        }
        let counters = sink.figures
        metrics.set(
            "edgetrail_collector_records_dropped_total", [("stage", "filter"), ("reason", "record_rule")],
            to: Double(filters.droppedRecords))
        metrics.set(
            "edgetrail_collector_records_dropped_total", [("stage", "filter"), ("reason", "cookie_rule")],
            to: Double(filters.droppedCookieRecords))
        metrics.set(
            "edgetrail_collector_records_dropped_total", [("stage", "sink"), ("reason", "spool_full")],
            to: Double(counters.refusedRecords))
        metrics.set(
            "edgetrail_collector_records_dropped_total", [("stage", "sink"), ("reason", "too_large")],
            to: Double(counters.tooLargeRecords))
        let noCookie = sourceEvents[.spanWithoutCookieDropped] ?? 0
        metrics.set(
            "edgetrail_collector_records_dropped_total", [("stage", "source"), ("reason", "no_cookie")],
            to: Double(noCookie))
        metrics.set("edgetrail_collector_records_out_total", to: Double(counters.acknowledgedRecords))
        metrics.set("edgetrail_collector_batches_out_total", to: Double(counters.acknowledgedBatches))
        metrics.set("edgetrail_collector_open_cookies", to: Double(join.trackedCookies))
        metrics.set("edgetrail_collector_open_records", to: Double(join.openRecords))
        metrics.set("edgetrail_collector_held_spans", to: Double(hold.heldSpans))
        metrics.set("edgetrail_collector_spool_bytes", to: Double(counters.spoolBytes))
        metrics.set("edgetrail_collector_spool_batches", to: Double(counters.pendingBatches))
        metrics.set("edgetrail_collector_spool_backlog_batches", to: Double(counters.backlogBatches))
        metrics.set("edgetrail_collector_intake_journal_bytes", to: Double(journal.usedBytes))
        metrics.set("edgetrail_collector_delivery_seconds_sum", to: counters.deliverySecondsTotal)
        metrics.set("edgetrail_collector_delivery_seconds_count", to: Double(counters.acknowledgedBatches))
        metrics.set("edgetrail_collector_producer_restarts_total", to: Double(counters.producerRestarts))
        for (rule, value) in filters.matches {
            metrics.set("edgetrail_collector_filter_rule_matches_total", [("rule", rule)], to: Double(value))
        }
        let timeBounds = RegexBudget.exceededCount
        metrics.set(
            "edgetrail_collector_source_events_total",
            [("source", SourceEvent.regexTimeBound.source), ("event", SourceEvent.regexTimeBound.event)],
            to: Double(timeBounds))
        if timeBounds > regexTimeBoundsSeen {
            logger.warning(
                "a filter rule's regular expression ran out of time and was abandoned (conditions: no match; redactions: the whole value)",
                metadata: [
                    "pattern": "/\(RegexBudget.lastExceededPattern)/", "abandoned": "\(timeBounds - regexTimeBoundsSeen)",
                    "budget_ms": "\(RegexBudget.budgetMilliseconds)",
                ])
            regexTimeBoundsSeen = timeBounds
        }
    }
}

extension Edgetrail_V1_Record {
    /// "span", "flow", "snapshot" (or "none"), for log lines.
    var kindName: String {
        switch kind {
        case .span: "span"
        case .flow: "flow"
        case .snapshot: "snapshot"
        case nil: "none"
        }
    }
}
