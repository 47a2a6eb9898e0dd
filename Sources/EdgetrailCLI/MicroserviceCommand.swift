import ArgumentParser
import EdgetrailAntiVirus
import EdgetrailCNF
import EdgetrailClamAV
import EdgetrailContentInspect
import EdgetrailCore
import EdgetrailHTTPProxy
import EdgetrailInfra
import EdgetrailMicroservice
import EdgetrailPolicyManager
import EdgetrailYAML
import Foundation
import GRPCCore
import Logging
import ServiceLifecycle
import Yams

struct MicroserviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "microservice",
        abstract: "Run one of the sample μsrvs (http-proxy, policy-mgr, content-inspect, anti-virus).",
        discussion: """
            A μsrv serves its gRPC API on DIR/NAME.api.sock and its event stream (for its handler \
            sidecar) on DIR/NAME.events.sock, writes its session state to Redis under \
            cookie:<hex>:NAME:…, and sends its spans to the node's collector over OTLP/gRPC. The \
            node agent starts one per pod; you can also run one by hand.
            """,
        subcommands: [MicroserviceRun.self])
}

struct MicroserviceRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a μsrv until SIGINT/SIGTERM; prints 'ready' with its sockets once it serves.",
        discussion: """
            KIND is http-proxy, policy-mgr, content-inspect or anti-virus. Settings come from \
            --config (YAML: redis, otlp, clamd, datapath_socket, proxy: {listen, upstream, \
            transparent, inspect_limit}, policy: {default, rules}) and the flags, which win; \
            unset ones default to the local services ('edgetrail infra up'). Examples:

              edgetrail microservice run http-proxy --name http-proxy --cnf demo --run-dir /tmp/pod \\
                  --listen 127.0.0.1:8080 --upstream 127.0.0.1:8000
              edgetrail microservice run policy-mgr --name policy-mgr --cnf examples/edgesecurity \\
                  --run-dir /tmp/pod --config examples/edgesecurity/policy-mgr.yaml

            With --cnf naming a CNF folder or spec, the handler timeouts of the CNF apply to the \
            μsrv's sync events (default 1 s; a sync event nobody answers is allowed, and counted).
            """)

    @Argument(help: "The kind: http-proxy, policy-mgr, content-inspect or anti-virus.")
    var kind: String

    @Option(help: "The μsrv's name in its CNF (names its sockets, its Redis keys and its spans).")
    var name: String

    @Option(help: "The CNF it belongs to: a name, or the CNF's folder or spec file.")
    var cnf: String

    @Option(help: "The pod's run directory, where its sockets go.")
    var runDir: String

    @Option(help: "A YAML file with the μsrv's settings.")
    var config: String?

    @Option(help: "Redis: HOST:PORT or a Unix socket path (default 127.0.0.1:16379; from a pod, the run directory's redis.sock).")
    var redis: String?

    @Option(help: "The collector's OTLP/gRPC receiver: HOST:PORT or a Unix socket path (default 127.0.0.1:4317); none: spans are not exported (tracing off).")
    var otlp: String?

    @Option(help: "clamd's Unix socket (anti-virus; default: the local services' clamd).")
    var clamd: String?

    @Option(help: "The node's Datapath Manager socket (http-proxy binds client flows to cookies through it).")
    var datapathSocket: String?

    @Option(help: "http-proxy: where to listen, HOST:PORT (default 0.0.0.0:80 transparent, 127.0.0.1:8080 explicit).")
    var listen: String?

    @Option(help: "http-proxy explicit mode: send every request to HOST:PORT.")
    var upstream: String?

    @Flag(help: "http-proxy transparent mode (inside a pod): IP_TRANSPARENT listener, each connection to its original destination.")
    var transparent = false

    @Option(help: "http-proxy: bodies up to this size are held for the handlers (e.g. 1MiB); larger ones stream through uninspected.")
    var inspectLimit: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        guard let kind = MicroserviceKind(rawValue: kind) else {
            throw commandFailure(
                "unknown kind '\(kind)' (expected one of: \(MicroserviceKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var file = MicroserviceFile()
        if let config {
            do {
                file = try MicroserviceFile.load(path: config)
            } catch {
                for diagnostic in error.diagnostics { printError("\(diagnostic)") }
                throw ExitCode.failure
            }
        }
        var settings = MicroserviceSettings(name: name, kind: kind, cnf: cnf, runDirectory: runDir)
        if let spec = try loadSpec() {
            guard let microservice = spec.microservices.first(where: { $0.name == name }) else {
                throw commandFailure(
                    "CNF '\(spec.name)' has no μsrv '\(name)' (it has: \(spec.microservices.map(\.name).joined(separator: ", ")))")
            }
            guard microservice.kind == kind else {
                throw commandFailure("in CNF '\(spec.name)', '\(name)' is a \(microservice.kind.rawValue), not a \(kind.rawValue)")
            }
            settings.apply(spec)
        }
        let infra = InfraConfiguration.fromEnvironment()
        settings.redis = try redis.map { try Address.endpoint($0, option: "--redis") } ?? file.redis
            ?? .tcp(host: infra.host, port: infra.redisPort)
        if otlp == "none" {
            settings.otlp = nil
        } else if let otlp = try otlp.map({ try Address.endpoint($0, option: "--otlp") }) ?? file.otlp {
            settings.otlp = otlp
        }
        let logger = makeLogger(label: "edgetrail.microservice", component: name, level: logLevel)
        let kit = MicroserviceKit(settings: settings, logger: logger)
        let readyLine = "ready api=\(settings.apiSocket) events=\(settings.eventsSocket)"
        var proxy: HTTPProxy?
        let api: [any RegistrableRPCService]
        var extra: [any Service] = []
        switch kind {
        case .httpProxy:
            let httpProxy = HTTPProxy(kit: kit, settings: try proxySettings(file))
            api = [HTTPProxyService(proxy: httpProxy)]
            extra = httpProxy.services
            proxy = httpProxy
        case .policyManager:
            api = [PolicyManagerService(kit: kit, rules: file.policy ?? PolicyRules(rules: []))]
        case .contentInspect:
            api = [ContentInspectService(kit: kit)]
        case .antiVirus:
            api = [AntiVirusService(kit: kit, clamd: ClamAVClient(socketPath: clamd ?? file.clamd ?? infra.clamdSocket, timeoutSeconds: 30))]
        }
        let services: [any Service]
        do {
            services = try kit.services(api: api, extra: extra) { [proxy] in
                var line = readyLine
                if let proxy {
                    // Port 0 picks a free port: the line says which.
                    guard let address = await proxy.listeningAddress else { return }
                    line += " listen=\(address.ipAddress ?? "?"):\(address.port ?? 0)"
                }
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map {
                    .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
                },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        var failure: (any Error)?
        do {
            try await group.run()
        } catch {
            failure = error
        }
        kit.removeSockets()
        let counts = kit.hub.counts.sorted { $0.key < $1.key }.map { name, count in
            "\(name): \(count.raised) raised, \(count.answered) answered"
                + count.defaulted.sorted { $0.key.rawValue < $1.key.rawValue }.map { ", \($0.value) \($0.key.rawValue)" }.joined()
        }
        if !counts.isEmpty { logger.info("events", metadata: ["counts": "\(counts.joined(separator: "; "))"]) }
        if let failure {
            printError("error: \(failure)")
            throw ExitCode.failure
        }
    }

    private func loadSpec() throws -> CNFSpec? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: cnf, isDirectory: &isDirectory) else { return nil }
        let path = isDirectory.boolValue ? cnf + "/cnf.yaml" : cnf
        do {
            return try CNFSpecReader.load(path: path)
        } catch {
            for diagnostic in error.diagnostics { printError("\(diagnostic)") }
            throw ExitCode.failure
        }
    }

    private func listenAddress(_ file: MicroserviceFile) -> String {
        if let listen { return listen }
        if let listen = file.proxy.listen { return "\(listen.host):\(listen.port)" }
        return isTransparent(file) ? "0.0.0.0:80" : "127.0.0.1:8080"
    }

    private func isTransparent(_ file: MicroserviceFile) -> Bool { transparent || (file.proxy.transparent && upstream == nil) }

    private func proxySettings(_ file: MicroserviceFile) throws -> ProxySettings {
        let listen = try Address.hostPort(listenAddress(file), option: "--listen")
        let mode: ProxySettings.Mode
        if isTransparent(file) {
            mode = .transparent
        } else if let upstream = try upstream.map({ try Address.hostPort($0, option: "--upstream") }) ?? file.proxy.upstream {
            mode = .explicit(upstreamHost: upstream.host, upstreamPort: upstream.port)
        } else {
            throw commandFailure(
                "http-proxy needs --upstream HOST:PORT (explicit mode) or --transparent (inside a pod), here or in --config")
        }
        var settings = ProxySettings(mode: mode, listenHost: listen.host, listenPort: listen.port)
        if let limit = inspectLimit {
            var context = YAMLContext(fileName: "--inspect-limit")
            guard let bytes = context.byteSize(Node(limit), what: "--inspect-limit") else {
                throw commandFailure(context.diagnostics.map(\.message).joined(separator: "; "))
            }
            settings.inspectLimit = bytes
        } else if let limit = file.proxy.inspectLimit {
            settings.inspectLimit = limit
        }
        settings.datapathSocket = datapathSocket ?? file.datapathSocket
        return settings
    }
}

