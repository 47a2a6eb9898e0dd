import EdgetrailCollector
import EdgetrailProto
import EdgetrailRedis
import EdgetrailInfra
import EdgetrailTesting
import Foundation
import Logging
import Testing

private var quietLogger: Logger {
    var logger = Logger(label: "test.snapshots")
    logger.logLevel = .critical
    return logger
}

/// Steps the source until `count` snapshots arrived or `seconds` passed.
private func collect(_ source: RedisSnapshotReader, count: Int, seconds: Double = 5) -> [Edgetrail_V1_Record] {
    var records: [Edgetrail_V1_Record] = []
    let deadline = Date().addingTimeInterval(seconds)
    while records.count < count, Date() < deadline {
        records += source.step(timeoutMilliseconds: 100)
    }
    return records
}

/// A reader subscribed to the test's Redis, and a connection to change keys with.
private func subscribed(to services: InfraConfiguration) throws -> (RedisSnapshotReader, RedisConnection) {
    let source = RedisSnapshotReader(
        configuration: RedisSnapshotSourceConfiguration(host: services.host, port: services.redisPort), logger: quietLogger)
    _ = source.step(timeoutMilliseconds: 10)
    return (source, try RedisConnection(host: services.host, port: services.redisPort))
}

@Suite("Redis snapshot source, against a real redis-server", .serialized)
struct RedisSnapshotSourceTests {
    @Test("each change under cookie:* is captured with the key's value at that moment, strings and hashes")
    func capturesChanges() async throws {
        try await TestInfra.with([.redis]) { services in
            let source = RedisSnapshotReader(
                configuration: RedisSnapshotSourceConfiguration(host: services.host, port: services.redisPort),
                logger: quietLogger)
            _ = source.step(timeoutMilliseconds: 10)
            #expect(source.isConnected)
            let redis = try RedisConnection(host: services.host, port: services.redisPort)
            try redis.command("SET", "cookie:00000000000000c1:http-proxy:state", "open")
            try redis.command("HSET", "cookie:00000000000000c1:anti-virus:verdict", "infected", "no", "engine", "clamav")
            try redis.command("SET", "other:key", "ignored")
            // The source reads a key right after its notification, so let it see the value
            // before the key goes away.
            var records = collect(source, count: 2)
            try redis.command("DEL", "cookie:00000000000000c1:http-proxy:state")
            records += collect(source, count: 1)
            #expect(records.count == 3)
            guard records.count == 3 else { return }
            #expect(records.allSatisfy { $0.cookie == 0xC1 })
            #expect(records[0].service == "http-proxy")
            #expect(records[0].snapshot.key == "cookie:00000000000000c1:http-proxy:state")
            #expect(records[0].snapshot.event == "set")
            #expect(records[0].snapshot.stringValue == Data("open".utf8))
            #expect(records[1].service == "anti-virus")
            #expect(records[1].snapshot.hashFields.fields == ["infected": Data("no".utf8), "engine": Data("clamav".utf8)])
            #expect(records[2].snapshot.event == "del" && records[2].snapshot.deleted)
            #expect(records.allSatisfy { $0.snapshot.atNs > 0 && $0.snapshot.source.hasPrefix("redis://127.0.0.1:") })
            #expect(source.counters.captured == 3)
        }
    }

    @Test("over the Unix socket a node's Redis also listens on, changes are captured the same and say which socket")
    func unixSocket() async throws {
        try await TestInfra.with([.redis]) { services in
            let socket = services.redisSocket
            let source = RedisSnapshotReader(
                configuration: RedisSnapshotSourceConfiguration(endpoint: .unix(path: socket)), logger: quietLogger)
            _ = source.step(timeoutMilliseconds: 10)
            #expect(source.isConnected)
            let redis = try RedisConnection(host: services.host, port: services.redisPort)
            try redis.command("HSET", "cookie:00000000000000c2:http-proxy:request", "method", "GET")
            let records = collect(source, count: 1)
            #expect(records.count == 1)
            #expect(records.first?.cookie == 0xC2)
            #expect(records.first?.snapshot.hashFields.fields == ["method": Data("GET".utf8)])
            #expect(records.first?.snapshot.source == "redis+unix://\(socket)?db=0")
        }
    }

    @Test("keys without a valid cookie and values of other types are counted, and capture goes on")
    func malformedKeysAndTypes() async throws {
        try await TestInfra.with([.redis]) { services in
            let (source, redis) = try subscribed(to: services)
            try redis.command("SET", "cookie:not-a-cookie:x", "1")
            try redis.command("RPUSH", "cookie:00000000000000c2:queue", "a", "b")
            try redis.command([Array("SET".utf8), Array("cookie:00000000000000c2:blob".utf8), [0xFF, 0x00, 0xFE]])
            let records = collect(source, count: 2)
            #expect(records.map(\.snapshot.key) == ["cookie:00000000000000c2:queue", "cookie:00000000000000c2:blob"])
            #expect(records.last?.snapshot.stringValue == Data([0xFF, 0x00, 0xFE]))
            #expect(source.counters.malformedKeys == 1)
            #expect(source.counters.unsupportedTypes == 1)
            #expect(records.first?.snapshot.unsupportedType == "list", "the list is recorded with its type")
            #expect(records.first?.snapshot.deleted == false)
        }
    }

