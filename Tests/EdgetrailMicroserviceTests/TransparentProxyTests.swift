import EdgetrailCore
import EdgetrailNet
import EdgetrailNode
import EdgetrailTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `edgetrail` beside the test bundle.
func edgetrailBinary() throws -> String {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("edgetrail").path
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        throw HTTPTestError("no edgetrail executable at \(binary); run 'swift build' first")
    }
    return binary
}

/// An `edgetrail` process whose output the test reads.
final class Background: @unchecked Sendable {
    let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var collected = Data()

    init(_ binary: String, _ arguments: String...) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            self.lock.lock()
            self.collected.append(data)
            self.lock.unlock()
        }
        try process.run()
    }

    var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        pipe.fileHandleForReading.readabilityHandler = nil
    }
}

func waitFor(path: String, seconds: Double = 30) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !FileManager.default.fileExists(atPath: path) {
        guard Date() < deadline else { throw HTTPTestError("\(path) did not appear within \(seconds) s") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

@Suite(
    "http-proxy in transparent mode inside a throwaway edge node", .serialized,
    .enabled(if: getuid() == 0, "SKIPPED: network namespaces and eBPF need root"))
struct TransparentProxyTests {
    @Test("the datapath steers the client's connection into the proxy pod: the client sees the origin's address, the origin sees only the proxy, the flow carries the cookie")
    func transparent() async throws {
        try await TestInfra.with([.redis]) { infra in try await transparent(redisSocket: infra.redisSocket, redisPort: infra.redisPort) }
    }

    func transparent(redisSocket: String, redisPort: Int) async throws {
        let binary = try edgetrailBinary()
        let object = try TestInfra.datapathObject()
        let topology = try EdgeNodeNamespaces()
        defer { topology.tearDown() }
        let pod = try topology.addPod("proxy")
        let runDirectory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: runDirectory) }
        try topology.start(topology.server, "\(binary) origin --listen 10.201.0.2:80 --dir \(TestInfra.packageRoot)/examples/origin")
        // The node's Datapath Manager, with the redirect into the proxy pod; the proxy binds each
        // client flow to its session's cookie through it.
        let managerSocket = runDirectory + "/datapath.sock"
        let macText = pod.mac.map { String(format: "%02x", $0) }.joined(separator: ":")
        try """
            rules:
              - "10.201.0.2 80 : redirect => [http-proxy]"
            pods:
              - name: http-proxy
                labels: [http-proxy]
                interface: \(pod.nodeInterface)
                mac: "\(macText)"
            """.write(toFile: runDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
        let manager = try Background(
            binary, "datapath", "serve", "--interface", topology.clientInterface, "--netns", topology.node,
            "--socket", managerSocket, "--object", object, "--node", "transparent-test")
        defer { manager.stop() }
        try await waitFor(path: managerSocket)
        let applied = try Background(binary, "datapath", "apply", runDirectory + "/rules.yaml", "--socket", managerSocket)
        #expect(applied.wait() == 0)
        let events = try Background(binary, "datapath", "events", "--json", "--socket", managerSocket)
        defer { events.stop() }
        try topology.start(
            pod.namespace,
            "\(binary) microservice run http-proxy --name http-proxy --cnf transparent-test --run-dir \(runDirectory) "
                + "--transparent --listen 0.0.0.0:80 --otlp \(runDirectory)/no-collector.sock --datapath-socket \(managerSocket) "
                + "--redis \(redisSocket)")

        let client = topology.client
        let (page, clients) = try await onThread("client") { () throws -> (HTTPTestClient.Response, HTTPTestClient.Response) in
            try NetworkNamespace.run(named: client) {
                // The proxy and the origin start in the background: retry until both answer.
                let deadline = Date().addingTimeInterval(30)
                while true {
                    do {
                        let connection = try HTTPTestClient(host: "10.201.0.2", port: 80)
                        let page = try connection.get("/")
                        if page.headers["edgetrail-cookie"] != nil, page.status == 200 {
                            return (page, try connection.get("/_origin/clients"))
                        }
                    } catch where Date() < deadline {
                    }
                    guard Date() < deadline else { throw HTTPTestError("no answer through the proxy within 30 s") }
                    usleep(200_000)
                }
            }
        }
        // The client talked to 10.201.0.2:80 and got the origin's page, through the proxy (which
        // stamped the session's cookie on it)…
        #expect(page.text.contains("<h1>The origin</h1>"))
        #expect(page.headers["edgetrail-cookie"].flatMap { Cookie(hex: $0) } != nil)
        // …and the origin saw connections from the proxy pod only, never from the client.
        #expect(clients.text == "10.250.1.2\n")
        // The client's flow ended (the client closed it) carrying the cookie of a session on it.
        let cookies = Set([page, clients].compactMap { $0.headers["edgetrail-cookie"].flatMap { Cookie(hex: $0) } })
        let deadline = Date().addingTimeInterval(10)
        var bound = false
        while !bound, Date() < deadline {
            bound = events.output.split(separator: "\n").contains { line in
                cookies.contains { line.contains("\"cookie\":\"\($0.rawValue)\"") } && line.contains("\"srcIp\":\"\(Data([10, 200, 0, 2]).base64EncodedString())\"")
            }
            if !bound { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(bound, "no flow event of the client's flow carries its session's cookie: \(events.output)")
        // From inside its pod the proxy wrote the session's state to the node's Redis, through
        // Redis's Unix socket.
        let cookie = try #require(page.headers["edgetrail-cookie"])
        let state = try await redisHash(port: redisPort, key: "cookie:\(cookie):http-proxy:request")
        #expect(state["url"] == "http://origin.test/")
        #expect(state["origin"] == "10.201.0.2:80")
    }
}
