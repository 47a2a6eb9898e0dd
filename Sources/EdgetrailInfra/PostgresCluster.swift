#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A PostgreSQL cluster private to one run directory.
///
/// PostgreSQL refuses to run as root, so the server runs as the `postgres` user Debian's
/// package creates. Its data lives under /var/tmp (a folder that user can always reach, unlike a
/// checkout inside a private home), one folder per run directory.
struct PostgresCluster {
    let configuration: InfraConfiguration
    let binDirectory: String
    let stateDirectory: String

    init(configuration: InfraConfiguration) throws(InfraError) {
        self.configuration = configuration
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let newest = versions.compactMap(Int.init).max() else {
            throw InfraError("postgres: PostgreSQL is not installed; run 'make setup' (Debian package postgresql)")
        }
        binDirectory = "/usr/lib/postgresql/\(newest)/bin"
        let absolute = URL(fileURLWithPath: configuration.runDirectory).standardizedFileURL.path
        stateDirectory = "/var/tmp/edgetrail-postgres-\(Self.fingerprint(absolute))"
    }

    /// FNV-1a of the run directory's path: one cluster per run directory, stable across runs.
    static func fingerprint(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    var dataDirectory: String { stateDirectory + "/data" }
    var socketDirectory: String { stateDirectory + "/socket" }

    private var asPostgres: [String] {
        ["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    }

    private func setpriv() throws(InfraError) -> String {
        guard let path = ProcessControl.findExecutable("setpriv") else {
            throw InfraError("postgres: setpriv is missing; run 'make setup' (Debian package util-linux)")
        }
        guard getpwnam("postgres") != nil else {
            throw InfraError("postgres: the postgres system user is missing; reinstall the postgresql package")
        }
        return path
    }

    func initializeIfNeeded() throws(InfraError) {
        let setpriv = try setpriv()
        try makeDirectory(socketDirectory)
        guard let user = getpwnam("postgres") else { return }
        chown(stateDirectory, user.pointee.pw_uid, user.pointee.pw_gid)
        chown(socketDirectory, user.pointee.pw_uid, user.pointee.pw_gid)
        chmod(stateDirectory, 0o700)
        if FileManager.default.fileExists(atPath: dataDirectory + "/PG_VERSION") { return }
        try? FileManager.default.removeItem(atPath: dataDirectory)
        let result: (status: Int32, output: String)
        do {
            result = try ProcessControl.run(
                setpriv,
                asPostgres + [
                    binDirectory + "/initdb", "-D", dataDirectory, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync",
                ])
        } catch let error as InfraError {
            throw error
        } catch {
            throw InfraError("postgres: initdb could not run: \(error)")
        }
        guard result.status == 0 else {
            throw InfraError("postgres: initdb failed in \(dataDirectory):\n\(result.output)")
        }
    }

    func launch() throws(InfraError) -> LocalInfra.Launch {
        LocalInfra.Launch(
            executable: try setpriv(),
            arguments: asPostgres + [
                binDirectory + "/postgres", "-D", dataDirectory, "-p", String(configuration.postgresPort),
                "-h", configuration.host, "-k", socketDirectory,
                // A development cluster: durability is not what it is for.
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            ],
            workingDirectory: stateDirectory)
    }
}