/// A μsrv's settings file.
struct MicroserviceFile {
    struct Proxy {
        var listen: (host: String, port: Int)?
        var upstream: (host: String, port: Int)?
        var transparent = false
        var inspectLimit: Int?
    }

    var redis: EdgetrailCore.Endpoint?
    var otlp: EdgetrailCore.Endpoint?
    var clamd: String?
    var datapathSocket: String?
    var proxy = Proxy()
    var policy: PolicyRules?

    static func load(path: String) throws(DiagnosticsError) -> MicroserviceFile {
        let text = try TextFile.read(path, what: "the μsrv settings")
        var context = YAMLContext(fileName: path)
        var file = MicroserviceFile()
        guard let (_, mapping) = context.document(text, what: "a mapping of μsrv settings") else {
            throw DiagnosticsError(context.diagnostics)
        }
        let fields = context.fields(
            of: mapping, allowed: ["redis", "otlp", "clamd", "datapath_socket", "proxy", "policy"], what: "the μsrv settings")
        func endpoint(_ field: String) -> EdgetrailCore.Endpoint? {
            guard let node = fields[field], let text = context.string(node, what: field) else { return nil }
            if text.contains("/") { return .unix(path: text) }
            return context.hostPort(node, what: field).map { .tcp(host: $0.host, port: $0.port) }
        }
        file.redis = endpoint("redis")
        file.otlp = endpoint("otlp")
        file.clamd = fields["clamd"].flatMap { context.string($0, what: "clamd") }
        file.datapathSocket = fields["datapath_socket"].flatMap { context.string($0, what: "datapath_socket") }
        if let node = fields["proxy"], let proxy = context.mapping(node, what: "the proxy section") {
            let proxyFields = context.fields(
                of: proxy, allowed: ["listen", "upstream", "transparent", "inspect_limit"], what: "the proxy section")
            file.proxy.listen = proxyFields["listen"].flatMap { context.hostPort($0, what: "listen") }
            file.proxy.upstream = proxyFields["upstream"].flatMap { context.hostPort($0, what: "upstream") }
            if let node = proxyFields["transparent"] {
                file.proxy.transparent = context.choice(node, what: "transparent", from: ["true", "false"]) == "true"
            }
            file.proxy.inspectLimit = proxyFields["inspect_limit"].flatMap { context.byteSize($0, what: "inspect_limit") }
        }
        if let node = fields["policy"] { file.policy = PolicyRules.read(node, context: &context) }
        guard context.diagnostics.isEmpty else { throw DiagnosticsError(context.diagnostics) }
        return file
    }
}
