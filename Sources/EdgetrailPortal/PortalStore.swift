import Foundation
import GRDB

/// What a signed-in person may do. `operator` changes things (deploys, deletes, activates
/// filters, manages users); `viewer` only looks.
public enum Role: String, Codable, Sendable, CaseIterable {
    case `operator`
    case viewer
}

public struct PortalUser: Codable, Sendable, Equatable {
    public var name: String
    public var role: Role
    /// How the request proved who it is: a browser session (needs the CSRF token to change
    /// anything) or an API token (sent explicitly by the client, so no CSRF).
    public var viaToken: Bool = false

    public init(name: String, role: Role, viaToken: Bool = false) {
        self.name = name
        self.role = role
        self.viaToken = viaToken
    }
}

/// A CNF as the editor holds it: its spec and the files the spec names (handlers, settings),
/// by the path the spec names them with.
public struct CNFDraft: Codable, Sendable, Equatable {
    public var name: String
    public var spec: String
    public var files: [String: String]
    public var updatedAt: Date?
    public var updatedBy: String?

    public init(name: String, spec: String, files: [String: String], updatedAt: Date? = nil, updatedBy: String? = nil) {
        self.name = name
        self.spec = spec
        self.files = files
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }
}

public struct APIToken: Codable, Sendable, Equatable {
    public var id: Int64
    public var label: String
    public var createdAt: Date
    public var lastUsedAt: Date?
}

/// A refusal from the store, worded for the person who asked.
public struct PortalStoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The portal's own SQLite file: its users (name, role, password hash) and their API tokens (only
/// their SHA-256 is kept). Blocking: callers run it off the cooperative pool.
public final class PortalStore: Sendable {
    private let queue: DatabaseQueue
    public let path: String
    public let hasher: PasswordHasher
    /// A hash of nothing anyone knows, checked when a name does not exist.
    private let decoy: String

