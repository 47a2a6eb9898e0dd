import ArgumentParser
import EdgetrailCNF
import EdgetrailCore

struct CNFCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cnf",
        abstract: "Check CNF specs, and deploy, update, inspect and delete CNFs on an edge node.",
        discussion: """
            'validate' works on files alone. The others talk to a node's agent (started by \
            'edgetrail node up'; --node NAME, default edge-1): deploy DIR|FILE, update DIR|FILE, \
            status NAME, list, delete NAME.
            """,
        subcommands: [Validate.self, Deploy.self, Update.self, Status.self, List.self, Delete.self])

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check CNF specs: prints 'ok', or every problem as FILE:LINE:COLUMN: message.",
            discussion: """
                Checks the YAML, required fields, μsrv kinds and events, handler bindings and files \
                (relative to the spec's folder), and datapath rules (addresses, ports, actions, labels, \
                rates). Each handler file is compiled with Python (python3, or EDGETRAIL_PYTHON): a syntax \
                error is reported at its FILE:LINE:COLUMN, a file without handle(event, ctx) is warned \
                about. Exits 0 when every file is valid (warnings allowed), 1 otherwise. See \
                docs/cnf-spec.md and docs/handlers.md.
                """)

        @Argument(help: "CNF spec files (YAML).")
        var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                do {
                    let spec = try CNFSpecReader.load(path: file)
                    let findings = try HandlerCheck.check(HandlerCheck.files(of: spec, at: file))
                    for finding in findings { print(finding) }
                    if findings.contains(where: { !$0.isWarning }) {
                        failed = true
                    } else {
                        print(files.count == 1 ? "ok" : "\(file): ok")
                    }
                } catch let error as DiagnosticsError {
                    failed = true
                    for diagnostic in error.diagnostics { print(diagnostic) }
                } catch {
                    failed = true
                    print("\(file): \(error)")
                }
            }
            if failed { throw ExitCode.failure }
        }
    }
}
