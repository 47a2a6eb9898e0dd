import EdgetrailCentralAPI
import Foundation

extension Pages {
    static func addCNF(frame: Frame, examples: [String], message: String?) -> HTML {
        let options = examples.map { name -> HTML in "<option value=\"example:\(name)\">example: \(name)</option>" }
        return layout(
            "Add CNF", frame: frame,
            """
            <form method="post" action="/cnfs/new" class="card narrow">\(csrfField(frame.csrf))
            <label>Start from <select name="source" id="source">\(options)<option value="template">a new CNF (one http-proxy pod)</option></select></label>
            <label>Name (for a new CNF; an example keeps its own) <input name="name" id="name" pattern="[a-z][a-z0-9-]*"></label>
            <button type="submit" id="add-cnf">Add CNF</button>
            </form>
            """)
    }

    static func drafts(frame: Frame, _ drafts: [CNFDraft]) -> HTML {
        let rows = drafts.map { draft -> HTML in
            let when: HTML = draft.updatedAt.map { "\(iso($0)) by \(draft.updatedBy ?? "")" } ?? ""
            return "<tr><td><a href=\"/cnfs/edit/\(draft.name)\">\(draft.name)</a></td><td>\(draft.files.count)</td><td>\(when)</td></tr>"
        }
        let add: HTML = frame.user?.role == .operator ? "<p><a class=\"button\" id=\"add-cnf-link\" href=\"/cnfs/new\">Add CNF</a></p>" : .empty
        return """
            <section><h2>CNFs in the editor</h2>\(add)
            <table id="drafts"><thead><tr><th>CNF</th><th>Files</th><th>Saved</th></tr></thead>
            <tbody>\(rows.isEmpty ? "<tr><td colspan=\"3\">None yet.</td></tr>" : rows.joined())</tbody></table></section>
            """
    }

    static func editor(frame: Frame, draft: CNFDraft, report: DraftReport, nodes: [String]) -> HTML {
        let canChange = frame.user?.role == .operator
        let disabled: HTML = canChange ? "" : " readonly"
        let problems = report.problems.map { problem -> HTML in
            let kind: HTML = problem.warning ? "warning" : "error"
            return "<li class=\"\(kind)\" data-file=\"\(problem.file)\" data-line=\"\(problem.line)\">\(problem.description)</li>"
        }
        let paths = Array(Set(draft.files.keys).union(report.files.filter { draft.files[$0] != nil })).sorted()
        let files = paths.map { path -> HTML in
            let text = draft.files[path] ?? ""
            let rows = max(6, min(40, text.split(separator: "\n", omittingEmptySubsequences: false).count + 1))
            let remove: HTML = canChange ? "<label class=\"inline-check\"><input type=\"checkbox\" name=\"remove:\(path)\"> remove</label>" : .empty
            return """
                <fieldset class="file"><legend>\(path) \(remove)</legend>
                <textarea name="file:\(path)" data-file="\(path)" rows="\(rows)" wrap="off" spellcheck="false"\(disabled)>\(text)</textarea></fieldset>
                """
        }
        let specRows = max(12, min(60, draft.spec.split(separator: "\n", omittingEmptySubsequences: false).count + 1))
        let nodeOptions = nodes.map { node -> HTML in "<option>\(node)</option>" }
        let actions: HTML =
            canChange
            ? """
            <p><button type="submit" id="save">Save</button> <label class="inline-field">Add a file <input name="new_file" placeholder="handlers/on_event.py"></label></p>
            </form>
            <form method="post" action="/cnfs/edit/\(draft.name)/deploy" class="card" id="deploy-form">\(csrfField(frame.csrf))
            <label>Edge node <select name="node">\(nodeOptions)</select></label>
            <button type="submit" id="deploy">Deploy / Update</button>
            <small>Deploys what is saved: version 1 on a node without it, else an update (rolled back by the node if it fails).</small>
            </form>
            <form method="post" action="/cnfs/edit/\(draft.name)/delete" class="inline danger">\(csrfField(frame.csrf))<button type="submit">Remove from the editor</button></form>
            """ : "</form>"
        let state: HTML = report.ok ? "<p id=\"check-state\" class=\"flash\">Checks: no errors.</p>" : "<p id=\"check-state\" class=\"error\">Checks: not deployable until fixed.</p>"
        let microserviceRows = report.microservices.map { microservice -> HTML in
            let config: HTML = microservice.config.map { "<br><small>settings \($0)</small>" } ?? .empty
            return """
                <tr><td>\(microservice.name)</td><td>\(microservice.kind)</td><td>\(microservice.labels.joined(separator: ", "))</td>\
                <td>\(microservice.handlers.joined(separator: ", "))\(config)</td></tr>
                """
        }
        let ruleItems = report.rules.map { rule -> HTML in "<li><code>\(rule)</code></li>" }
        let summary: HTML =
            report.microservices.isEmpty
            ? .empty
            : """
            <details class="summary" open><summary>The spec declares \(report.microservices.count) μsrvs, \(report.rules.count) datapath rules</summary>
            <table id="draft-microservices"><thead><tr><th>μsrv</th><th>Kind</th><th>Labels</th><th>Handlers</th></tr></thead><tbody>\(microserviceRows)</tbody></table>
            <ul class="rules">\(ruleItems)</ul></details>
            """
        return layout(
            "Edit \(draft.name)", frame: frame,
            """
            \(state)
            <ul id="problems" class="problems">\(problems)</ul>
            \(summary)
            <form method="post" action="/cnfs/edit/\(draft.name)" id="editor" data-cnf="\(draft.name)">\(csrfField(frame.csrf))
            <fieldset class="file"><legend>cnf.yaml: μsrvs, handlers and datapath rules</legend>
            <textarea name="spec" id="spec" rows="\(specRows)" wrap="off" spellcheck="false"\(disabled)>\(draft.spec)</textarea></fieldset>
            \(files)
            \(actions)
            <script src="/static/portal.js"></script>
            """)
    }

