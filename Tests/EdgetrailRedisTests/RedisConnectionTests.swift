import EdgetrailRedis
import EdgetrailInfra
import EdgetrailTesting
import Testing

@Suite("Redis through hiredis", .serialized)
struct RedisConnectionTests {
    @Test("a value written under a cookie key reads back, strings and hashes, binary-safe")
    func writeAndRead() async throws {
        try await TestInfra.with([.redis]) { configuration in
            let redis = try RedisConnection(host: configuration.host, port: configuration.redisPort)
            #expect(try redis.command("SET", "cookie:00000000000000aa:http-proxy:state", "open") == .status("OK"))
            #expect(try redis.command("GET", "cookie:00000000000000aa:http-proxy:state").text == "open")
            let binary: [UInt8] = [0, 1, 2, 255, 0x0D, 0x0A]
            try redis.command([Array("SET".utf8), Array("cookie:00000000000000aa:raw".utf8), binary])
            #expect(try redis.command("GET", "cookie:00000000000000aa:raw") == .string(binary))
            try redis.command("HSET", "cookie:00000000000000aa:policy-mgr:verdict", "decision", "allow", "rule", "r7")
            let all = try redis.command("HGETALL", "cookie:00000000000000aa:policy-mgr:verdict")
            guard case .array(let items) = all else {
                Issue.record("HGETALL answered \(all)")
                return
            }
            let pairs = stride(from: 0, to: items.count, by: 2).map { (items[$0].text ?? "", items[$0 + 1].text ?? "") }
            #expect(Dictionary(uniqueKeysWithValues: pairs) == ["decision": "allow", "rule": "r7"])
            #expect(try redis.command("GET", "cookie:00000000000000aa:missing") == .null)
            if case .error(let message) = try redis.command("NOSUCHCOMMAND") {
                #expect(message.contains("unknown command"))
            } else {
                Issue.record("an unknown command did not answer with an error")
            }
        }
    }

    @Test("the local Redis also answers on its Unix socket (what a pod uses: sockets cross network namespaces)")
    func unixSocket() async throws {
        try await TestInfra.with([.redis]) { configuration in
            let redis = try RedisConnection(.unix(path: configuration.redisSocket))
            #expect(try redis.command("PING") == .status("PONG"))
            #expect(redis.address == configuration.redisSocket)
        }
        #expect {
            _ = try RedisConnection(.unix(path: "/tmp/edgetrail-no-such-redis.sock"), timeoutSeconds: 1)
        } throws: { error in
            "\(error)".hasPrefix("could not connect to Redis at /tmp/edgetrail-no-such-redis.sock")
        }
    }

    @Test("a pipeline sends many commands at once and answers each in order, errors included, binary-safe")
    func pipeline() async throws {
        try await TestInfra.with([.redis]) { configuration in
            let redis = try RedisConnection(host: configuration.host, port: configuration.redisPort)
            let binary: [UInt8] = [0, 13, 10, 255]
            let replies = try redis.pipeline([
                ["HSET", "cookie:00000000000000ab:proxy:request", "url", "/a b"].map { Array($0.utf8) },
                ["EXPIRE", "cookie:00000000000000ab:proxy:request", "60"].map { Array($0.utf8) },
                [Array("SET".utf8), Array("cookie:00000000000000ab:raw".utf8), binary],
                ["NOSUCHCOMMAND"].map { Array($0.utf8) },
                ["GET", "cookie:00000000000000ab:raw"].map { Array($0.utf8) },
            ])
            #expect(replies.count == 5)
            #expect(replies[0] == .integer(1))
            #expect(replies[1] == .integer(1))
            #expect(replies[2] == .status("OK"))
            if case .error = replies[3] {} else { Issue.record("an unknown command in a pipeline answered \(replies[3])") }
            #expect(replies[4] == .string(binary))
            #expect(try redis.command("HGET", "cookie:00000000000000ab:proxy:request", "url").text == "/a b")
            #expect(try redis.pipeline([]) == [])
        }
    }

    @Test("a change under cookie:* arrives as a keyspace notification")
    func keyspaceNotification() async throws {
        try await TestInfra.with([.redis]) { configuration in
            let subscriber = try RedisConnection(host: configuration.host, port: configuration.redisPort)
            let confirmation = try subscriber.command("PSUBSCRIBE", "__keyspace@0__:cookie:*")
            guard case .array(let parts) = confirmation else {
                Issue.record("PSUBSCRIBE answered \(confirmation)")
                return
            }
            #expect(parts.first?.text == "psubscribe")
            let writer = try RedisConnection(host: configuration.host, port: configuration.redisPort)
            try writer.command("SET", "unrelated:key", "x")
            try writer.command("HSET", "cookie:00000000000000bb:http-proxy:session", "state", "open")
            try writer.command("DEL", "cookie:00000000000000bb:http-proxy:session")

            var events: [String] = []
            while let message = try subscriber.nextReply(timeoutMilliseconds: 2000) {
                guard case .array(let fields) = message, fields.count == 4 else { continue }
                #expect(fields[2].text == "__keyspace@0__:cookie:00000000000000bb:http-proxy:session")
                events.append(fields[3].text ?? "")
                if events.count == 2 { break }
            }
            #expect(events == ["hset", "del"])
        }
    }

    @Test("connecting where nothing listens fails with the address in the message")
    func connectFailure() throws {
        let port = EdgetrailTestingPorts.free()
        #expect {
            _ = try RedisConnection(host: "127.0.0.1", port: port, timeoutSeconds: 1)
        } throws: { error in
            "\(error)".contains("could not connect to Redis at 127.0.0.1:\(port)")
        }
    }
}

