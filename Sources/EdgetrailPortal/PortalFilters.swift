import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailFilters
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Hummingbird


/// A rule file's problems, as `edgetrail filters lint` reports them.
public struct RuleCheck: Codable, Sendable, Equatable {
    public var ok: Bool
    public var rules: Int
    public var problems: [DraftProblem]

    static func check(_ text: String, fileName: String = "active.rules") -> (RuleCheck, RuleFile?) {
        do {
            let file = try RuleFile.parse(text, fileName: fileName)
            return (RuleCheck(ok: true, rules: file.statements.count, problems: []), file)
        } catch {
            return (RuleCheck(ok: false, rules: 0, problems: error.diagnostics.map { DraftCheck.problem($0, warning: false) }), nil)
        }
    }
}

/// What activating a rule file on a node's collector came to.
public struct Activation: Codable, Sendable, Equatable {
    /// "applied": the collector reports the new rules in force; "refused": it kept the old ones
    /// (see its log); "unconfirmed": written, but the collector said nothing within 5 s (is it running?).
    public var outcome: String
    public var node: String
    public var file: String
    public var message: String
}

/// A dry run's figures, as `edgetrail filters test` prints them, and the capture it ran on.
public struct DryRunReport: Codable, Sendable, Equatable {
    public var capture: String
    public var report: String
    public var cookies: Int
    public var cookiesKept: Int
    public var records: Int
    public var recordsKept: Int
}

extension Portal {
    func addFilters(_ routes: PortalRoutes) {
        routes.view("/api/v1/filters/rollouts", api: true, summary: "Published filter rule sets and each node's answer (central's /v1/filters).") {
            [self] _, _, _ in
            switch await rollouts() {
            case .success(let found): return PortalRoutes.json(200, found)
            case .failure(let error): return PortalRoutes.json(502, ["error": error.description])
            }
        }
        routes.view("/filters", api: false, summary: "Filters") { [self] request, context, _ in
            let parameters = Self.query(request)
            let node = parameters["node"] ?? configuration.nodes[0]
            try backend.checkNode(node)
            var text = (try? String(contentsOfFile: configuration.filterFile(node: node), encoding: .utf8))
            var note: String? = text == nil ? "The node \(node) has no filter file at \(configuration.filterFile(node: node)); is it up?" : nil
            if let from = parameters["from"], let directory = configuration.filtersDirectory, Self.ruleFiles(in: directory).contains(from) {
                text = try? String(contentsOfFile: "\(directory)/\(from)", encoding: .utf8)
                note = "Loaded \(from); activate it to put it in force on \(node)."
            }
            let rules = text ?? ""
            return page(
                context,
                Pages.filters(
                    frame: frame(context, "filters"), node: node, nodes: configuration.nodes, text: rules, check: RuleCheck.check(rules).0,
                    files: Self.ruleFiles(in: configuration.filtersDirectory), captures: captures(), report: nil, note: note,
                    rollouts: await rollouts()))
        }
        routes.change(.post, "/filters", api: false, summary: "Dry-run or activate a rule file", need: .signedIn) { [self] _, context, user, form in
            let node = form.field("node") ?? configuration.nodes[0]
            try backend.checkNode(node)
            let text = form.field("rules") ?? ""
            let (check, _) = RuleCheck.check(text)
            var report: DryRunReport?
            var note: String?
            var failure: String?
            var status = 200
            do {
                if form.field("action") == "activate" {
                    guard user.role == .operator else { return PortalRoutes.forbidden(api: false, user: user) }
                    if check.ok {
                        let activation = try await activate(text, node: node, user: user)
                        if activation.outcome == "applied" { note = activation.message } else { failure = activation.message }
                    } else {
                        status = 422
                        failure = "Not activated: the file does not lint; the rules in force stay."
                    }
                } else if check.ok {
                    report = try await dryRun(text, capture: form.field("capture") ?? "central")
                } else {
                    status = 422
                }
            } catch let problem as PortalFailure {
                // The page comes back with the text as typed and what went wrong.
                status = problem.status
                failure = problem.description
            }
            return page(
                context,
                Pages.filters(
                    frame: frame(context, "filters"), node: node, nodes: configuration.nodes, text: text, check: check,
                    files: Self.ruleFiles(in: configuration.filtersDirectory), captures: captures(), report: report, note: note,
                    failure: failure, rollouts: await rollouts()),
                status: status)
        }

        routes.change(.post, "/api/v1/filters/lint", api: true, summary: "Lints rule text ({text}) as `edgetrail filters lint` does.", need: .signedIn) { _, _, _, body in
            struct Lint: Decodable { var text: String }
            return PortalRoutes.json(200, RuleCheck.check(try body.decode(Lint.self).text).0)
        }
        routes.change(.post, "/api/v1/filters/dry-run", api: true, summary: "Runs rule text over a capture ({text, capture: \"central\" or \"file:NAME\"}): the figures of `edgetrail filters test`.", need: .signedIn) {
            [self] _, _, _, body in
            struct Run: Decodable { var text: String; var capture: String? }
            let run = try body.decode(Run.self)
            let (check, _) = RuleCheck.check(run.text)
            guard check.ok else { return PortalRoutes.json(422, check) }
            return PortalRoutes.json(200, try await dryRun(run.text, capture: run.capture ?? "central"))
        }
        routes.view("/api/v1/filters/active", api: true, summary: "The rule file in force on a node's collector (?node=NAME).") { [self] request, _, _ in
            let node = Self.query(request)["node"] ?? configuration.nodes[0]
            try backend.checkNode(node)
            guard let text = try? String(contentsOfFile: configuration.filterFile(node: node), encoding: .utf8) else {
                throw PortalFailure(status: 503, "the node \(node) has no filter file at \(configuration.filterFile(node: node)); is it up?")
            }
            return PortalRoutes.json(200, ["node": node, "text": text])
        }
        routes.change(.put, "/api/v1/filters/active", api: true, summary: "Activates rule text on a node's collector ({node, text}); refused with its problems when it does not lint.", need: .operator) {
            [self] _, _, user, body in
            struct Activate: Decodable { var node: String?; var text: String }
            let request = try body.decode(Activate.self)
            let node = request.node ?? configuration.nodes[0]
            try backend.checkNode(node)
            let (check, _) = RuleCheck.check(request.text)
            guard check.ok else { return PortalRoutes.json(422, check) }
            return PortalRoutes.json(200, try await activate(request.text, node: node, user: user))
        }
    }