    static func deployment(frame: Frame, _ summary: DeploymentSummary) -> HTML {
        let steps = summary.steps.map { step -> HTML in "<li>\(step)</li>" }
        let outcome: HTML
        if let result = summary.outcome {
            outcome = outcomeText(result, cnf: summary.cnf, node: summary.node)
        } else {
            outcome = "<p id=\"outcome\" class=\"pending\">Working…</p>"
        }
        let what: HTML = summary.update ? "Update" : "Deploy"
        return layout(
            "\(what) \(summary.cnf) on \(summary.node)", frame: frame,
            """
            <ol id="progress" data-events="/api/v1/deployments/\(summary.id)/events" data-done="\(summary.outcome == nil ? "no" : "yes")">\(steps)</ol>
            \(outcome)
            <p><a href="/cnfs">Back to CNF Provisioning</a> · <a href="/cnfs/edit/\(summary.cnf)">the editor</a></p>
            <script src="/static/portal.js"></script>
            """)
    }

    static func outcomeText(_ outcome: DeploymentOutcome, cnf: String, node: String) -> HTML {
        if outcome.ok {
            return "<p id=\"outcome\" class=\"flash\">\(cnf) version \(outcome.version) is running on \(node).</p>"
        }
        let rolled: HTML = outcome.rolledBack ? "Rolled back: version \(outcome.version) keeps running. " : ""
        return "<p id=\"outcome\" class=\"error\">\(rolled)\(outcome.error ?? "failed")</p>"
    }
}

