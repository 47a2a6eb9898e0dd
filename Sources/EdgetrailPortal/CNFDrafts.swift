import EdgetrailCNF
import EdgetrailCore
import EdgetrailProto
import Foundation

/// One problem in a draft, where it is: the same message and line:column `edgetrail cnf validate`
/// reports for the same text.
public struct DraftProblem: Codable, Sendable, Equatable {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    public var warning: Bool

    public var description: String { "\(file):\(line):\(column): \(warning ? "warning: " : "")\(message)" }
}

public struct DraftReport: Codable, Sendable, Equatable {
    /// No errors (warnings allowed): the draft may be saved and deployed.
    public var ok: Bool
    public var problems: [DraftProblem]
    /// The files the spec names, in its order (the editor shows one box each).
    public var files: [String]
    /// The μsrvs as the spec declares them (empty while the spec does not read).
    public var microservices: [DraftMicroservice] = []
    /// The datapath rules in the spec's shorthand.
    public var rules: [String] = []
}

/// One μsrv of a draft, as the editor summarises it.
public struct DraftMicroservice: Codable, Sendable, Equatable {
    public var name: String
    public var kind: String
    public var labels: [String]
    /// "EVENT=FILE" for each handler bound to it.
    public var handlers: [String]
    public var config: String?
}

/// Checks a draft as `edgetrail cnf validate` checks a folder: the spec (its datapath rules
/// included), then each handler compiled by Python. The spec is `cnf.yaml`; its files are
/// looked up in the draft, not on disk.
enum DraftCheck {
    static let specFile = "cnf.yaml"

    static func check(_ draft: CNFDraft) -> DraftReport {
        var problems: [DraftProblem] = []
        var needed: [String] = []
        var handlers: [String] = []
        var microservices: [DraftMicroservice] = []
        var rules: [String] = []
        let files = draft.files
        let reader = CNFSpecReader(fileName: specFile, baseDirectory: "") { path in
            files[path] == nil ? "no such file in this CNF; add it below" : nil
        }
        do {
            let spec = try reader.read(draft.spec)
            needed = spec.files
            microservices = spec.microservices.map { microservice in
                DraftMicroservice(
                    name: microservice.name, kind: microservice.kind.rawValue, labels: microservice.labels,
                    handlers: spec.handlers.filter { $0.microservice == microservice.name }.map { "\($0.event)=\($0.file)" },
                    config: microservice.config)
            }
            rules = spec.datapath.map(\.shorthand)
            handlers = HandlerCheck.files(of: spec, at: specFile)
            if spec.name != draft.name {
                problems.append(
                    DraftProblem(
                        file: specFile, line: 1, column: 1,
                        message: "the spec names the CNF '\(spec.name)', but this is '\(draft.name)'; a CNF keeps its name (add a new CNF for another)",
                        warning: false))
            }
        } catch {
            problems += error.diagnostics.map { Self.problem($0, warning: false) }
            // The spec cannot say which files are handlers; check the Python ones there are.
            handlers = files.keys.filter { $0.hasSuffix(".py") }.sorted()
            needed = files.keys.sorted()
        }
        let present = handlers.filter { files[$0] != nil }
        do {
            problems += try HandlerCheck.check(present, sources: files).map { Self.problem($0.diagnostic, warning: $0.isWarning) }
        } catch {
            problems.append(DraftProblem(file: specFile, line: 1, column: 1, message: error.message, warning: false))
        }
        return DraftReport(
            ok: !problems.contains { !$0.warning }, problems: problems, files: needed, microservices: microservices, rules: rules)
    }

    static func problem(_ diagnostic: Diagnostic, warning: Bool) -> DraftProblem {
        DraftProblem(
            file: diagnostic.location.file, line: diagnostic.location.line, column: diagnostic.location.column,
            message: diagnostic.message, warning: warning)
    }

    /// The deployment the node agent takes, made from a draft.
    static func request(_ draft: CNFDraft) -> Edgetrail_V1_DeployRequest {
        var request = Edgetrail_V1_DeployRequest()
        request.specYaml = draft.spec
        request.specPath = specFile
        for (path, text) in draft.files { request.files[path] = Data(text.utf8) }
        return request
    }