    public init(path: String, hasher: PasswordHasher = PasswordHasher()) throws {
        self.path = path
        self.hasher = hasher
        self.decoy = hasher.hash(Secrets.randomHex(bytes: 16))
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
            try queue.write { db in
                try db.execute(
                    sql: """
                        CREATE TABLE IF NOT EXISTS users (
                            name TEXT PRIMARY KEY COLLATE NOCASE,
                            role TEXT NOT NULL,
                            password TEXT NOT NULL,
                            created_at REAL NOT NULL
                        );
                        CREATE TABLE IF NOT EXISTS sessions (
                            key TEXT PRIMARY KEY,
                            value BLOB NOT NULL,
                            expires_at REAL
                        );
                        CREATE TABLE IF NOT EXISTS drafts (
                            name TEXT PRIMARY KEY,
                            spec TEXT NOT NULL,
                            files TEXT NOT NULL,
                            updated_at REAL NOT NULL,
                            updated_by TEXT NOT NULL
                        );
                        CREATE TABLE IF NOT EXISTS tokens (
                            id INTEGER PRIMARY KEY AUTOINCREMENT,
                            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                            label TEXT NOT NULL,
                            digest TEXT NOT NULL UNIQUE,
                            created_at REAL NOT NULL,
                            last_used_at REAL
                        );
                        """)
            }
        } catch {
            throw PortalStoreError("cannot open the portal's database at \(path): \(error)")
        }
        // Password hashes and token digests: readable by the portal's user only.
        chmod(path, 0o600)
    }

    /// Creates `admin` (an operator) when there are no users yet; returns the password it was
    /// given, or nil when users already existed.
    public func createFirstAdmin(password given: String?) throws -> String? {
        let password = given ?? Secrets.password()
        let hash = hasher.hash(password)
        let created = try queue.write { db -> Bool in
            guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") == 0 else { return false }
            try db.execute(
                sql: "INSERT INTO users (name, role, password, created_at) VALUES ('admin', 'operator', ?, ?)",
                arguments: [hash, Date().timeIntervalSince1970])
            return true
        }
        return created ? password : nil
    }

    public func user(named name: String) throws -> PortalUser? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT name, role FROM users WHERE name = ?", arguments: [name]).flatMap(Self.user)
        }
    }

    /// The user when `password` is theirs.
    public func authenticate(name: String, password: String) throws -> PortalUser? {
        let row = try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT name, role, password FROM users WHERE name = ?", arguments: [name])
        }
        guard let row else {
            // Spend the same time as a real check, so timing does not tell which names exist.
            _ = PasswordHasher.verify(password, against: decoy)
            return nil
        }
        guard PasswordHasher.verify(password, against: row["password"]) else { return nil }
        return Self.user(row)
    }

    public func users() throws -> [PortalUser] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT name, role FROM users ORDER BY name").compactMap(Self.user)
        }
    }

    public func addUser(name: String, role: Role, password: String) throws {
        guard name.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", options: .regularExpression) != nil else {
            throw PortalStoreError("'\(name)' is not a user name: use letters, digits, '.', '_' or '-' (at most 64)")
        }
        try Self.checkStrength(password)
        let hash = hasher.hash(password)
        try queue.write { db in
            guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE name = ?", arguments: [name]) == 0 else {
                throw PortalStoreError("a user named '\(name)' already exists")
            }
            try db.execute(
                sql: "INSERT INTO users (name, role, password, created_at) VALUES (?, ?, ?, ?)",
                arguments: [name, role.rawValue, hash, Date().timeIntervalSince1970])
        }
    }

    public func deleteUser(name: String) throws {
        try queue.write { db in
            let operators = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users WHERE role = 'operator' AND name != ?", arguments: [name]) ?? 0
            let role = try String.fetchOne(db, sql: "SELECT role FROM users WHERE name = ?", arguments: [name])
            guard let role else { throw PortalStoreError("there is no user named '\(name)'") }
            guard role != Role.operator.rawValue || operators > 0 else {
                throw PortalStoreError("'\(name)' is the last operator; add another operator before removing it")
            }
            try db.execute(sql: "DELETE FROM tokens WHERE user = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM users WHERE name = ?", arguments: [name])
        }
    }

    /// Changes a password after checking the current one.
    public func changePassword(name: String, current: String, new: String) throws {
        guard try authenticate(name: name, password: current) != nil else {
            throw PortalStoreError("the current password is not right")
        }
        try Self.checkStrength(new)
        let hash = hasher.hash(new)
        try queue.write { db in
            try db.execute(sql: "UPDATE users SET password = ? WHERE name = ?", arguments: [hash, name])
        }
    }

    /// A new API token for `user`; the token itself is returned once and never stored.
    public func createToken(user: String, label: String) throws -> (token: String, id: Int64) {
        let label = label.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !label.isEmpty, label.count <= 100 else {
            throw PortalStoreError("give the token a label of 1-100 characters (what uses it)")
        }
        let token = "et_" + Secrets.randomHex(bytes: 32)
        let id = try queue.write { db -> Int64 in
            try db.execute(
                sql: "INSERT INTO tokens (user, label, digest, created_at) VALUES (?, ?, ?, ?)",
                arguments: [user, label, Secrets.digest(token), Date().timeIntervalSince1970])
            return db.lastInsertedRowID
        }
        return (token, id)
    }

    public func tokens(user: String) throws -> [APIToken] {
        try queue.read { db in
            try Row.fetchAll(
                db, sql: "SELECT id, label, created_at, last_used_at FROM tokens WHERE user = ? ORDER BY id", arguments: [user]
            ).map { row in
                APIToken(
                    id: row["id"], label: row["label"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                    lastUsedAt: (row["last_used_at"] as Double?).map { Date(timeIntervalSince1970: $0) })
            }
        }
    }

    public func revokeToken(id: Int64, user: String) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM tokens WHERE id = ? AND user = ?", arguments: [id, user])
            guard db.changesCount == 1 else { throw PortalStoreError("you have no token \(id)") }
        }
    }

    /// The user a bearer token belongs to.
    public func user(token: String) throws -> PortalUser? {
        guard token.hasPrefix("et_") else { return nil }
        let digest = Secrets.digest(token)
        return try queue.write { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT users.name AS name, users.role AS role FROM tokens JOIN users ON users.name = tokens.user WHERE digest = ?",
                    arguments: [digest])
            else { return nil }
            try db.execute(
                sql: "UPDATE tokens SET last_used_at = ? WHERE digest = ?", arguments: [Date().timeIntervalSince1970, digest])
            return Self.user(row).map { var user = $0; user.viaToken = true; return user }
        }
    }

    // MARK: Browser sessions (kept by the session id's SHA-256, so the file holds no usable id)

    func session(key: String, now: Double) throws -> (value: Data, expiresAt: Double?)? {
        try queue.write { db in
            let digest = Secrets.digest(key)
            guard let row = try Row.fetchOne(db, sql: "SELECT value, expires_at FROM sessions WHERE key = ?", arguments: [digest]) else {
                return nil
            }
            let expires: Double? = row["expires_at"]
            if let expires, expires <= now {
                try db.execute(sql: "DELETE FROM sessions WHERE key = ?", arguments: [digest])
                return nil
            }
            return (row["value"], expires)
        }
    }

    /// Stores a session; with `create`, false when the key is taken. Expired sessions are
    /// removed as new ones are made.
    func setSession(key: String, value: Data, expiresAt: Double?, create: Bool, now: Double) throws -> Bool {
        try queue.write { db in
            let digest = Secrets.digest(key)
            if create {
                try db.execute(sql: "DELETE FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ?", arguments: [now])
                guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sessions WHERE key = ?", arguments: [digest]) == 0 else { return false }
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO sessions (key, value, expires_at) VALUES (?, ?, ?)", arguments: [digest, value, expiresAt])
            return true
        }
    }

    func removeSession(key: String) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM sessions WHERE key = ?", arguments: [Secrets.digest(key)]) }
    }

    // MARK: CNF drafts (what the editor saves and Deploy sends)

    public func drafts() throws -> [CNFDraft] {
        try queue.read { db in try Row.fetchAll(db, sql: "SELECT * FROM drafts ORDER BY name").map(Self.draft) }
    }

    public func draft(named name: String) throws -> CNFDraft? {
        try queue.read { db in try Row.fetchOne(db, sql: "SELECT * FROM drafts WHERE name = ?", arguments: [name]).map(Self.draft) }
    }

    /// Saves a draft; `create` refuses to replace one of the same name.
    public func saveDraft(_ draft: CNFDraft, by user: String, create: Bool = false) throws {
        let files = String(decoding: try JSONEncoder().encode(draft.files), as: UTF8.self)
        try queue.write { db in
            if create, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM drafts WHERE name = ?", arguments: [draft.name]) != 0 {
                throw PortalStoreError("a CNF named '\(draft.name)' is already in the editor; edit it, or delete it first")
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO drafts (name, spec, files, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)",
                arguments: [draft.name, draft.spec, files, Date().timeIntervalSince1970, user])
        }
    }

    public func deleteDraft(named name: String) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM drafts WHERE name = ?", arguments: [name])
            guard db.changesCount == 1 else { throw PortalStoreError("there is no CNF named '\(name)' in the editor") }
        }
    }

    private static func draft(_ row: Row) -> CNFDraft {
        let files = (try? JSONDecoder().decode([String: String].self, from: Data((row["files"] as String).utf8))) ?? [:]
        return CNFDraft(
            name: row["name"], spec: row["spec"], files: files, updatedAt: Date(timeIntervalSince1970: row["updated_at"]),
            updatedBy: row["updated_by"])
    }

    static func checkStrength(_ password: String) throws {
        guard password.count >= 12 else { throw PortalStoreError("a password needs at least 12 characters") }
    }

    private static func user(_ row: Row) -> PortalUser? {
        guard let role = Role(rawValue: row["role"]) else { return nil }
        return PortalUser(name: row["name"], role: role)
    }
}
