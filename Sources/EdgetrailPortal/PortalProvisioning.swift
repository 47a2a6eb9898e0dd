import EdgetrailNodeAgentAPI
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import Hummingbird
import ServiceLifecycle

/// CNF provisioning: Add CNF (from an example or a template), the editor (spec, datapath rules
/// and handler code, checked before save), Deploy / Update with live progress, Del CNF.
extension Portal {
    func addProvisioning(_ routes: PortalRoutes) {
        let store = self.store
        let examples = configuration.examplesDirectory

        // MARK: Pages

        routes.view("/cnfs/new", api: false, summary: "Add CNF") { [self] _, context, _ in
            page(context, Pages.addCNF(frame: frame(context, "cnfs"), examples: DraftCheck.examples(in: examples), message: nil))
        }
        routes.change(.post, "/cnfs/new", api: false, summary: "Add CNF", need: .operator) { [self] _, context, user, form in
            let draft = try newDraft(source: form.field("source") ?? "", name: form.field("name") ?? "")
            try await Blocking.run { try store.saveDraft(draft, by: user.name, create: true) }
            return done(context, "Added \(draft.name) to the editor; check it, then deploy it.", to: "/cnfs/edit/\(draft.name)")
        }
        routes.view("/cnfs/edit/:name", api: false, summary: "The CNF editor") { [self] _, context, _ in
            let draft = try await loadDraft(try context.parameters.require("name"))
            let report = await Self.check(draft)
            let nodes = configuration.nodes
            return page(context, Pages.editor(frame: frame(context, "cnfs"), draft: draft, report: report, nodes: nodes))
        }
        routes.change(.post, "/cnfs/edit/:name", api: false, summary: "Save a CNF from the editor", need: .operator) { [self] _, context, user, form in
            var draft = try await loadDraft(try context.parameters.require("name"))
            draft.spec = form.field("spec") ?? draft.spec
            for path in draft.files.keys {
                if let text = form.field("file:" + path) { draft.files[path] = text }
            }
            let added = (form.field("new_file") ?? "").trimmingCharacters(in: .whitespaces)
            if !added.isEmpty {
                guard Self.isDraftPath(added) else {
                    throw PortalFailure(status: 400, "'\(added)' is not a file path inside the CNF (like handlers/on_request.py)")
                }
                draft.files[added] = draft.files[added] ?? ""
            }
            for path in draft.files.keys where form.field("remove:" + path) == "on" { draft.files[path] = nil }
            let report = await Self.check(draft)
            guard report.ok || !added.isEmpty else {
                // Nothing saved: the editor comes back with the text as typed and where it is wrong.
                return PortalRoutes.html(422, Pages.editor(frame: frame(context, "cnfs"), draft: draft, report: report, nodes: configuration.nodes))
            }
            let saved = draft
            try await Blocking.run { try store.saveDraft(saved, by: user.name) }
            return done(context, report.ok ? "Saved \(draft.name)." : "Added \(added); fill it in.", to: "/cnfs/edit/\(draft.name)")
        }
        routes.change(.post, "/cnfs/edit/:name/delete", api: false, summary: "Remove a CNF from the editor", need: .operator) { [self] _, context, _, _ in
            let name = try context.parameters.require("name")
            try await Blocking.run { try store.deleteDraft(named: name) }
            return done(context, "Removed \(name) from the editor (a deployed CNF keeps running).", to: "/cnfs")
        }
        routes.change(.post, "/cnfs/edit/:name/deploy", api: false, summary: "Deploy or update a CNF", need: .operator) { [self] _, context, user, form in
            let id = try await startDeployment(draft: try context.parameters.require("name"), node: form.field("node"), user: user)
            return PortalRoutes.redirect("/deployments/\(id)")
        }
        routes.view("/deployments/:id", api: false, summary: "A deploy's progress") { [self] _, context, _ in
            guard let summary = await deployments.summary(try context.parameters.require("id")) else {
                throw PortalFailure(status: 404, "no such deploy (the portal keeps its last 100)")
            }
            return page(context, Pages.deployment(frame: frame(context, "cnfs"), summary))
        }

        // MARK: API

        routes.view("/api/v1/drafts", api: true, summary: "The CNFs in the editor.") { _, _, _ in
            PortalRoutes.json(200, ["drafts": try await Blocking.run { try store.drafts() }])
        }
        routes.change(.post, "/api/v1/drafts", api: true, summary: "Adds a CNF to the editor ({source: \"example:NAME\" or \"template\", name}).", need: .operator) {
            [self] _, _, user, body in
            struct Add: Decodable { var source: String; var name: String? }
            let add = try body.decode(Add.self)
            let draft = try newDraft(source: add.source, name: add.name ?? "")
            try await Blocking.run { try store.saveDraft(draft, by: user.name, create: true) }
            return PortalRoutes.json(201, draft)
        }
        routes.view("/api/v1/drafts/:name", api: true, summary: "A CNF in the editor, with its check.") { [self] _, context, _ in
            let draft = try await loadDraft(try context.parameters.require("name"))
            struct Answer: Encodable { var draft: CNFDraft; var check: DraftReport }
            return PortalRoutes.json(200, Answer(draft: draft, check: await Self.check(draft)))
        }
        routes.change(.put, "/api/v1/drafts/:name", api: true, summary: "Saves a CNF's spec and files ({spec, files}); refused with its problems when it does not check.", need: .operator) {
            [self] _, context, user, body in
            struct Save: Decodable { var spec: String; var files: [String: String] }
            let name = try context.parameters.require("name")
            _ = try await loadDraft(name)
            let save = try body.decode(Save.self)
            guard save.files.keys.allSatisfy(Self.isDraftPath) else {
                throw PortalFailure(status: 400, "file paths are relative paths inside the CNF, like handlers/on_request.py")
            }
            let draft = CNFDraft(name: name, spec: save.spec, files: save.files)
            let report = await Self.check(draft)
            guard report.ok else { return PortalRoutes.json(422, report) }
            try await Blocking.run { try store.saveDraft(draft, by: user.name) }
            return PortalRoutes.json(200, report)
        }
        routes.change(.delete, "/api/v1/drafts/:name", api: true, summary: "Removes a CNF from the editor.", need: .operator) { _, context, _, _ in
            let name = try context.parameters.require("name")
            try await Blocking.run { try store.deleteDraft(named: name) }
            return PortalRoutes.json(200, ["removed": name])
        }
        routes.change(.post, "/api/v1/drafts/check", api: true, summary: "Checks a spec and its files as `edgetrail cnf validate` does ({name, spec, files}); saves nothing.", need: .signedIn) {
            _, _, _, body in
            struct Check: Decodable { var name: String; var spec: String; var files: [String: String]? }
            let check = try body.decode(Check.self)
            return PortalRoutes.json(200, await Self.check(CNFDraft(name: check.name, spec: check.spec, files: check.files ?? [:])))
        }
        routes.change(.post, "/api/v1/drafts/:name/deploy", api: true, summary: "Deploys a CNF from the editor to a node ({node}), or updates it there; progress at /api/v1/deployments/{id}/events.", need: .operator) {
            [self] _, context, user, body in
            let id = try await startDeployment(draft: try context.parameters.require("name"), node: body.field("node"), user: user)
            return PortalRoutes.json(202, ["id": id, "events": "/api/v1/deployments/\(id)/events"])
        }
        routes.view("/api/v1/deployments/:id", api: true, summary: "A deploy's steps and outcome so far.") { [self] _, context, _ in
            guard let summary = await deployments.summary(try context.parameters.require("id")) else {
                throw PortalFailure(status: 404, "no such deploy (the portal keeps its last 100)")
            }
            return PortalRoutes.json(200, summary)
        }
        routes.view("/api/v1/deployments/:id/events", api: true, summary: "A deploy's progress as server-sent events: 'step' (a line), then 'outcome' (JSON).") {
            [self] _, context, _ in
            guard let stream = await deployments.follow(try context.parameters.require("id")) else {
                throw PortalFailure(status: 404, "no such deploy (the portal keeps its last 100)")
            }
            return ServerSentEvents.response(
                stream.map { event -> ServerSentEvents.Event in
                    switch event {
                    case .step(let line): ServerSentEvents.Event(name: "step", data: line)
                    case .outcome(let outcome): ServerSentEvents.Event(name: "outcome", json: outcome)
                    }
                })
        }
    }

