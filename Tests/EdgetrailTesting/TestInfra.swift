#if canImport(Glibc)
import Glibc
#endif
import EdgetrailNet
import EdgetrailInfra
import Foundation

/// The real local infrastructure for one test: a private run directory under /tmp (short, so clamd's
/// socket path fits), free ports, started with the same code as `edgetrail infra up`, and
/// stopped and removed afterwards whatever the test did.
public struct TestInfra: Sendable {
    public let configuration: InfraConfiguration
    public let services: LocalInfra

    /// Runs `body` with `kinds` up; stops them and removes the run directory after.
    public static func with<Result>(
        _ kinds: [InfraKind], _ body: (InfraConfiguration) async throws -> Result
    ) async throws -> Result {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        // Starting a broker or clamd waits seconds for it: off the cooperative pool.
        try await onThread("test-infra-up") { try fixture.services.up(kinds) }
        return try await body(fixture.configuration)
    }

    public init() throws {
        var template = Array("/tmp/et-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw InfraError("cannot create a run directory under /tmp: \(String(cString: strerror(errno)))")
        }
        let runDirectory = String(cString: created)
        chmod(runDirectory, 0o755)
        var configuration = InfraConfiguration(
            runDirectory: runDirectory,
            depsDirectory: ProcessInfo.processInfo.environment["EDGETRAIL_DEPS"]
                ?? InfraConfiguration.findDepsDirectory(from: Self.packageRoot))
        configuration.redisPort = SocketProbe.freePort()
        configuration.brokerPort = SocketProbe.freePort()
        configuration.postgresPort = SocketProbe.freePort()
        self.configuration = configuration
        self.services = LocalInfra(configuration: configuration)
    }

    public func tearDown() {
        services.down()
        services.removeData()
    }

    /// The checkout this test was built from.
    /// The datapath's compiled programs, built first if a source changed (scripts/build-bpf.sh).
    public static func datapathObject() throws -> String {
        let build = Process()
        build.executableURL = URL(fileURLWithPath: packageRoot + "/scripts/build-bpf.sh")
        build.standardOutput = FileHandle.nullDevice
        try build.run()
        build.waitUntilExit()
        return packageRoot + "/bpf/.output/datapath.bpf.o"
    }

    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    /// True when running as root (needed for PostgreSQL, namespaces and eBPF).
    public static var isRoot: Bool { geteuid() == 0 }
}

/// Ports for tests that need one nothing listens on.
public enum EdgetrailTestingPorts {
    /// A port the kernel just handed out and took back: nothing listens there.
    public static func free() -> Int { SocketProbe.freePort() }
}