    /// A draft from a folder holding `cnf.yaml` (an example): the spec and every file it names.
    static func load(folder: String) throws(PortalFailure) -> CNFDraft {
        let path = folder + "/" + specFile
        guard let spec = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw PortalFailure(status: 400, "\(path): cannot read it")
        }
        let parsed: CNFSpec
        do {
            parsed = try CNFSpecReader.load(path: path)
        } catch {
            throw PortalFailure(status: 400, "\(path) is not a valid CNF spec:\n\(error.description)")
        }
        var files: [String: String] = [:]
        for file in parsed.files {
            guard let text = try? String(contentsOfFile: folder + "/" + file, encoding: .utf8) else {
                throw PortalFailure(status: 400, "\(folder)/\(file): cannot read it")
            }
            files[file] = text
        }
        return CNFDraft(name: parsed.name, spec: spec, files: files)
    }

    /// A new CNF's starting point: one http-proxy pod that web traffic is steered through, and
    /// a handler that lets every request through.
    static func template(name: String) -> CNFDraft {
        CNFDraft(
            name: name,
            spec: """
                name: \(name)
                node: edge-1

                microservices:
                  - name: http-proxy
                    kind: http-proxy
                    labels: [http-proxy]
                    events: [request_received]

                handlers:
                  - microservice: http-proxy
                    event: request_received
                    file: handlers/on_request.py

                datapath:
                  - "10.201.0.2 80 : redirect => [http-proxy]"

                """,
            files: [
                "handlers/on_request.py": """
                from edgetrail.sdk import Verdict


                def handle(event, ctx):
                    ctx.span.set_tag("path", event.attributes.get("http.path", ""))
                    return Verdict.allow()

                """
            ])
    }

    /// Example folders under `directory`: each subfolder with a `cnf.yaml`.
    static func examples(in directory: String?) -> [String] {
        guard let directory, let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { FileManager.default.fileExists(atPath: "\(directory)/\($0)/\(specFile)") }.sorted()
    }
}

/// Deploys and updates started from the portal, each with its progress lines and outcome, so a
/// page (or several) can follow one as server-sent events and a late reader gets it all.
actor Deployments {
    enum Event: Sendable {
        case step(String)
        case outcome(DeploymentOutcome)
    }

    struct Operation {
        var summary: DeploymentSummary
        var events: [Event] = []
        var followers: [UUID: AsyncStream<Event>.Continuation] = [:]
    }

    private var operations: [String: Operation] = [:]
    private var order: [String] = []

    func start(cnf: String, node: String, update: Bool, by user: String) -> String {
        let id = Secrets.randomHex(bytes: 8)
        operations[id] = Operation(
            summary: DeploymentSummary(id: id, cnf: cnf, node: node, update: update, user: user, steps: [], outcome: nil))
        order.append(id)
        // Keep the last 100.
        while order.count > 100 { operations[order.removeFirst()] = nil }
        return id
    }

    func record(_ id: String, _ event: Event) {
        guard var operation = operations[id] else { return }
        operation.events.append(event)
        switch event {
        case .step(let line): operation.summary.steps.append(line)
        case .outcome(let outcome): operation.summary.outcome = outcome
        }
        for follower in operation.followers.values {
            follower.yield(event)
            if case .outcome = event { follower.finish() }
        }
        if case .outcome = event { operation.followers = [:] }
        operations[id] = operation
    }

    func summary(_ id: String) -> DeploymentSummary? { operations[id]?.summary }

    /// Everything so far, then what comes, until the outcome.
    func follow(_ id: String) -> AsyncStream<Event>? {
        guard var operation = operations[id] else { return nil }
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        for event in operation.events { continuation.yield(event) }
        if operation.summary.outcome != nil {
            continuation.finish()
        } else {
            let key = UUID()
            operation.followers[key] = continuation
            operations[id] = operation
            continuation.onTermination = { _ in Task { await self.unfollow(id, key) } }
        }
        return stream
    }

    private func unfollow(_ id: String, _ key: UUID) {
        operations[id]?.followers[key] = nil
    }
}

public struct DeploymentOutcome: Codable, Sendable, Equatable {
    public var ok: Bool
    public var version: UInt32
    public var error: String?
    public var rolledBack: Bool
}

public struct DeploymentSummary: Codable, Sendable, Equatable {
    public var id: String
    public var cnf: String
    public var node: String
    public var update: Bool
    public var user: String
    public var steps: [String]
    public var outcome: DeploymentOutcome?
}
