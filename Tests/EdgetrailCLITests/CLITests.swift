import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Runs the built `edgetrail` executable the way an operator would.
private func edgetrail(_ arguments: [String], in directory: String? = nil) throws -> (status: Int32, output: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("edgetrail")
    guard FileManager.default.isExecutableFile(atPath: binary.path) else {
        throw CLITestError("no edgetrail executable at \(binary.path); run 'swift build' first")
    }
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

private struct CLITestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

@Suite("edgetrail command line")
struct CLITests {
    @Test("cnf validate prints ok and exits 0 for the example CNF")
    func validateExample() throws {
        let result = try edgetrail(["cnf", "validate", "examples/edgesecurity/cnf.yaml"], in: packageRoot)
        #expect(result.status == 0)
        #expect(result.output == "ok\n")
    }

    @Test("cnf validate prints every problem as FILE:LINE:COLUMN: message and exits 1")
    func validateReportsProblems() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cnf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let spec = """
            name: demo
            node: edge-1
            microservices:
              - name: proxy
                kind: http-proxy
            handlers:
              - microservice: proxy
                event: request_received
                file: handlers/missing.py
            datapath:
              - "10.201.0.2 80 : bounce => [proxy]"
              - "10.201.0.3 80 : redirect => [ghost]"
            """
        try spec.write(to: directory.appendingPathComponent("cnf.yaml"), atomically: true, encoding: .utf8)
        let result = try edgetrail(["cnf", "validate", "cnf.yaml"], in: directory.path)
        #expect(result.status == 1)
        #expect(result.output.split(separator: "\n") == [
            "cnf.yaml:9:11: cannot read handler file 'handlers/missing.py': no such file",
            "cnf.yaml:11:22: unknown action 'bounce' (expected redirect, copy, deny, ratelimit)",
            "cnf.yaml:12:35: no μsrv carries the label 'ghost' (labels in this CNF: proxy)",
        ])
    }

    @Test("cnf validate compiles each handler file: a syntax error at its FILE:LINE:COLUMN, a missing handle warned about")
    func validateHandlerCode() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edgetrail-cli-handlers-\(getpid())")
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("handlers"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let files = [
            "handlers/on_request.py": "from edgetrail.sdk import Verdict\n\ndef handle(event, ctx):\n    return Verdict.allow(\n",
            "handlers/on_response.py": "def on_response(event, ctx):\n    pass\n",
            "handlers/on_inspect.py": "async def handle(event, ctx):\n    pass\n",
        ]
        for (name, text) in files {
            try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        let spec = """
            name: t
            node: edge-1
            microservices:
              - { name: proxy, kind: http-proxy }
              - { name: inspect, kind: content-inspect }
            handlers:
              - { microservice: proxy, event: request_received, file: handlers/on_request.py }
              - { microservice: proxy, event: response_sent, file: handlers/on_response.py }
              - { microservice: inspect, event: inspect_done, file: handlers/on_inspect.py }
            """
        try spec.write(to: directory.appendingPathComponent("cnf.yaml"), atomically: true, encoding: .utf8)
        let result = try edgetrail(["cnf", "validate", "cnf.yaml"], in: directory.path)
        #expect(result.status == 1)
        #expect(result.output.split(separator: "\n") == [
            "handlers/on_inspect.py:1:1: warning: handle is 'async def'; handlers are plain functions (the sidecar runs each on a thread of its own)",
            "handlers/on_request.py:4:25: SyntaxError: '(' was never closed",
            "handlers/on_response.py:1:1: warning: defines no handle(event, ctx); the sidecar will give its events their default verdict",
        ])
        // Fixed, only the warnings remain, and they do not fail the spec.
        try files["handlers/on_request.py"]!.appending(")\n").write(
            to: directory.appendingPathComponent("handlers/on_request.py"), atomically: true, encoding: .utf8)
        let fixed = try edgetrail(["cnf", "validate", "cnf.yaml"], in: directory.path)
        #expect(fixed.status == 0)
        #expect(fixed.output.split(separator: "\n").last == "ok")
        #expect(fixed.output.split(separator: "\n").count == 3)
    }

    @Test("microservice run refuses what it cannot run, saying why, before it opens anything")
    func microserviceRunRefusals() throws {
        let directory = NSTemporaryDirectory() + "edgetrail-cli-ms-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kind = try edgetrail(["microservice", "run", "gateway", "--name", "g", "--cnf", "x", "--run-dir", directory])
        #expect(kind.status == 1)
        #expect(kind.output.contains("unknown kind 'gateway' (expected one of: http-proxy, policy-mgr, content-inspect, anti-virus)"))
        let proxy = try edgetrail(["microservice", "run", "http-proxy", "--name", "p", "--cnf", "x", "--run-dir", directory])
        #expect(proxy.status == 1)
        #expect(proxy.output.contains("http-proxy needs --upstream HOST:PORT (explicit mode) or --transparent"))
        let stranger = try edgetrail(
            ["microservice", "run", "policy-mgr", "--name", "nope", "--cnf", packageRoot + "/examples/edgesecurity", "--run-dir", directory])
        #expect(stranger.output.contains("CNF 'edgesecurity' has no μsrv 'nope' (it has: http-proxy, policy-mgr, content-inspect)"))
        let settings = directory + "/policy.yaml"
        try "policy:\n  rules:\n    - name: a\n      action: block\n".write(toFile: settings, atomically: true, encoding: .utf8)
        let badFile = try edgetrail(
            ["microservice", "run", "policy-mgr", "--name", "p", "--cnf", "x", "--run-dir", directory, "--config", settings])
        #expect(badFile.status == 1)
        #expect(badFile.output.contains("\(settings):4:15: 'block' is not a valid action (expected one of: allow, deny)"))
        // Nothing was served: no sockets were left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["policy.yaml"])
    }

    @Test("microservice run fails at once when its port or its sockets are taken, and leaves nothing behind")
    func microserviceRunTakenPlaces() throws {
        let directory = NSTemporaryDirectory() + "edgetrail-cli-taken-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A port another program listens on.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(holder, $0, length) == 0 && listen(holder, 1) == 0 && getsockname(holder, $0, &length) == 0
            }
        }
        let port = UInt16(bigEndian: address.sin_port)
        let proxy = try edgetrail([
            "microservice", "run", "http-proxy", "--name", "p", "--cnf", "x", "--run-dir", directory,
            "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:1",
        ])
        #expect(proxy.status == 1)
        #expect(proxy.output.contains("http-proxy cannot listen on 127.0.0.1:\(port): the port is in use by another program"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [])

        // A μsrv's socket another live process serves.
        let served = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(served) }
        var unixAddress = sockaddr_un()
        unixAddress.sun_family = sa_family_t(AF_UNIX)
        let path = directory + "/q.api.sock"
        withUnsafeMutableBytes(of: &unixAddress.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() { bytes[index] = byte }
        }
        _ = withUnsafePointer(to: &unixAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(served, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 && listen(served, 1) == 0
            }
        }
        let second = try edgetrail(["microservice", "run", "content-inspect", "--name", "q", "--cnf", "x", "--run-dir", directory])
        #expect(second.status == 1)
        #expect(second.output.contains("\(path) is served by another process"))
        #expect(FileManager.default.fileExists(atPath: path), "the other process's socket stays")
    }

    @Test("cnf validate on a file that does not exist says so and exits 1")
    func validateMissingFile() throws {
        let result = try edgetrail(["cnf", "validate", "/nonexistent/cnf.yaml"])
        #expect(result.status == 1)
        #expect(result.output == "/nonexistent/cnf.yaml:1:1: cannot read the CNF spec: no such file\n")
    }

    @Test("a rule file saved as Latin-1 is refused at its first bad byte, with the line and a caret under it")
    func ruleFileNotUTF8() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("latin1.rules").path
        // "Zürich" written by an editor set to Latin-1: ü is the single byte 0xFC.
        let text = Array("redact span.tags[\"url.query\"] with \"-\"\nredact span.tags[\"http.url\"] with \"Z".utf8) + [0xFC]
            + Array("rich\"\n".utf8)
        FileManager.default.createFile(atPath: file, contents: Data(text))
        let result = try edgetrail(["filters", "lint", file])
        #expect(result.status == 1)
        #expect(result.output.split(separator: "\n", omittingEmptySubsequences: false) == [
            "\(file):2:37: cannot read the rule file: byte 0xFC is not UTF-8 text; save the file as UTF-8",
            "    redact span.tags[\"http.url\"] with \"Z\u{FFFD}rich\"",
            "                                        ^",
            "",
        ])
    }

    @Test("a CNF spec that is a folder, or has a bad byte, says which")
    func specNotReadable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let folder = try edgetrail(["cnf", "validate", directory.path])
        #expect(folder.status == 1)
        #expect(folder.output == "\(directory.path):1:1: cannot read the CNF spec: it is a folder, not a file\n")
        let file = directory.appendingPathComponent("cnf.yaml").path
        FileManager.default.createFile(atPath: file, contents: Data(Array("name: edge\u{E9}\n".utf8) + [0xC3, 0x28]))
        let bad = try edgetrail(["cnf", "validate", file])
        #expect(bad.status == 1)
        #expect(bad.output == "\(file):2:1: cannot read the CNF spec: byte 0xC3 is not UTF-8 text; save the file as UTF-8\n")
    }

    @Test("infra status prints one line per service with down and its address when nothing runs")
    func statusWhenDown() throws {
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: runDirectory) }
        let result = try edgetrail([
            "infra", "status", "--run-dir", runDirectory.path, "--redis-port", "16001", "--broker-port", "16002",
            "--postgres-port", "16003",
        ])
        #expect(result.status == 0)
        #expect(result.output.split(separator: "\n") == [
            "redis    down 127.0.0.1:16001",
            "broker   down 127.0.0.1:16002",
            "clamd    down \(runDirectory.path)/clamd.sock",
            "postgres down 127.0.0.1:16003",
        ])
    }

    @Test("--help explains the subcommands")
    func help() throws {
        let result = try edgetrail(["--help"])
        #expect(result.status == 0)
        for subcommand in ["demo", "infra", "cnf"] {
            #expect(result.output.contains(subcommand))
        }
    }
}
