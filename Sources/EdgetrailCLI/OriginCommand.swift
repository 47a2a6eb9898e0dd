import ArgumentParser
import EdgetrailOrigin
import Foundation
import Logging
import ServiceLifecycle

struct OriginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "origin",
        abstract: "Run an HTTP/1.1 origin server (the local edge node's origin, for tests and benchmarks).",
        discussion: """
            Serves the files of --dir (default examples/origin: a page, a clean download, the EICAR \
            test file) with keep-alive, and generated bodies: /_origin/bytes/N (N bytes with a \
            Content-Length), /_origin/chunked/N (N bytes, chunked); POST /_origin/upload says how \
            many bytes arrived. /_origin/clients lists the \
            client addresses it served. Prints 'ready listen=HOST:PORT' once it serves; stops on \
            SIGINT/SIGTERM.
            """)

    @Option(help: "Where to listen, HOST:PORT (port 0 picks a free one).")
    var listen = "127.0.0.1:8000"

    @Option(help: "The folder to serve (none: only the generated bodies).")
    var dir: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        let address = try Address.hostPort(listen, option: "--listen")
        var directory = dir
        if directory == nil, FileManager.default.fileExists(atPath: "examples/origin") { directory = "examples/origin" }
        if let directory, !FileManager.default.fileExists(atPath: directory) {
            throw ValidationError("--dir \(directory) does not exist")
        }
        let logger = makeLogger(label: "edgetrail.origin", component: "origin", level: logLevel)
        let origin = OriginServer(directory: directory)
        let app = origin.application(host: address.host, port: address.port, logger: logger) { bound in
            let line = "ready listen=\(bound?.ipAddress ?? address.host):\(bound?.port ?? address.port)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