    /// A relative path without `..`: where a draft's file may be.
    static func isDraftPath(_ path: String) -> Bool {
        !path.isEmpty && !path.hasPrefix("/") && !path.split(separator: "/").contains("..") && path.count < 200
            && path != DraftCheck.specFile
    }

    static func check(_ draft: CNFDraft) async -> DraftReport {
        (try? await Blocking.run { DraftCheck.check(draft) })
            ?? DraftReport(ok: false, problems: [], files: [])
    }

    func loadDraft(_ name: String) async throws -> CNFDraft {
        let store = self.store
        guard let draft = try await Blocking.run({ try store.draft(named: name) }) else {
            throw PortalFailure(status: 404, "there is no CNF named '\(name)' in the editor; add it under CNF Provisioning")
        }
        return draft
    }

    func newDraft(source: String, name: String) throws(PortalFailure) -> CNFDraft {
        let name = name.trimmingCharacters(in: .whitespaces)
        if source.hasPrefix("example:") {
            let example = String(source.dropFirst("example:".count))
            guard let directory = configuration.examplesDirectory, DraftCheck.examples(in: directory).contains(example) else {
                throw PortalFailure(status: 400, "there is no example named '\(example)'")
            }
            return try DraftCheck.load(folder: "\(directory)/\(example)")
        }
        guard source == "template" else {
            throw PortalFailure(status: 400, "start from 'template' or 'example:NAME', not '\(source)'")
        }
        guard name.range(of: "^[a-z][a-z0-9-]{0,39}$", options: .regularExpression) != nil else {
            throw PortalFailure(status: 400, "a CNF name is lower-case letters, digits and '-', starting with a letter (at most 40)")
        }
        return DraftCheck.template(name: name)
    }

