import ArgumentParser
import EdgetrailCore

/// Addresses given on the command line.
enum Address {
    /// `HOST:PORT` (`localhost` is 127.0.0.1); port 0 asks for a free one where `ports` allows it.
    static func hostPort(_ text: String, option: String, ports: ClosedRange<Int> = 0...65535) throws -> (host: String, port: Int) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), ports.contains(port), !parts[0].isEmpty else {
            throw commandFailure("\(option) '\(text)' is not an address; write it as HOST:PORT, e.g. 127.0.0.1:8080")
        }
        return (parts[0] == "localhost" ? "127.0.0.1" : String(parts[0]), port)
    }

    /// `HOST:PORT`, or a Unix socket path (anything with a '/').
    static func endpoint(_ text: String, option: String) throws -> EdgetrailCore.Endpoint {
        if text.contains("/") { return .unix(path: text) }
        let address = try hostPort(text, option: option)
        return .tcp(host: address.host, port: address.port)
    }
}

/// Says what is wrong (on stderr, as 'error: …') and ends the command with status 1, without the
/// usage text a `ValidationError` adds.
func commandFailure(_ message: String) -> ExitCode {
    printError("error: \(message)")
    return ExitCode.failure
}
