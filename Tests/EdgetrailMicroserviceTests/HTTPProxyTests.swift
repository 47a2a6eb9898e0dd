import EdgetrailCNF
import EdgetrailCore
import EdgetrailHTTPProxy
import EdgetrailInfra
import EdgetrailNet
import EdgetrailMicroservice
import EdgetrailOrigin
import EdgetrailProto
import EdgetrailTesting
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// The origin (examples/origin and the generated bodies) on a free loopback port, for one test.
struct RunningOrigin: Sendable {
    let origin: OriginServer
    let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>

    static func start() async throws -> RunningOrigin {
        let origin = OriginServer(directory: TestInfra.packageRoot + "/examples/origin")
        let (bound, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "test.origin")
        logger.logLevel = .error
        let app = origin.application(host: "127.0.0.1", port: 0, logger: logger) { address in
            continuation.yield(address?.port ?? 0)
        }
        let group = ServiceGroup(services: [app], logger: logger)
        let task = Task { try await group.run() }
        var port = 0
        for await value in bound {
            port = value
            break
        }
        return RunningOrigin(origin: origin, port: port, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// An explicit-mode http-proxy in front of `upstreamPort`, on a free port.
func startProxy(
    upstreamPort: Int, redisPort: Int, inspectLimit: Int = 1 << 20, directory: String
) async throws -> (RunningMicroservice, HTTPProxy, Int) {
    let holder = Mutex<HTTPProxy?>(nil)
    let service = try await RunningMicroservice.start(
        .httpProxy, runDirectory: directory, redisPort: redisPort,
        policies: ["request_received": EventPolicy(timeout: .seconds(5)), "response_received": EventPolicy(timeout: .seconds(5))]
    ) { kit in
        var settings = ProxySettings(
            mode: .explicit(upstreamHost: "127.0.0.1", upstreamPort: upstreamPort), listenHost: "127.0.0.1", listenPort: 0)
        settings.inspectLimit = inspectLimit
        let proxy = HTTPProxy(kit: kit, settings: settings)
        holder.withLock { $0 = proxy }
        return ([HTTPProxyService(proxy: proxy)], proxy.services)
    }
    let proxy = holder.withLock { $0! }
    let port = await proxy.listeningAddress?.port ?? 0
    return (service, proxy, port)
}

@Suite("http-proxy in explicit mode in front of a real origin", .serialized)
struct HTTPProxyTests {
    @Test("one client connection carries several requests; content-length and chunked bodies arrive whole")
    func keepAliveAndChunked() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let responses = try await onThread("client") { () throws -> [HTTPTestClient.Response] in
                let client = try HTTPTestClient(port: port)
                return [
                    try client.get("/"), try client.get("/_origin/chunked/100000"), try client.get("/_origin/chunked/3000000"),
                    try client.get("/_origin/bytes/10240"),
                ]
            }
            #expect(responses.map(\.status) == [200, 200, 200, 200])
            #expect(responses[0].text.contains("<h1>The origin</h1>"))
            #expect(responses[1].body.count == 100_000)
            // Held for the handlers (it fits the inspection limit), so sent with its length…
            #expect(responses[1].headers["content-length"] == "100000")
            // …while the larger one streams through in chunks as it arrives.
            #expect(responses[2].body.count == 3_000_000)
            #expect(responses[2].headers["transfer-encoding"] == "chunked")
            #expect(responses[3].body.count == 10240)
            #expect(responses.allSatisfy { $0.headers["connection"] == "keep-alive" })
            let counts = service.kit.hub.counts
            #expect(counts["request_received"]?.raised == 4)
            // Only responses that fit the limit are held and offered to a handler before delivery.
            #expect(counts["response_received"]?.raised == 3)
            await service.stop()
            await origin.stop()
        }
    }

    @Test("a request body larger than the inspection limit streams on to the origin whole, and the connection stays usable")
    func largeUpload() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, inspectLimit: 64 * 1024, directory: try makeRunDirectory())
            let (upload, small, after) = try await onThread("client") {
                () throws -> (HTTPTestClient.Response, HTTPTestClient.Response, HTTPTestClient.Response) in
                let client = try HTTPTestClient(port: port)
                return (
                    try client.post("/_origin/upload", size: 3_000_000), try client.post("/_origin/upload", size: 1000),
                    try client.get("/_origin/bytes/10")
                )
            }
            #expect(upload.text == "received 3000000 bytes\n")
            #expect(small.text == "received 1000 bytes\n")
            #expect(after.body.count == 10)
            await service.stop()
            await origin.stop()
        }
    }

    @Test("a 50 MB download streams through, not held, and response_sent says it was not inspected")
    func largeDownload() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let sent = Mutex<[String: String]>([:])
            let response = try await service.withHandler(for: ["response_sent"]) { event in
                sent.withLock { $0 = event.attributes }
                return nil
            } _: {
                let response = try await onThread("client") { try HTTPTestClient(port: port).get("/_origin/bytes/50000000") }
                while sent.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(10)) }
                return response
            }
            #expect(response.status == 200)
            #expect(response.body.count == 50_000_000)
            #expect(response.body.allSatisfy { $0 == UInt8(ascii: "e") })
            let attributes = sent.withLock { $0 }
            #expect(attributes["http.body_inspected"] == "false")
            #expect(attributes["http.bytes_sent"] == "50000000")
            await service.stop()
            await origin.stop()
        }
    }

    @Test("stopping closes an idle keep-alive connection at once and lets a download in progress finish")
    func stopping() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let idle = try HTTPTestClient(port: port)
            let busy = try HTTPTestClient(port: port)
            let first = try await onThread("clients") { () throws -> Int in
                let status = try idle.get("/").status
                // Not read yet: the proxy is in the middle of this response when it is told to stop.
                try busy.send(get: "/_origin/bytes/50000000")
                return status
            }
            #expect(first == 200)
            try await Task.sleep(for: .milliseconds(300))
            let started = ContinuousClock.now
            let stopping = Task { await service.stop() }
            var closed = false
            for _ in 0..<250 where !closed {
                try await Task.sleep(for: .milliseconds(20))
                closed = idle.closedByServer
            }
            #expect(closed, "the idle connection is closed at once")
            let download = try await onThread("busy") { try busy.readResponse() }
            #expect(download.status == 200)
            #expect(download.body.count == 50_000_000, "the download in progress goes on to its last byte")
            await stopping.value
            #expect(ContinuousClock.now - started < .seconds(30), "stopping waited for the busy connection only")
            await origin.stop()
        }
    }

    @Test("a request its handler denies gets a 403 naming the reason and the cookie, and never reaches the origin")
    func deniedRequest() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, proxy, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let (denied, allowed) = try await service.withHandler(for: ["request_received"]) { event in
                verdict(event, deny: event.attributes["http.url"]!.contains("/private") ? "private pages are blocked" : nil)
            } _: {
                try await onThread("client") { () throws -> (HTTPTestClient.Response, HTTPTestClient.Response) in
                    let client = try HTTPTestClient(port: port)
                    return (try client.get("/private/report"), try client.get("/"))
                }
            }
            #expect(denied.status == 403)
            let cookie = try #require(denied.headers["edgetrail-cookie"].flatMap { Cookie(hex: $0) })
            #expect(denied.text.contains("private pages are blocked"))
            #expect(denied.text.contains(cookie.hex))
            // The connection stays usable after the 403, and only the allowed request reached the origin.
            #expect(allowed.status == 200)
            #expect(origin.origin.clientAddresses == ["127.0.0.1"])
            let session = try #require(proxy.session(cookie))
            #expect(session.url == "http://origin.test/private/report")
            let state = try await redisHash(port: infra.redisPort, key: "cookie:\(cookie.hex):http-proxy:response")
            #expect(state["status"] == "403")
            await service.stop()
            await origin.stop()
        }
    }

    @Test("a response its handler denies after reading the body (the EICAR file) is replaced by the 403")
    func deniedResponse() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let (eicar, page) = try await service.withHandler(for: ["response_received"]) { event in
                verdict(event, deny: event.payload.starts(with: Data("X5O!P%@AP".utf8)) ? "malware found" : nil)
            } _: {
                try await onThread("client") { () throws -> (HTTPTestClient.Response, HTTPTestClient.Response) in
                    let client = try HTTPTestClient(port: port)
                    return (try client.get("/downloads/eicar.com"), try client.get("/downloads/report.pdf"))
                }
            }
            #expect(eicar.status == 403)
            #expect(eicar.text.contains("malware found"))
            #expect(page.status == 200)
            #expect(page.text.hasPrefix("%PDF-"))
            await service.stop()
            await origin.stop()
        }
    }

    @Test("an upstream that does not answer gets the client a 502 page that says why")
    func upstreamDown() async throws {
        try await TestInfra.with([.redis]) { infra in
            let (service, _, port) = try await startProxy(
                upstreamPort: SocketProbe.freePort(), redisPort: infra.redisPort, directory: try makeRunDirectory())
            let response = try await onThread("client") { try HTTPTestClient(port: port).get("/") }
            #expect(response.status == 502)
            #expect(response.text.contains("cannot reach 127.0.0.1:"))
            await service.stop()
        }
    }
}

