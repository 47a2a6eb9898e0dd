import EdgetrailRuntime
import Foundation
import Hummingbird

/// Browser sessions in the portal's SQLite file, so a restarted portal keeps everyone signed in.
/// hummingbird-auth's session middleware reads and writes them through this driver.
struct SQLiteSessionDriver: PersistDriver {
    let store: PortalStore

    func create<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        guard try await write(key: key, value: value, expires: expires, create: true) else { throw PersistError.duplicate }
    }

    func set<Object: Codable & Sendable>(key: String, value: Object, expires: Duration?) async throws {
        if let expires {
            _ = try await write(key: key, value: value, expires: expires, create: false)
            return
        }
        // Without a new expiry the session keeps the one it has.
        let store = self.store
        let kept = try await Blocking.run { try store.session(key: key, now: Date().timeIntervalSince1970)?.expiresAt }
        let data = try JSONEncoder().encode(value)
        let now = Date().timeIntervalSince1970
        _ = try await Blocking.run { try store.setSession(key: key, value: data, expiresAt: kept, create: false, now: now) }
    }

    func get<Object: Codable & Sendable>(key: String, as type: Object.Type) async throws -> Object? {
        try await getWithTTL(key: key, as: type)?.object
    }

    func getWithTTL<Object: Codable & Sendable>(key: String, as type: Object.Type) async throws -> (object: Object, ttl: Duration?)? {
        let store = self.store
        let now = Date().timeIntervalSince1970
        guard let found = try await Blocking.run({ try store.session(key: key, now: now) }) else { return nil }
        guard let object = try? JSONDecoder().decode(type, from: found.value) else { throw PersistError.invalidConversion }
        return (object, found.expiresAt.map { .milliseconds(Int64(($0 - now) * 1000)) })
    }

    func remove(key: String) async throws {
        let store = self.store
        try await Blocking.run { try store.removeSession(key: key) }
    }

    private func write(key: String, value: some Codable & Sendable, expires: Duration?, create: Bool) async throws -> Bool {
        let store = self.store
        let data = try JSONEncoder().encode(value)
        let now = Date().timeIntervalSince1970
        let expiresAt = expires.map { now + Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
        return try await Blocking.run { try store.setSession(key: key, value: data, expiresAt: expiresAt, create: create, now: now) }
    }
}
