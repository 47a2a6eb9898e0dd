import ArgumentParser

/// `edgetrail`: build, deploy and observe cloud-native network functions at the edge.
public struct EdgetrailCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "edgetrail",
        abstract: "Build, deploy and observe cloud-native network functions (CNFs) at the edge.",
        discussion: """
            Start with 'edgetrail demo' (what 'make demo' runs), or bring the local infra up with \
            'edgetrail infra up' and check a CNF spec with 'edgetrail cnf validate FILE'.
            """,
        version: "0.1.0",
        subcommands: [
            DemoCommand.self, InfraCommand.self, CNFCommand.self, CollectorCommand.self, CentralCommand.self,
            TraceCommand.self, FiltersCommand.self, DatapathCommand.self, MicroserviceCommand.self, OriginCommand.self,
            NodeCommand.self, PortalCommand.self, BenchCommand.self,
        ])

    public init() {}
}
