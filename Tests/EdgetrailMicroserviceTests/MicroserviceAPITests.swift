import EdgetrailAntiVirus
import EdgetrailClamAV
import EdgetrailContentInspect
import EdgetrailCore
import EdgetrailInfra
import EdgetrailMicroservice
import EdgetrailPolicyManager
import EdgetrailProto
import EdgetrailRedis
import EdgetrailTesting
import Foundation
import GRPCCore
import Testing

private let eicar = Data(#"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.utf8)

/// The session state a μsrv left in Redis under `key`, once it is there (the writer sends in batches).
func redisHash(port: Int, key: String) async throws -> [String: String] {
    try await onThread("redis-read") {
        let redis = try RedisConnection(host: "127.0.0.1", port: port)
        for _ in 0..<200 {
            if case .array(let items) = try redis.command("HGETALL", key), !items.isEmpty {
                var result: [String: String] = [:]
                for index in stride(from: 0, to: items.count - 1, by: 2) {
                    result[items[index].text ?? ""] = items[index + 1].text ?? ""
                }
                return result
            }
            usleep(20_000)
        }
        return [:]
    }
}

/// What a call made on a session's behalf carries.
func metadata(_ cookie: Cookie) -> Metadata { Metadata(session: SessionContext(cookie: cookie)) }

@Suite("The μsrvs' APIs over their sockets, with real Redis and clamd", .serialized)
struct MicroserviceAPITests {
    @Test("policy-mgr: its rules decide, its policy_check handler may deny, the decision is in the session's state")
    func policyManager() async throws {
        try await TestInfra.with([.redis]) { infra in
            let directory = try makeRunDirectory()
            var admin = PolicyRule(name: "no-admin", decision: .deny, reason: "admin pages are internal")
            admin.paths = ["/admin*"]
            let service = try await RunningMicroservice.start(.policyManager, runDirectory: directory, redisPort: infra.redisPort) {
                kit in ([PolicyManagerService(kit: kit, rules: PolicyRules(rules: [admin]))], [])
            }
            defer { Task { await service.stop() } }
            func check(_ url: String, _ cookie: Cookie) async throws -> Edgetrail_V1_PolicyDecision {
                try await service.withAPI { client in
                    var request = Edgetrail_V1_PolicyCheckRequest()
                    request.method = "GET"
                    request.url = url
                    request.client = "10.200.0.2:41000"
                    return try await Edgetrail_V1_PolicyManager.Client(wrapping: client).check(
                        request, metadata: metadata(cookie))
                }
            }
            let byRule = try await check("http://10.201.0.2/admin/", Cookie(0xa1))
            #expect(byRule.decision == .deny)
            #expect(byRule.rule == "no-admin")
            #expect(byRule.reason == "admin pages are internal")
            // Without a handler the rules' allow stands (and the event is counted as unanswered).
            let allowed = try await check("http://10.201.0.2/", Cookie(0xa2))
            #expect(allowed.decision == .allow)
            #expect(allowed.rule == "default")
            let byHandler = try await service.withHandler(for: ["policy_check"]) { event in
                verdict(event, deny: event.attributes["http.url"]!.hasSuffix(".exe") ? "no programs" : nil)
            } _: {
                (try await check("http://10.201.0.2/setup.exe", Cookie(0xa3)), try await check("http://10.201.0.2/a", Cookie(0xa4)))
            }
            #expect(byHandler.0.decision == .deny)
            #expect(byHandler.0.rule == "handler")
            #expect(byHandler.0.reason == "no programs")
            #expect(byHandler.1.decision == .allow)
            let counts = try #require(service.kit.hub.counts["policy_check"])
            #expect(counts.answered == 2)
            #expect(counts.defaulted[.noHandler] == 1)
            let state = try await redisHash(port: infra.redisPort, key: "cookie:00000000000000a3:policy-mgr:check")
            #expect(state["rule"] == "handler")
            #expect(state["decision"] == "deny")
            // A call with no cookie anywhere is refused: its work could not be joined to a session.
            await #expect {
                try await service.withAPI { client in
                    try await Edgetrail_V1_PolicyManager.Client(wrapping: client).check(Edgetrail_V1_PolicyCheckRequest())
                }
            } throws: { error in
                (error as? RPCError)?.code == .invalidArgument && "\(error)".contains("carries no session cookie")
            }
            await service.stop()
        }
    }

    @Test("content-inspect: real type, size and digest; its inspect_done handler's deny comes back in the result")
    func contentInspect() async throws {
        try await TestInfra.with([.redis]) { infra in
            let directory = try makeRunDirectory()
            // A handler timeout no busy machine runs into: the handler's verdict is what is tested
            // (with the default the CI's parallel suites once made the answer late, and it allowed).
            let service = try await RunningMicroservice.start(
                .contentInspect, runDirectory: directory, redisPort: infra.redisPort,
                policies: ["inspect_done": EventPolicy(timeout: .seconds(5))]
            ) { kit in ([ContentInspectService(kit: kit)], []) }
            func inspect(_ body: Data, _ type: String, _ cookie: Cookie) async throws -> Edgetrail_V1_InspectResult {
                try await service.withAPI { client in
                    var request = Edgetrail_V1_InspectRequest()
                    request.contentType = type
                    request.body = body
                    return try await Edgetrail_V1_ContentInspect.Client(wrapping: client).inspect(request, metadata: metadata(cookie))
                }
            }
            let (download, page) = try await service.withHandler(for: ["inspect_done"]) { event in
                #expect(event.sync)
                return verdict(event, deny: event.attributes["content.needs_scan"] == "true" ? "downloads need a scan" : nil)
            } _: {
                (try await inspect(eicar, "application/octet-stream", Cookie(0xb1)),
                    try await inspect(Data("<html><body>hi</body></html>".utf8), "text/html", Cookie(0xb2)))
            }
            #expect(download.categories == ["text", "download"])
            #expect(download.needsScan)
            #expect(download.size == 68)
            #expect(download.sniffedType == "text/plain")
            #expect(download.decision == .deny)
            #expect(download.reason == "downloads need a scan")
            #expect(page.categories == ["html"])
            #expect(page.decision == .allow)
            let state = try await redisHash(port: infra.redisPort, key: "cookie:00000000000000b1:content-inspect:result")
            #expect(state["categories"] == "text,download")
            #expect(state["sha256"] == download.sha256)
            await service.stop()
        }
    }

    @Test("anti-virus: clamd finds EICAR and passes a clean body; with clamd stopped a scan fails at once, saying why")
    func antiVirus() async throws {
        try await TestInfra.with([.redis, .clamd]) { infra in
            let directory = try makeRunDirectory()
            let service = try await RunningMicroservice.start(.antiVirus, runDirectory: directory, redisPort: infra.redisPort) {
                kit in ([AntiVirusService(kit: kit, clamd: ClamAVClient(socketPath: infra.clamdSocket, timeoutSeconds: 5))], [])
            }
            func scan(_ body: Data, _ cookie: Cookie) async throws -> Edgetrail_V1_ScanResult {
                try await service.withAPI { client in
                    var request = Edgetrail_V1_ScanRequest()
                    request.name = "download"
                    request.body = body
                    return try await Edgetrail_V1_AntiVirus.Client(wrapping: client).scan(request, metadata: metadata(cookie))
                }
            }
            let infected = try await scan(eicar, Cookie(0xc1))
            #expect(infected.infected)
            #expect(infected.signature == "Eicar-Test-Signature.UNOFFICIAL")
            #expect(infected.engine.hasPrefix("ClamAV"))
            #expect(infected.decision == .deny)
            #expect(infected.reason == "malware found: Eicar-Test-Signature.UNOFFICIAL")
            let clean = try await scan(Data(repeating: 0x41, count: 200_000), Cookie(0xc2))
            #expect(!clean.infected)
            #expect(clean.decision == .allow)
            let state = try await redisHash(port: infra.redisPort, key: "cookie:00000000000000c1:anti-virus:scan")
            #expect(state["infected"] == "true")

            let local = LocalInfra(configuration: infra)
            try await onThread("clamd-down") { local.down([.clamd]) }
            let started = ContinuousClock.now
            await #expect {
                _ = try await scan(eicar, Cookie(0xc3))
            } throws: { error in
                (error as? RPCError)?.code == .unavailable && "\(error)".contains("cannot reach clamd at \(infra.clamdSocket)")
            }
            #expect(started.duration(to: .now) < .seconds(5))
            await service.stop()
        }
    }
}
