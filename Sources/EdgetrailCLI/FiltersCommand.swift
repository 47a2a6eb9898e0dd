import ArgumentParser
import EdgetrailCore
import EdgetrailFilters
import Foundation

struct FiltersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filters",
        abstract: "Work with filter rule files (what leaves the edge).",
        subcommands: [Lint.self])

    struct Lint: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check rule files: prints 'ok', or every error as FILE:LINE:COLUMN: message with a caret line.",
            discussion: """
                Reports syntax errors, unknown fields (with a suggestion), type mismatches (text vs
                number), bad regular expressions, and rules that can never be reached because an
                earlier rule always decides first. Exits 1 when any file has an error.
                """)

        @Argument(help: "Rule files (filters/*.rules).")
        var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                do {
                    let rules = try RuleFile.load(path: file)
                    print(files.count == 1 ? "ok (\(rules.statements.count) rules)" : "\(file): ok (\(rules.statements.count) rules)")
                } catch {
                    failed = true
                    let source = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
                    print(DiagnosticRenderer.render(error.diagnostics, source: source), terminator: "")
                }
            }
            if failed { throw ExitCode.failure }
        }
    }
}
