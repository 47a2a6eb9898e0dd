import ArgumentParser
import EdgetrailInfra
import Foundation
import Logging

/// Options every `infra` subcommand shares: where the run directory is and which ports.
struct InfraOptions: ParsableArguments {
    @Option(help: "Folder for pid files, logs, sockets and data (default: ./.run or $EDGETRAIL_RUN_DIR).")
    var runDir: String?

    @Option(help: "Redis port on 127.0.0.1 (default 16379 or $EDGETRAIL_REDIS_PORT).")
    var redisPort: Int?

    @Option(help: "Kafka-protocol broker port on 127.0.0.1 (default 19092 or $EDGETRAIL_BROKER_PORT).")
    var brokerPort: Int?

    @Option(help: "PostgreSQL port on 127.0.0.1 (default 15432 or $EDGETRAIL_POSTGRES_PORT).")
    var postgresPort: Int?

    var configuration: InfraConfiguration {
        var configuration = InfraConfiguration.fromEnvironment()
        if let runDir {
            configuration.runDirectory = URL(fileURLWithPath: runDir).standardizedFileURL.path
        }
        if let redisPort { configuration.redisPort = redisPort }
        if let brokerPort { configuration.brokerPort = brokerPort }
        if let postgresPort { configuration.postgresPort = postgresPort }
        return configuration
    }
}

extension InfraKind: ExpressibleByArgument {}

struct InfraCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infra",
        abstract: "Start, stop and list the local infrastructure: Redis, the Kafka-protocol broker, clamd, PostgreSQL.",
        discussion: """
            What the edge node and central rely on, run locally (the CNF's own microservices are \
            started by the node, not here). Each runs as a detached process under the run directory (pid files, logs/, sockets), \
            listening on 127.0.0.1 only. 'up' is safe to repeat; a port taken by another program is \
            reported, not waited on. The broker (tansu) keeps topics in memory: stopping it empties it.
            """,
        subcommands: [Up.self, Down.self, Status.self])

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start redis, broker and clamd (and postgres with --with-postgres).")

        @OptionGroup var options: InfraOptions

        @Flag(help: "Also start a PostgreSQL cluster (for the central store).")
        var withPostgres = false

        @Option(
            name: .customLong("only"), parsing: .upToNextOption,
            help: "Start only these: \(InfraKind.allCases.map(\.rawValue).joined(separator: ", ")).")
        var only: [InfraKind] = []

        func run() throws {
            let services = LocalInfra(configuration: options.configuration)
            let kinds = only.isEmpty ? InfraKind.defaults + (withPostgres ? [.postgres] : []) : only
            do {
                try services.up(kinds) { print($0) }
            } catch {
                printError("error: \(error)")
                throw ExitCode.failure
            }
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the services started from the run directory (all, or those given with --only).")

        @OptionGroup var options: InfraOptions

        @Option(
            name: .customLong("only"), parsing: .upToNextOption,
            help: "Stop only these: \(InfraKind.allCases.map(\.rawValue).joined(separator: ", ")).")
        var only: [InfraKind] = []

        func run() throws {
            let kinds = only.isEmpty ? InfraKind.allCases : only
            let stopped = LocalInfra(configuration: options.configuration).down(kinds) { print($0) }
            if stopped.isEmpty { print("nothing was running") }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One line per service: its name, up or down, and its address.")

        @OptionGroup var options: InfraOptions

        func run() throws {
            for line in LocalInfra(configuration: options.configuration).status() {
                print(line)
            }
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Sends every log line of the process to stderr at `level` and returns the command's logger.
func makeLogger(label: String, component: String, level: String) -> Logger {
    let threshold = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = threshold
        return handler
    }
    var logger = Logger(label: label)
    logger[metadataKey: "component"] = "\(component)"
    return logger
}