extension Pages {
    static func filters(
        frame: Frame, node: String, nodes: [String], text: String, check: RuleCheck, files: [String], captures: [String],
        report: DryRunReport?, note: String?, failure: String? = nil, rollouts: Result<FilterRollouts, CentralClientError>? = nil
    ) -> HTML {
        let problems = check.problems.map { problem -> HTML in
            "<li class=\"error\" data-line=\"\(problem.line)\">\(problem.description)</li>"
        }
        let state: HTML =
            check.ok
            ? "<p id=\"check-state\" class=\"flash\">Lint: ok (\(check.rules) rules).</p>"
            : "<p id=\"check-state\" class=\"error\">Lint: the file has errors; it cannot be activated.</p>"
        let noteText: HTML =
            failure.map { "<p class=\"error\" id=\"filters-note\" role=\"alert\">\($0)</p>" }
            ?? note.map { "<p class=\"flash\" id=\"filters-note\" role=\"status\">\($0)</p>" } ?? .empty
        let starts = files.map { name -> HTML in "<a href=\"/filters?node=\(node)&amp;from=\(name)\">\(name)</a>" }
        let nodeOptions = nodes.map { name -> HTML in
            let selected: HTML = name == node ? " selected" : ""
            return "<option\(selected)>\(name)</option>"
        }
        let captureOptions = captures.map { name -> HTML in "<option value=\"file:\(name)\">capture \(name)</option>" }
        let rows = max(12, min(50, text.split(separator: "\n", omittingEmptySubsequences: false).count + 2))
        let activate: HTML =
            frame.user?.role == .operator
            ? "<button type=\"submit\" name=\"action\" value=\"activate\" id=\"activate\">Activate on the collector</button>" : .empty
        let result: HTML = report.map {
            "<section><h2>Dry run on \($0.capture)</h2><pre id=\"dry-run\">\($0.report)</pre></section>"
        } ?? .empty
        return layout(
            "Filters", frame: frame,
            """
            <p>The rules in force on the collector of \(node); edit them, dry-run them over recent traffic, and activate them. \
            The collector checks the file again and keeps its old rules if it refuses it.</p>
            \(noteText)
            <p>Start from: \(starts.joined(separator: " · "))</p>
            \(state)
            <ul id="problems" class="problems">\(problems)</ul>
            <form method="post" action="/filters" id="rules-form">\(csrfField(frame.csrf))
            <label>Node <select name="node">\(nodeOptions)</select></label>
            <fieldset class="file"><legend>active.rules</legend>
            <textarea name="rules" id="rules" rows="\(rows)" wrap="off" spellcheck="false">\(text)</textarea></fieldset>
            <p><label class="inline-field">Dry run on <select name="capture" id="capture"><option value="central">central's recent sessions</option>\(captureOptions)</select></label>
            <button type="submit" name="action" value="dry-run" id="dry-run-button">Dry run</button> \(activate)</p>
            </form>
            \(result)
            \(rolloutSection(rollouts))
            <script src="/static/portal.js"></script>
            """)
    }

    /// Rule sets published for every collector (`edgetrail filters publish`) and each node's answer.
    static func rolloutSection(_ rollouts: Result<FilterRollouts, CentralClientError>?) -> HTML {
        guard let rollouts else { return .empty }
        let body: HTML
        switch rollouts {
        case .failure(let error):
            body = "<p class=\"error\">\(error.description)</p>"
        case .success(let found) where found.rollouts.isEmpty:
            body = "<p>None published yet: <code>edgetrail filters publish FILE… --name NAME --selector node=GLOB</code>.</p>"
        case .success(let found):
            let sections = found.rollouts.map { rollout -> HTML in
                    let rows = rollout.nodes.map { answer -> HTML in
                        let state: HTML =
                            answer.version != rollout.version
                            ? "<td class=\"warn\">has not answered version \(rollout.version) (last: \(answer.version) \(answer.outcome))</td>"
                            : answer.outcome == "applied" ? "<td>applied</td>"
                            : "<td class=\"error\">refused: \(answer.errors.joined(separator: "; "))</td>"
                        return "<tr><td>\(answer.node)</td><td>\(answer.cnf)</td><td>\(answer.version)</td>\(state)<td>\(clock(answer.atNs))</td></tr>"
                    }
                    return """
                        <h3>\(rollout.name) — version \(rollout.version), selector <code>\(rollout.selector)</code>, by \(rollout.author) at \(clock(rollout.publishedAtNs))</h3>
                        <table class="rollout" data-name="\(rollout.name)"><thead><tr><th>node</th><th>CNF</th><th>version</th><th>state</th><th>at</th></tr></thead>
                        <tbody>\(rows.isEmpty ? "<tr><td colspan=\"5\">no collector has answered yet</td></tr>" : rows.joined())</tbody></table>
                        """
            }
            body = sections.joined()
        }
        return "<section id=\"rollouts\"><h2>Published rule sets</h2>\(body)</section>"
    }
}
