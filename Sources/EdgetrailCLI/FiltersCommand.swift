import ArgumentParser
import EdgetrailCore
import EdgetrailFilters
import EdgetrailKafka
import EdgetrailProto
import EdgetrailTelemetry
import Foundation

struct FiltersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filters",
        abstract: "Work with filter rule files (what leaves the edge).",
        subcommands: [Lint.self, Test.self, Publish.self, Status.self])

    struct Lint: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check rule files: prints 'ok', or every error as FILE:LINE:COLUMN: message with a caret line.",
            discussion: """
                Reports syntax errors, unknown fields (with a suggestion), type mismatches (text vs \
                number), bad regular expressions, and rules that can never be reached because an \
                earlier rule always decides first. Exits 1 when any file has an error.
                """)

        @Argument(help: "Rule files (filters/*.rules).")
        var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                if let rules = loadRuleFile(file) {
                    print(files.count == 1 ? "ok (\(rules.statements.count) rules)" : "\(file): ok (\(rules.statements.count) rules)")
                } else {
                    failed = true
                }
            }
            if failed { throw ExitCode.failure }
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Dry-run rule files over a capture: matches per rule, what is kept, bytes/s to Kafka.",
            discussion: """
                The capture holds CookieBatches as a collector's join released them \
                ('edgetrail collector --capture FILE'; a sample is filters/testdata/sample.capture). \
                With --explain COOKIE, shows for that cookie which rule dropped or redacted each record \
                and which rule decided the cookie, and why.
                """)

        @Argument(help: "Rule files, applied in order.")
        var files: [String]

        @Option(help: "The capture file.")
        var input: String

        @Option(help: "A cookie (16 hex digits) to explain.")
        var explain: String?

        func run() throws {
            let loaded = files.map(loadRuleFile)
            let rules = loaded.compactMap { $0 }
            if rules.count < loaded.count { throw ExitCode.failure }
            var cookie: Cookie?
            if let explain {
                guard let parsed = Cookie(hex: explain) else {
                    throw ValidationError("--explain '\(explain)' is not a cookie; write it as 16 hex digits")
                }
                cookie = parsed
            }
            let batches: [Edgetrail_V1_CookieBatch]
            do {
                batches = try CaptureFile.read(path: input)
            } catch {
                printError("error: cannot read the capture \(input): \(error.localizedDescription)")
                throw ExitCode.failure
            }
            let result = DryRun.run(files: rules, batches: batches, explain: cookie)
            print(result.report(), terminator: "")
            if let cookie, result.explanation.isEmpty {
                print("explain: cookie \(cookie) is not in the capture")
            }
        }
    }
}