/// An origin that answers each request with a 200 and a length, then closes the connection
/// without saying so (as an origin whose keep-alive timer ran out does).
final class ClosingOrigin: Sendable {
    let port: Int
    private let listener: Int32
    private let served = Counter()

    final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func next() -> Int { value.add(1, ordering: .relaxed).newValue }
    }

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 16) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        guard bound else { throw HTTPTestError("cannot listen") }
        port = Int(UInt16(bigEndian: address.sin_port))
        let served = self.served
        Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                _ = recv(connection, &buffer, buffer.count, 0)
                let count = served.next()
                let response = Array("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nanswer \(count)\n".utf8)
                _ = SocketIO.writeAll(connection, response)
                close(connection)
            }
        }.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}

@Suite("http-proxy and its upstream connections", .serialized)
struct HTTPProxyUpstreamTests {
    @Test("an upstream connection the origin closed while idle is replaced, and the request sent again")
    func staleUpstream() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try ClosingOrigin()
            defer { origin.stop() }
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let bodies = try await onThread("client") { () throws -> [String] in
                let client = try HTTPTestClient(port: port)
                var bodies: [String] = []
                for _ in 0..<3 {
                    bodies.append(try client.get("/").text)
                    usleep(50_000)  // the origin's close arrives at the proxy
                }
                return bodies
            }
            #expect(bodies == ["answer 1\n", "answer 2\n", "answer 3\n"])
            await service.stop()
        }
    }

    @Test("a client that waits for 100 Continue before its body gets it, and then the answer")
    func expectContinue() async throws {
        try await TestInfra.with([.redis]) { infra in
            let origin = try await RunningOrigin.start()
            let (service, _, port) = try await startProxy(
                upstreamPort: origin.port, redisPort: infra.redisPort, directory: try makeRunDirectory())
            let (interim, final) = try await onThread("client") { () throws -> (String, String) in
                let fd = SocketProbe.connect(to: .tcp(host: "127.0.0.1", port: port))
                defer { close(fd) }
                SocketIO.setTimeout(fd, seconds: 10)
                _ = SocketIO.writeAll(
                    fd, Array("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".utf8))
                let interim = String(decoding: SocketIO.readUntil(fd, terminator: UInt8(ascii: "\n")) ?? [], as: UTF8.self)
                _ = SocketIO.readUntil(fd, terminator: UInt8(ascii: "\n"))
                _ = SocketIO.writeAll(fd, Array("hello".utf8))
                let final = String(decoding: SocketIO.readUntil(fd, terminator: UInt8(ascii: "\n")) ?? [], as: UTF8.self)
                return (interim, final)
            }
            #expect(interim.hasPrefix("HTTP/1.1 100 Continue"))
            // The origin has no such route: its own answer comes back, after the body reached it.
            #expect(final.hasPrefix("HTTP/1.1 404"))
            await service.stop()
            await origin.stop()
        }
    }
}
