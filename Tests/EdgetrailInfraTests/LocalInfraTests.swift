#if canImport(Glibc)
import Glibc
#endif
import EdgetrailCore
import EdgetrailNet
import EdgetrailInfra
import EdgetrailTesting
import Foundation
import Testing

@Suite("Local infrastructure", .serialized)
struct LocalInfraTests {
    @Test("up starts redis, the broker and clamd; status says up with each address; down stops them all")
    func lifecycle() throws {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        let services = fixture.services
        var lines: [String] = []
        try services.up(InfraKind.defaults) { lines.append($0) }
        #expect(lines.contains { $0.hasPrefix("redis: up at 127.0.0.1:\(fixture.configuration.redisPort)") })
        let status = services.status(InfraKind.defaults)
        #expect(status.allSatisfy { $0.isUp })
        #expect(status.map(\.description) == [
            "redis    up   127.0.0.1:\(fixture.configuration.redisPort)",
            "broker   up   127.0.0.1:\(fixture.configuration.brokerPort)",
            "clamd    up   \(fixture.configuration.runDirectory)/clamd.sock",
        ])
        let pids = status.compactMap(\.pid)
        #expect(pids.count == 3)

        let stopped = services.down()
        #expect(Set(stopped) == Set(InfraKind.defaults))
        #expect(services.status(InfraKind.defaults).allSatisfy { !$0.isUp })
        for pid in pids {
            let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "gone"
            #expect(kill(pid, 0) != 0 || state.contains(") Z"), "process \(pid) still runs after down: \(state)")
        }
        for kind in InfraKind.defaults {
            #expect(!SocketProbe.isListening(fixture.configuration.endpoint(of: kind)))
        }
    }

    @Test("up a second time leaves the running services alone")
    func upIsIdempotent() throws {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        try fixture.services.up([.redis])
        let firstPid = fixture.services.status([.redis]).first?.pid
        var lines: [String] = []
        try fixture.services.up([.redis]) { lines.append($0) }
        #expect(lines == ["redis: already up at 127.0.0.1:\(fixture.configuration.redisPort)"])
        #expect(fixture.services.status([.redis]).first?.pid == firstPid)
    }

    @Test("status and up asked without the ports a run directory was started with report where it really listens")
    func statusFindsStartedPorts() throws {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        try fixture.services.up([.redis])
        // The same run directory, asked about with the default ports (no --redis-port).
        let asked = LocalInfra(configuration: InfraConfiguration(runDirectory: fixture.configuration.runDirectory))
        let port = fixture.configuration.redisPort
        #expect(asked.status([.redis]).map(\.description) == ["redis    up   127.0.0.1:\(port)"])
        var lines: [String] = []
        try asked.up([.redis]) { lines.append($0) }
        #expect(lines == [
            "redis: already up at 127.0.0.1:\(port), not 127.0.0.1:16379; "
                + "'edgetrail infra down --only redis' first to move it"
        ])
        #expect(asked.down([.redis]) == [.redis])
        #expect(!SocketProbe.isListening(.tcp(host: "127.0.0.1", port: port)))
    }

    @Test("a port another program holds is a clear error at once, not a hang")
    func portTaken() throws {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        // Another program: a listening socket on the broker's port.
        let blocker = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(blocker) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(fixture.configuration.brokerPort).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(blocker, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0 && listen(blocker, 1) == 0)

        let started = Date()
        #expect {
            try fixture.services.up([.broker])
        } throws: { error in
            "\(error)".contains("port \(fixture.configuration.brokerPort) on 127.0.0.1 is already in use")
                && "\(error)".contains("--broker-port")
        }
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(fixture.services.status([.broker]).first?.isUp == false)
    }

    @Test("a daemon that dies during start-up is reported with the end of its log")
    func failedStartShowsLog() throws {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        // A broker binary that fails the way a real one would on a bad flag.
        let deps = fixture.configuration.runDirectory + "/fake-deps"
        try FileManager.default.createDirectory(atPath: deps + "/bin", withIntermediateDirectories: true)
        try "#!/bin/sh\necho 'error: storage engine unavailable' >&2\nexit 3\n"
            .write(toFile: deps + "/bin/tansu", atomically: true, encoding: .utf8)
        chmod(deps + "/bin/tansu", 0o755)
        var configuration = fixture.configuration
        configuration.depsDirectory = deps
        #expect {
            try LocalInfra(configuration: configuration).up([.broker])
        } throws: { error in
            "\(error)".contains("broker: exited during start-up")
                && "\(error)".contains("error: storage engine unavailable")
        }
    }

    @Test("a port outside 1-65535 is refused before anything starts")
    func portOutOfRange() throws {
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        var configuration = fixture.configuration
        configuration.redisPort = 70000
        #expect {
            try LocalInfra(configuration: configuration).up([.redis])
        } throws: { error in
            "\(error)" == "redis: port 70000 is not a TCP port (1-65535)"
        }
    }

    @Test("PostgreSQL comes up in its own cluster with an edgetrail database, and goes down")
    func postgres() throws {
        guard TestInfra.isRoot else {
            print("SKIPPED: PostgreSQL runs as the postgres user, which needs root to switch to")
            return
        }
        let fixture = try TestInfra()
        defer { fixture.tearDown() }
        try fixture.services.up([.postgres])
        #expect(fixture.services.status([.postgres]).first?.isUp == true)
        let psql = Process()
        psql.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        psql.arguments = [fixture.configuration.postgresURL, "-tAc", "SELECT current_database()"]
        let pipe = Pipe()
        psql.standardOutput = pipe
        try psql.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        psql.waitUntilExit()
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "edgetrail")
        #expect(fixture.services.down([.postgres]) == [.postgres])
        #expect(!SocketProbe.isListening(fixture.configuration.endpoint(of: .postgres)))
    }
}