    @Test("a value over max_value_bytes is cut and marked with its full size; SET … EX is recorded once")
    func largeValuesAndExpiry() async throws {
        try await TestInfra.with([.redis]) { services in
            var configuration = RedisSnapshotSourceConfiguration(host: services.host, port: services.redisPort)
            configuration.maxValueBytes = 1024
            let source = RedisSnapshotReader(configuration: configuration, logger: quietLogger)
            _ = source.step(timeoutMilliseconds: 10)
            let redis = try RedisConnection(host: services.host, port: services.redisPort)
            try redis.command("SET", "cookie:00000000000000c4:proxy:body", String(repeating: "z", count: 5000))
            try redis.command(
                "HSET", "cookie:00000000000000c4:proxy:headers", "a", String(repeating: "1", count: 600),
                "b", String(repeating: "2", count: 600), "c", "3")
            var records = collect(source, count: 2)
            // The source reads a key right after its notification: let it see each value.
            try redis.command("SET", "cookie:00000000000000c4:proxy:token", "t1", "EX", "60")
            records += collect(source, count: 1)
            try redis.command("EXPIRE", "cookie:00000000000000c4:proxy:token", "120")
            records += collect(source, count: 1, seconds: 1)
            try redis.command("SET", "cookie:00000000000000c4:proxy:token", "t2", "KEEPTTL")
            records += collect(source, count: 1)
            #expect(records.map(\.snapshot.event) == ["set", "hset", "set", "set"])
            guard records.count == 4 else { return }
            #expect(records[3].snapshot.stringValue == Data("t2".utf8))
            #expect(records[0].snapshot.stringValue.count == 1024 && records[0].snapshot.fullSize == 5000)
            #expect(records[1].snapshot.hashFields.fields.keys.sorted() == ["a"], "whole fields, by name, within the limit")
            #expect(records[1].snapshot.fullSize == 1204)
            #expect(records[2].snapshot.stringValue == Data("t1".utf8) && records[2].snapshot.fullSize == 0)
            #expect(source.counters.truncatedValues == 2)
            #expect(source.counters.repeatsSkipped == 2, "an expiry set on a value just captured shows nothing new")
        }
    }

    @Test("a key read after it changed type or went away shows what it holds then; a key whose event names no type is asked for it")
    func valuesReadAfterLaterChanges() async throws {
        try await TestInfra.with([.redis]) { services in
            let (source, redis) = try subscribed(to: services)
            // All of it happens before the source reads: its values are read afterwards, together.
            try redis.command("SET", "cookie:00000000000000c5:proxy:a", "text")
            try redis.command("DEL", "cookie:00000000000000c5:proxy:a")
            try redis.command("HSET", "cookie:00000000000000c5:proxy:a", "now", "a hash")
            try redis.command("HSET", "cookie:00000000000000c5:proxy:b", "only", "field")
            try redis.command("HDEL", "cookie:00000000000000c5:proxy:b", "only")
            try redis.command("SET", "cookie:00000000000000c5:proxy:c", "moved")
            let first = collect(source, count: 7)
            try redis.command("RENAME", "cookie:00000000000000c5:proxy:c", "cookie:00000000000000c5:proxy:d")
            let records = first + collect(source, count: 2)
            let seen = records.map { "\($0.snapshot.key.split(separator: ":").last!) \($0.snapshot.event)" }
            #expect(seen == ["a set", "a del", "a hset", "b hset", "b hdel", "b del", "c set", "c rename_from", "d rename_to"])
            guard records.count == 9 else { return }
            // The string written first was a hash by the time it was read: read as the hash.
            #expect(records[0].snapshot.hashFields.fields == ["now": Data("a hash".utf8)])
            #expect(records[2].snapshot.hashFields.fields == ["now": Data("a hash".utf8)])
            // A hash whose last field went is gone: Redis keeps no empty hash.
            #expect(records[3].snapshot.deleted && records[4].snapshot.deleted && records[5].snapshot.deleted)
            #expect(records[6].snapshot.stringValue == Data("moved".utf8))
            #expect(records[7].snapshot.deleted)
            #expect(records[8].snapshot.stringValue == Data("moved".utf8), "rename_to says no type: asked, then read")
            #expect(source.counters.unsupportedTypes == 0)
        }
    }

    @Test("after Redis restarts the source reconnects and captures again")
    func reconnectsAfterRestart() async throws {
        try await TestInfra.with([.redis]) { services in
            var configuration = RedisSnapshotSourceConfiguration(host: services.host, port: services.redisPort)
            configuration.reconnectDelayMilliseconds = 100
            let source = RedisSnapshotReader(configuration: configuration, logger: quietLogger)
            _ = source.step(timeoutMilliseconds: 10)
            let local = LocalInfra(configuration: services)
            local.down([.redis])
            _ = collect(source, count: 1, seconds: 1)
            #expect(!source.isConnected)
            try local.up([.redis])
            let deadline = Date().addingTimeInterval(5)
            while !source.isConnected, Date() < deadline { _ = source.step(timeoutMilliseconds: 100) }
            #expect(source.isConnected)
            let redis = try RedisConnection(host: services.host, port: services.redisPort)
            try redis.command("SET", "cookie:00000000000000c3:policy-mgr:decision", "allow")
            let records = collect(source, count: 1)
            #expect(records.map(\.snapshot.key) == ["cookie:00000000000000c3:policy-mgr:decision"])
            #expect(source.counters.reconnects == 1)
        }
    }

    @Test("keyspace notifications that are off are turned on")
    func turnsOnNotifications() async throws {
        try await TestInfra.with([.redis]) { services in
            let redis = try RedisConnection(host: services.host, port: services.redisPort)
            try redis.command("CONFIG", "SET", "notify-keyspace-events", "")
            let source = RedisSnapshotReader(
                configuration: RedisSnapshotSourceConfiguration(host: services.host, port: services.redisPort),
                logger: quietLogger)
            _ = source.step(timeoutMilliseconds: 10)
            try redis.command("SET", "cookie:00000000000000c4:http-proxy:state", "open")
            #expect(collect(source, count: 1).count == 1)
        }
    }
}
