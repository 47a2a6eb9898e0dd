import Foundation

/// clamd's configuration and a local signature database. No signature download is possible on
/// edge nodes here, so the database holds the EICAR test signature (an MD5 hash signature),
/// which is what the anti-virus μsrv and its tests scan for.
enum ClamAVFiles {
    /// MD5, size and name of the 68-byte EICAR test file, in clamd's `.hdb` format.
    static let eicarSignature = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature"

    /// Writes `clamd.conf` and the database under `runDirectory`; returns the config's path.
    static func prepare(in runDirectory: String, socket: String) throws(InfraError) -> String {
        let database = runDirectory + "/clamav-db"
        let temporary = runDirectory + "/clamav-tmp"
        try makeDirectory(database)
        try makeDirectory(temporary)
        let config = """
            # Written by 'edgetrail infra up'; changes are overwritten.
            LocalSocket \(socket)
            LocalSocketMode 660
            DatabaseDirectory \(database)
            TemporaryDirectory \(temporary)
            Foreground yes
            User root
            LogTime yes
            StreamMaxLength 25M
            MaxThreads 4
            """
        let configPath = runDirectory + "/clamd.conf"
        do {
            try (eicarSignature + "\n").write(
                toFile: database + "/edgetrail-test.hdb", atomically: true, encoding: .utf8)
            try (config + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        } catch {
            throw InfraError("clamd: cannot write its configuration under \(runDirectory): \(error)")
        }
        return configPath
    }
}
