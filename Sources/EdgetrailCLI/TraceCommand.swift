import ArgumentParser
import EdgetrailCore
import EdgetrailTelemetry
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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
        let hex = Cookie(hex: cookie)!.hex
        guard let url = URL(string: "\(central)/v1/cookies/\(hex)") else {
            throw ValidationError("--central '\(central)' is not a URL")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(from: url)
        } catch {
            printError("error: cannot reach central at \(central): \(error.localizedDescription); is 'edgetrail central' running?")
            throw ExitCode.failure
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            let body = String(decoding: data.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if let message = (try? JSONDecoder().decode([String: String].self, from: data))?["error"] {
                printError("error: \(message)")
            } else if status == 404 {
                // Not central's own answer: the URL names something else (e.g. a path after the port).
                printError(
                    "error: \(url.absoluteString) answered 404 Not Found; --central takes central's base address, "
                        + "like http://127.0.0.1:7070, without a path")
            } else {
                printError(
                    "error: central at \(central) answered HTTP \(status)\(body.isEmpty ? " with an empty body" : ": \(body)")")
            }
            throw ExitCode.failure
        }
        if format == "json" {
            print(String(decoding: data, as: UTF8.self))
            return
        }
        do {
            let timeline = try JSONDecoder().decode(CookieTimeline.self, from: data)
            print(timeline.renderText(), terminator: "")
        } catch {
            printError("error: central answered something that is not a cookie timeline: \(error)")
            throw ExitCode.failure
        }
    }
}
