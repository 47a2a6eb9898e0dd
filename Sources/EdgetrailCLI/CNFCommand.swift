import ArgumentParser
import EdgetrailCNF
import EdgetrailCore

struct CNFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cnf",
        abstract: "Work with CNF specs (the YAML files that define a network function).",
        subcommands: [Validate.self])

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check CNF specs: prints 'ok', or every problem as FILE:LINE:COLUMN: message.",
            discussion: """
                Checks the YAML, required fields, μsrv kinds and events, handler bindings and files \
                (relative to the spec's folder), and datapath rules (addresses, ports, actions, labels, \
                rates). Exits 0 when every file is valid, 1 otherwise. See docs/cnf-spec.md.
                """)

        @Argument(help: "CNF spec files (YAML).")
        var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                do {
                    _ = try CNFSpecReader.load(path: file)
                    print(files.count == 1 ? "ok" : "\(file): ok")
                } catch {
                    failed = true
                    for diagnostic in error.diagnostics { print(diagnostic) }
                }
            }
            if failed { throw ExitCode.failure }
        }
    }
}
