import EdgetrailCore
import EdgetrailDatapath
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

@Suite(
    "http-proxy in transparent mode inside a throwaway edge node", .serialized,
    .enabled(if: getuid() == 0, "SKIPPED: network namespaces and eBPF need root"))
struct TransparentProxyTests {
    @Test("the datapath steers the client's connection into the proxy pod: the client sees the origin's address, the origin sees only the proxy")
    func transparent() async throws {
        let binary = try edgetrailBinary()
        let object = try TestInfra.datapathObject()
        let topology = try EdgeNodeNamespaces()
        defer { topology.tearDown() }
        let pod = try topology.addPod("proxy")
        let runDirectory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: runDirectory) }
        try topology.start(topology.server, "\(binary) origin --listen 10.201.0.2:80 --dir \(TestInfra.packageRoot)/examples/origin")
        try topology.start(
            pod.namespace,
            "\(binary) microservice run http-proxy --name http-proxy --cnf transparent-test --run-dir \(runDirectory) "
                + "--transparent --listen 0.0.0.0:80 --otlp \(runDirectory)/no-collector.sock")
        let datapath = try BPFDatapath(objectPath: object)
        try topology.inNode {
            try datapath.attach(interface: topology.clientInterface)
            _ = try datapath.apply(
                [try DatapathRule.parse(shorthand: "10.201.0.2 80 : redirect => [http-proxy]")],
                pods: [DatapathPod(name: "http-proxy", labels: ["http-proxy"], nodeInterface: pod.nodeInterface, mac: pod.mac)])
        }
        defer { _ = try? topology.inNode { datapath.detach() } }

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
    }
}
