import ArgumentParser
import EdgetrailCore
import EdgetrailFilters
import EdgetrailProto
import EdgetrailTelemetry
import Foundation

struct FiltersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filters",
        abstract: "Work with filter rule files (what leaves the edge).",
        subcommands: [Lint.self, Test.self])

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
private func loadRuleFile(_ file: String) -> RuleFile? {
    do {
        return try RuleFile.load(path: file)
    } catch {
        let source = FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) } ?? ""
        print(DiagnosticRenderer.render(error.diagnostics, source: source), terminator: "")
        return nil
    }
}
