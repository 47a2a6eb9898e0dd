import ArgumentParser
import EdgetrailCore
import EdgetrailCentralAPI
import Foundation

struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Print one session reconstructed end to end: its span tree, flows and Redis snapshots.",
        discussion: """
            Asks central (GET /v1/cookies/{cookie}). The text form lists the session in time order: \
            spans indented by their depth in the span tree with durations, flows and snapshots where \
            they happened. The JSON form is the API's contract, for other tools.
            """)

    @Argument(help: "The session cookie: 16 hex digits.")
    var cookie: String

    @Option(help: "Central's query API.")
    var central = "http://127.0.0.1:7070"

    @Option(help: "text or json.")
    var format = "text"

    func validate() throws {
        guard Cookie(hex: cookie) != nil else {
            throw ValidationError("'\(cookie)' is not a cookie; write it as 16 hex digits, e.g. 00000000000000a1")
        }
        guard format == "text" || format == "json" else { throw ValidationError("--format must be text or json") }
    }

    func run() async throws {
        let client = CentralClient(base: central)
        do {
            let (timeline, json) = try await client.timeline(Cookie(hex: cookie)!)
            if format == "json" {
                print(String(decoding: json, as: UTF8.self))
            } else {
                print(timeline.renderText(), terminator: "")
            }
        } catch {
            printError("error: \(error.message)\(error.reason == .notCentral ? "; give --central that address" : "")")
            throw ExitCode.failure
        }
    }
}
