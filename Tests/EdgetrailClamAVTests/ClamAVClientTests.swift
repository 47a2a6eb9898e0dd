import EdgetrailClamAV
import EdgetrailInfra
import EdgetrailTesting
import Testing

private let eicar = Array(#"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.utf8)

@Suite("ClamAV through clamd's socket", .serialized)
struct ClamAVClientTests {
    @Test("clamd reports the EICAR test file as infected and a clean body as clean")
    func eicarAndClean() async throws {
        try await TestInfra.with([.clamd]) { configuration in
            let client = ClamAVClient(socketPath: configuration.clamdSocket)
            let pong = try client.ping()
            let version = try client.version()
            let infected = try client.scan(eicar)
            let clean = try client.scan(Array("<html><body>hello</body></html>".utf8))
            // A body larger than one 64 KiB chunk crosses the stream in several pieces.
            let large = try client.scan([UInt8](repeating: 0x41, count: 300_000))
            let empty = try client.scan([])
            #expect(pong)
            #expect(version.hasPrefix("ClamAV"))
            #expect(infected == .infected(signature: "Eicar-Test-Signature.UNOFFICIAL"))
            #expect(clean == .clean)
            #expect(large == .clean)
            #expect(empty == .clean)
        }
    }

    @Test("a body over the scan limit is refused before anything is sent")
    func oversizedBody() {
        let client = ClamAVClient(socketPath: "/nonexistent/clamd.sock", maximumStreamBytes: 10)
        #expect {
            _ = try client.scan(eicar)
        } throws: { error in
            "\(error)".contains("exceeds the 10-byte scan limit")
        }
    }

    @Test("an unreachable clamd is an error that names the socket and what to check")
    func unreachable() {
        let client = ClamAVClient(socketPath: "/tmp/edgetrail-no-such-clamd.sock")
        #expect {
            _ = try client.scan(eicar)
        } throws: { error in
            "\(error)".contains("cannot reach clamd at /tmp/edgetrail-no-such-clamd.sock")
                && "\(error)".contains("infra status")
        }
    }
}