    static func ruleFiles(in directory: String?) -> [String] {
        guard let directory, let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasSuffix(".rules") }.sorted()
    }

    /// Capture files offered for a dry run, by name (`DIR/NAME.capture`).
    func captures() -> [String] {
        var names: [String] = []
        for directory in configuration.captureDirectories {
            let found = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            names += found.filter { $0.hasSuffix(".capture") && !names.contains($0) }.sorted()
        }
        return names
    }

    func dryRun(_ text: String, capture: String) async throws -> DryRunReport {
        let (_, file) = RuleCheck.check(text)
        guard let file else { throw PortalFailure(status: 422, "the rules do not lint") }
        let batches: [Edgetrail_V1_CookieBatch]
        let described: String
        if capture.hasPrefix("file:") {
            let name = String(capture.dropFirst(5))
            guard captures().contains(name),
                let directory = configuration.captureDirectories.first(where: { FileManager.default.fileExists(atPath: "\($0)/\(name)") })
            else { throw PortalFailure(status: 400, "there is no capture named '\(name)'") }
            let path = "\(directory)/\(name)"
            do {
                batches = try await Blocking.run { try CaptureFile.read(path: path) }
            } catch {
                throw PortalFailure(status: 400, "\(error.localizedDescription)")
            }
            described = name
        } else {
            var query = CookieQuery()
            query.limit = 500
            let data: Data
            do {
                data = try await backend.central.capture(query)
            } catch {
                throw PortalFailure(status: 502, error.message)
            }
            guard !data.isEmpty else {
                throw PortalFailure(status: 400, "central has no sessions yet to dry-run on; send some traffic, or pick a capture file")
            }
            batches = try CaptureFile.read(data: data, name: "central's recent sessions")
            described = "central's \(batches.count) most recent sessions (as shipped: rules in force at the edge already applied)"
        }
        let result = try await Blocking.run { DryRun.run(files: [file], batches: batches) }
        return DryRunReport(
            capture: described, report: result.report(), cookies: result.cookies, cookiesKept: result.cookiesKept, records: result.records,
            recordsKept: result.recordsKept)
    }

    /// Writes the rules to the node's filter file (atomically: the collector never reads half a
    /// file) and waits up to 5 s for the collector to report them applied or refused.
    func activate(_ text: String, node: String, user: PortalUser) async throws -> Activation {
        let path = configuration.filterFile(node: node)
        guard FileManager.default.fileExists(atPath: (path as NSString).deletingLastPathComponent) else {
            throw PortalFailure(status: 503, "the node \(node) has no filter folder at \(path); is it up?")
        }
        let before = await reloads()
        do {
            try await Blocking.run { try text.write(toFile: path, atomically: true, encoding: .utf8) }
        } catch {
            throw PortalFailure(status: 500, "cannot write \(path): \(error.localizedDescription)")
        }
        logger.notice("filter rules activated from the portal", metadata: ["node": "\(node)", "user": "\(user.name)", "file": "\(path)"])
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(250))
            guard let before, let now = await reloads() else { continue }
            if now.refused > before.refused {
                return Activation(
                    outcome: "refused", node: node, file: path,
                    message: "The collector refused the file and keeps the rules it had; its log says why.")
            }
            if now.applied > before.applied {
                return Activation(outcome: "applied", node: node, file: path, message: "Activated on \(node): the collector applied the rules.")
            }
        }
        return Activation(
            outcome: "unconfirmed", node: node, file: path,
            message: "Written to \(path), but the collector did not confirm within 5 s; is it running? (\(configuration.collectorMetrics))")
    }

    /// The collector's count of rule reloads applied and refused.
    func reloads() async -> (applied: Double, refused: Double)? {
        guard let samples = await PortalBackend.scrape(configuration.collectorMetrics) else { return nil }
        let name = "edgetrail_collector_source_events_total"
        return (
            samples.sum(name, where: ["source": "filters", "event": "reload_applied"]),
            samples.sum(name, where: ["source": "filters", "event": "reload_refused"])
        )
    }
}

extension Portal {
    /// Central's view of the published rule sets.
    func rollouts() async -> Result<FilterRollouts, CentralClientError> {
        do {
            return .success(try await CentralClient(base: configuration.central).filterRollouts())
        } catch {
            return .failure(error)
        }
    }
}