    /// Checks the draft, then sends it to the node's agent: an update when the CNF runs there,
    /// a deploy otherwise. The progress is recorded as it comes; returns the deploy's id.
    func startDeployment(draft name: String, node: String?, user: PortalUser) async throws -> String {
        let draft = try await loadDraft(name)
        let node = node.flatMap { $0.isEmpty ? nil : $0 } ?? configuration.nodes[0]
        try backend.checkNode(node)
        let report = await Self.check(draft)
        guard report.ok else {
            throw PortalFailure(
                status: 422, "\(name) does not check; fix it in the editor first:\n" + report.problems.map(\.description).joined(separator: "\n"))
        }
        let running = try await backend.agent(node) { try await $0.list(Edgetrail_V1_ListRequest()) }.cnfs.contains { $0.name == name }
        let id = await deployments.start(cnf: name, node: node, update: running, by: user.name)
        let request = DraftCheck.request(draft)
        let deployments = self.deployments
        let backend = self.backend
        logger.notice("deploy from the portal", metadata: ["cnf": "\(name)", "node": "\(node)", "user": "\(user.name)", "update": "\(running)"])
        Task {
            let outcome: DeploymentOutcome
            do {
                let result = try await backend.agent(node) { client in
                    try await NodeAgentClient.deploy(request, update: running, client: client) { step in
                        await deployments.record(id, .step(step))
                    }
                }
                outcome = DeploymentOutcome(
                    ok: result.ok, version: result.version, error: result.error.isEmpty ? nil : result.error, rolledBack: result.rolledBack)
            } catch {
                outcome = DeploymentOutcome(ok: false, version: 0, error: "\(error)", rolledBack: false)
            }
            await deployments.record(id, .outcome(outcome))
        }
        return id
    }
}

/// Server-sent events (`text/event-stream`): what the pages follow with `EventSource`.
enum ServerSentEvents {
    struct Event: Sendable {
        var name: String
        var data: String

        init(name: String, data: String) {
            self.name = name
            self.data = data
        }

        init(name: String, json value: some Encodable) {
            self.name = name
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            self.data = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }

        /// Each line of the data on its own `data:` field, as the format requires.
        var text: String {
            var text = "event: \(name)\n"
            for line in data.split(separator: "\n", omittingEmptySubsequences: false) { text += "data: \(line)\n" }
            return text + "\n"
        }
    }

    static func response<Events: AsyncSequence & Sendable>(_ events: Events) -> Response where Events.Element == Event {
        Response(
            status: .ok,
            headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody { writer in
                // Ends when the portal shuts down: a SIGTERM never waits on a browser.
                for try await event in events.cancelOnGracefulShutdown() {
                    try await writer.write(ByteBuffer(string: event.text))
                }
                try await writer.finish(nil)
            })
    }
}
