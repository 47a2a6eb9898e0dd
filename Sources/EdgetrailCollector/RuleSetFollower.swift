import EdgetrailCore
import EdgetrailFilters
import EdgetrailKafka
import Foundation
import Logging
import Synchronization

/// Follows a rule set published centrally (`edgetrail filters publish`): reads the control topic
/// from its start, and for each new version of its name whose selector matches this collector's
/// node and CNF, checks it as a rule file edit is checked plus this collector's own check (rules
/// about records it has no source for), applies it atomically between cookies or refuses it
/// (the rules in force stay), and reports which on the status topic.
///
/// The last applied set is kept in the data directory, so a collector that starts while Kafka is
/// unreachable filters with it at once, and one that was down during a publish applies the newest
/// version when it is back (the topic is read from its start).
final class RuleSetFollower: Sendable {
    let settings: PublishedRulesSettings
    let brokers: String
    let node: String
    let cnf: String
    let sources: Set<RecordKind>
    let storePath: String
    let logger: Logger
    private let apply: @Sendable ([RuleFile], String) -> Void
    /// Counts each version applied (true) or refused, with the rule file reloads on /metrics.
    private let counted: @Sendable (Bool) -> Void
    private let state = Mutex<(stopped: Bool, applied: Int)>((false, 0))

    init(
        settings: PublishedRulesSettings, brokers: String, node: String, cnf: String, sources: Set<RecordKind>, dataDirectory: String,
        logger: Logger, apply: @escaping @Sendable ([RuleFile], String) -> Void, counted: @escaping @Sendable (Bool) -> Void = { _ in }
    ) {
        self.settings = settings
        self.brokers = brokers
        self.node = node
        self.cnf = cnf
        self.sources = sources
        self.storePath = "\(dataDirectory)/filters/\(settings.name).json"
        self.logger = logger
        self.apply = apply
        self.counted = counted
    }

    /// The version in force (0: none yet).
    var appliedVersion: Int { state.withLock { $0.applied } }

    /// Applies the set kept from the last run, if there is one; returns its version.
    @discardableResult
    func restoreKept() -> Int? {
        guard let data = FileManager.default.contents(atPath: storePath),
            let kept = try? JSONDecoder().decode(PublishedRuleSet.self, from: data)
        else { return nil }
        do {
            let files = try kept.ruleFiles()
            apply(files, "\(kept.name)@v\(kept.version)")
            state.withLock { $0.applied = kept.version }
            logger.notice("applied the rule set kept from the last run", metadata: ["name": "\(kept.name)", "version": "\(kept.version)"])
            return kept.version
        } catch {
            logger.warning("the kept rule set no longer checks; waiting for the topic", metadata: ["path": "\(storePath)", "error": "\(error)"])
            return nil
        }
    }

    /// Follows the topic until `stop`; runs on a thread of its own (librdkafka's poll blocks).
    func run() {
        var consumer: KafkaConsumer?
        var reporter: KafkaProducer?
        while !state.withLock({ $0.stopped }) {
            do {
                if consumer == nil {
                    var configuration = KafkaConsumerConfiguration(
                        brokers: brokers, groupID: "edgetrail-filters-\(node)-\(UInt32.random(in: 0...UInt32.max))",
                        topics: [settings.topic])
                    configuration.autoCommit = false
                    configuration.properties["allow.auto.create.topics"] = "true"
                    consumer = try KafkaConsumer(configuration: configuration)
                }
                if reporter == nil {
                    var configuration = KafkaProducerConfiguration(brokers: brokers)
                    configuration.messageTimeoutMilliseconds = 60_000
                    reporter = try KafkaProducer(configuration: configuration)
                }
                _ = reporter?.poll()
                guard let message = try consumer?.poll(timeoutMilliseconds: 200) else { continue }
                guard message.key == Array(settings.name.utf8),
                    let set = try? JSONDecoder().decode(PublishedRuleSet.self, from: Data(message.value)),
                    set.name == settings.name, set.version > appliedVersion,
                    set.selector.matches(node: node, cnf: cnf)
                else { continue }
                let status = take(set)
                if let reporter {
                    try reporter.send(topic: settings.statusTopic, key: Array("\(node)/\(settings.name)".utf8), value: status.encoded(), id: UInt64(set.version))
                }
            } catch {
                logger.warning("cannot follow the published rule sets; retrying", metadata: ["topic": "\(settings.topic)", "error": "\(error)"])
                consumer = nil
                Thread.sleep(forTimeInterval: 2)
            }
        }
        consumer?.close()
        _ = reporter?.flush(timeoutMilliseconds: 2000)
    }

    func stop() {
        state.withLock { $0.stopped = true }
    }

    /// Checks and applies `set`, or refuses it; keeps an applied one; says which.
    func take(_ set: PublishedRuleSet) -> RuleSetStatus {
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        do throws(DiagnosticsError) {
            let files = try set.ruleFiles()
            let unreachable = RuleReach.problems(files, sources: sources)
            guard unreachable.isEmpty else { throw DiagnosticsError(unreachable) }
            apply(files, "\(set.name)@v\(set.version)")
            state.withLock { $0.applied = set.version }
            keep(set)
            counted(true)
            logger.notice(
                "applied a published rule set", metadata: ["name": "\(set.name)", "version": "\(set.version)", "author": "\(set.author)"])
            return RuleSetStatus(node: node, cnf: cnf, name: set.name, version: set.version, outcome: .applied, atNs: now)
        } catch {
            let errors = error.diagnostics.map(\.description)
            counted(false)
            logger.warning(
                "refused a published rule set; the rules in force stay",
                metadata: ["name": "\(set.name)", "version": "\(set.version)", "errors": "\(errors.joined(separator: "; "))"])
            return RuleSetStatus(node: node, cnf: cnf, name: set.name, version: set.version, outcome: .refused, errors: errors, atNs: now)
        }
    }

    private func keep(_ set: PublishedRuleSet) {
        let directory = (storePath as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            try Data(set.encoded()).write(to: URL(fileURLWithPath: storePath), options: .atomic)
        } catch {
            logger.warning("cannot keep the applied rule set for the next start", metadata: ["path": "\(storePath)", "error": "\(error)"])
        }
    }
}