/// Loads and checks one rule file; on failure prints its problems with the line and a caret under
/// each (bytes that are not UTF-8 shown as U+FFFD, so the caret still lands on the bad one).
extension FiltersCommand {
    struct Publish: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish rule files as the next version of a named rule set, for every matching edge collector.",
            discussion: """
                Lints the files first (every error as FILE:LINE:COLUMN, nothing published). Then writes \
                the set — name, the next version, the selector, the files' text, author and time — to \
                the topic (created compacted, one partition, if it does not exist), keyed by the name. \
                Collectors configured with 'filters: {kafka: {topic: …, name: NAME}}' whose node and CNF \
                match the selector check and apply it between cookies, as they would a file edit. To \
                roll back, publish the previous files again: versions only go up.
                """)

        @Argument(help: "Rule files, applied in order.")
        var files: [String]

        @Option(help: "The rule set's name (what collectors follow).")
        var name: String

        @Option(help: "Which collectors: node=GLOB,cnf=GLOB (shell globs; a missing key matches all).")
        var selector = "node=*,cnf=*"

        @Option(help: "Kafka-protocol brokers, HOST:PORT.")
        var brokers = "127.0.0.1:19092"

        @Option(help: "The control topic.")
        var topic = "edgetrail.filters"

        @Option(help: "Who publishes (default: $USER@host).")
        var author: String?

        func run() throws {
            if let problem = PublishedRuleSet.nameProblem(name) { throw commandFailure("--name '\(name)' \(problem)") }
            let parsedSelector: RuleSetSelector
            do {
                parsedSelector = try RuleSetSelector(parsing: selector)
            } catch {
                throw commandFailure("--selector: \(error)")
            }
            var failed = false
            var texts: [PublishedRuleSet.File] = []
            for file in files {
                guard loadRuleFile(file) != nil else {
                    failed = true
                    continue
                }
                let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
                texts.append(PublishedRuleSet.File(name: (file as NSString).lastPathComponent, text: text))
            }
            if failed {
                printError("error: nothing published; fix the errors above")
                throw ExitCode.failure
            }
            do {
                let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(brokers: brokers))
                _ = try producer.ensureTopic(topic, partitions: 1, configs: ["cleanup.policy": "compact"], timeoutMilliseconds: 5000)
                let existing = try KafkaTopicReader.readAll(brokers: brokers, topic: topic, timeoutMilliseconds: 10_000)
                let previous = PublishedRuleSet.newest(existing.filter { $0.key == Array(name.utf8) }.map(\.value))[name]
                let environment = ProcessInfo.processInfo.environment
                let set = PublishedRuleSet(
                    name: name, version: (previous?.version ?? 0) + 1, selector: parsedSelector, files: texts,
                    author: author ?? "\(environment["USER"] ?? environment["LOGNAME"] ?? "unknown")@\(ProcessInfo.processInfo.hostName)",
                    publishedAtNs: UInt64(Date().timeIntervalSince1970 * 1e9))
                try producer.send(topic: topic, key: Array(name.utf8), value: set.encoded(), id: 1)
                let reports = producer.flush(timeoutMilliseconds: 10_000)
                guard let report = reports.first(where: { $0.id == 1 }) else {
                    throw commandFailure("the broker at \(brokers) did not acknowledge the rule set within 10 s; nothing was published")
                }
                if let error = report.error { throw commandFailure("the broker refused the rule set: \(error)") }
                print("published \(name) version \(set.version) (\(texts.count) file\(texts.count == 1 ? "" : "s"), selector \(parsedSelector)) to \(topic)")
                if let previous { print("  replaces version \(previous.version) (selector \(previous.selector), by \(previous.author))") }
            } catch let error as KafkaError {
                throw commandFailure("\(error); is the broker at \(brokers) up ('edgetrail infra up')?")
            }
        }
    }
}

extension FiltersCommand {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Where a published rule set stands: per node, the version applied and when, or refused and why.",
            discussion: """
                Reads the rule set's versions from the control topic and the collectors' reports from \
                the status topic. A node that answered an earlier version but not the newest is listed \
                as not having answered it (down, or not selected by the newest selector). Exits 1 when \
                a node refused the newest version.
                """)

        @Argument(help: "The rule set's name.")
        var name: String

        @Option(help: "Kafka-protocol brokers, HOST:PORT.")
        var brokers = "127.0.0.1:19092"

        @Option(help: "The control topic.")
        var topic = "edgetrail.filters"

        @Option(help: "The topic collectors report on.")
        var statusTopic = "edgetrail.filters.status"

        func run() throws {
            let sets: [PublishedRuleSet]
            let reports: [RuleSetStatus]
            do {
                let published = try KafkaTopicReader.readAll(brokers: brokers, topic: topic)
                sets = published.compactMap { try? JSONDecoder().decode(PublishedRuleSet.self, from: Data($0.value)) }.filter { $0.name == name }
                reports = try KafkaTopicReader.readAll(brokers: brokers, topic: statusTopic)
                    .compactMap { try? JSONDecoder().decode(RuleSetStatus.self, from: Data($0.value)) }.filter { $0.name == name }
            } catch {
                throw commandFailure("\(error); is the broker at \(brokers) up ('edgetrail infra up')?")
            }
            guard let newest = sets.max(by: { $0.version < $1.version }) else {
                throw commandFailure("no rule set named '\(name)' was published on \(topic)")
            }
            print("\(name): version \(newest.version), selector \(newest.selector), published by \(newest.author) at \(RolloutSummary.time(newest.publishedAtNs))")
            let table = RolloutSummary(newest: newest.version, reports: reports)
            for line in table.lines { print("  " + line) }
            if table.refusedNewest { throw ExitCode.failure }
        }

    }
}

private func loadRuleFile(_ file: String) -> RuleFile? {
    do {
        return try RuleFile.load(path: file)
    } catch {
        let source = FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) } ?? ""
        print(DiagnosticRenderer.render(error.diagnostics, source: source), terminator: "")
        return nil
    }
}
