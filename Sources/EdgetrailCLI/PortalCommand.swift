import ArgumentParser
import EdgetrailInfra
import EdgetrailNet
import EdgetrailPortal
import Foundation
import Logging
import ServiceLifecycle

struct PortalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portal",
        abstract: "Serve the operator portal: dashboard, CNF provisioning, CNF tracing, accounts, and /api/v1.",
        discussion: """
            A web application for operators and ops teams. It shows the edge nodes named with --node \
            (through each node's agent and Datapath Manager sockets under the run directory), the \
            node collector's figures, and the sessions stored at central (--central).

            Users and API tokens are kept in DATA-DIR/portal.sqlite. On the first start the portal \
            creates the user 'admin' (role operator) and prints its password once; set \
            EDGETRAIL_PORTAL_ADMIN_PASSWORD to choose it instead. Roles: 'operator' may change things, \
            'viewer' may only look. Programs use /api/v1 with 'Authorization: Bearer TOKEN' (create a \
            token on My Account); /api/v1/openapi.json describes it.
            """)

    @Option(help: "Where the portal listens, HOST:PORT.")
    var listen = "127.0.0.1:8080"

    @Option(help: "The portal's data folder (users, API tokens) (default RUN/portal).")
    var dataDir: String?

    @Option(help: "An edge node to show; repeat for several.")
    var node: [String] = ["edge-1"]

    @Option(help: "Central's query API.")
    var central = "http://127.0.0.1:7070"

    @Option(help: "The node collector's metrics address.")
    var collectorMetrics = "http://127.0.0.1:9464/metrics"

    @Option(help: "The run directory the nodes were brought up under (default ./.run or $EDGETRAIL_RUN_DIR).")
    var runDir: String?

    @Option(help: "Folder of example CNFs (each with a cnf.yaml) that Add CNF offers.")
    var examples = "examples"

    @Option(help: "Folder of Grafana dashboards (*.json) the Dashboards page draws.")
    var dashboards = "dashboards"

    @Option(help: "Folder of rule files (*.rules) the Filters page offers to start from.")
    var filters = "filters"

    @Option(help: "A folder of capture files (*.capture) the Filters page's dry run offers; repeat for several (default RUN/captures and filters/testdata).")
    var captures: [String] = []

    @Option(help: .hidden)
    var passwordRounds = PasswordHasher.defaultRounds

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "notice"

    func run() async throws {
        let address = try Address.hostPort(listen, option: "--listen", ports: 1...65535)
        let run = runDir ?? InfraConfiguration.fromEnvironment().runDirectory
        var configuration = PortalConfiguration(dataDirectory: dataDir ?? "\(run)/portal", runDirectory: run)
        configuration.host = address.host
        configuration.port = address.port
        configuration.nodes = node
        configuration.central = central.hasSuffix("/") ? String(central.dropLast()) : central
        configuration.collectorMetrics = collectorMetrics
        configuration.passwordRounds = passwordRounds
        configuration.examplesDirectory = URL(fileURLWithPath: examples).standardizedFileURL.path
        configuration.filtersDirectory = URL(fileURLWithPath: filters).standardizedFileURL.path
        configuration.dashboardsDirectory = URL(fileURLWithPath: dashboards).standardizedFileURL.path
        configuration.captureDirectories = (captures.isEmpty ? ["\(run)/captures", "\(filters)/testdata"] : captures).map {
            URL(fileURLWithPath: $0).standardizedFileURL.path
        }
        if let password = ProcessInfo.processInfo.environment["EDGETRAIL_PORTAL_ADMIN_PASSWORD"], !password.isEmpty {
            guard password.count >= 12 else {
                throw commandFailure("EDGETRAIL_PORTAL_ADMIN_PASSWORD needs at least 12 characters")
            }
            configuration.adminPassword = password
        }
        do {
            try ListenAddress.checkFree([ListenAddress(host: address.host, port: address.port, setting: "--listen")])
        } catch {
            throw commandFailure("\(error)")
        }
        let logger = makeLogger(label: "edgetrail.portal", component: "portal", level: logLevel)
        let portal: Portal
        do {
            portal = try Portal(configuration: configuration, logger: logger)
            if let password = try portal.createFirstAdmin() {
                if configuration.adminPassword == nil {
                    print("created the user 'admin' (operator) with the password: \(password)")
                    print("  it is shown this once; change it on My Account")
                } else {
                    print("created the user 'admin' (operator) with the password from EDGETRAIL_PORTAL_ADMIN_PASSWORD")
                }
            }
        } catch {
            throw commandFailure("\(error)")
        }
        let banner = "(data \(configuration.dataDirectory); nodes \(node.joined(separator: ", ")); central \(configuration.central))"
        let host = address.host
        let services = portal.makeServices { port in
            print("portal: http://\(host):\(port)/ \(banner)")
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
