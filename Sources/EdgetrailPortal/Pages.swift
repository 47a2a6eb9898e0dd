import EdgetrailCentralAPI
import Foundation

/// The portal's pages, rendered on the server. Every value from outside (span tags, handler
/// names, rule text, user names) goes through `HTML`'s escaping interpolation.
enum Pages {
    struct Frame {
        var user: PortalUser?
        var csrf: String
        var flash: String?
        var section: String
    }

    static let sections: [(id: String, title: String, path: String)] = [
        ("home", "Dashboard", "/"), ("cnfs", "CNF Provisioning", "/cnfs"), ("tracing", "CNF Tracing", "/tracing"),
        ("filters", "Filters", "/filters"), ("dashboards", "Dashboards", "/dashboards"),
        ("account", "My Account", "/account"),
    ]

    static func layout(_ title: String, frame: Frame, _ body: HTML) -> HTML {
        let nav: HTML
        if let user = frame.user {
            let links = sections.map { section -> HTML in
                let current: HTML = section.id == frame.section ? " aria-current=\"page\"" : ""
                return "<a href=\"\(section.path)\"\(current)>\(section.title)</a>"
            }
            nav = """
                <nav>\(links.joined(separator: " "))
                <span class="who">\(user.name) (\(user.role.rawValue))</span>
                <form method="post" action="/logout" class="inline">\(csrfField(frame.csrf))<button type="submit" id="logout">Log out</button></form>
                </nav>
                """
        } else {
            nav = .empty
        }
        let flash: HTML = frame.flash.map { "<p class=\"flash\" role=\"status\">\($0)</p>" } ?? .empty
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="csrf-token" content="\(frame.csrf)">
            <title>\(title) · Edgetrail</title>
            <link rel="stylesheet" href="/static/portal.css">
            </head><body>
            <header><a class="brand" href="/">Edgetrail</a>\(nav)</header>
            <main><h1>\(title)</h1>\(flash)\(body)</main>
            </body></html>
            """
    }

    static func csrfField(_ token: String) -> HTML {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(token)\">"
    }

    static func error(status: Int, message: String) -> HTML {
        layout(
            "Error \(status)", frame: Frame(user: nil, csrf: "", section: ""),
            "<p class=\"error\" role=\"alert\">\(message)</p><p><a href=\"/\">Back to the dashboard</a></p>")
    }

    // MARK: Login

    static func login(next: String, loginToken: String, message: String?) -> HTML {
        let alert: HTML = message.map { "<p class=\"error\" role=\"alert\">\($0)</p>" } ?? .empty
        return layout(
            "Log in", frame: Frame(user: nil, csrf: "", section: ""),
            """
            \(alert)
            <form method="post" action="/login" class="card narrow">
            <input type="hidden" name="login_token" value="\(loginToken)">
            <input type="hidden" name="next" value="\(next)">
            <label>User <input name="user" id="user" autocomplete="username" required autofocus></label>
            <label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
            <button type="submit" id="login">Log in</button>
            </form>
            """)
    }

    // MARK: Dashboard home

    static func home(frame: Frame, nodes: [NodeView], collector: CollectorFigures, centralProblem: String?) -> HTML {
        let nodeRows = nodes.map { node -> HTML in
            let cnfs = node.cnfs.map { cnf -> HTML in
                "<a href=\"/cnfs/\(node.name)/\(cnf.name)\">\(cnf.name)</a> <span class=\"state \(cnf.health)\">\(cnf.health)</span> (\(cnf.podsHealthy)/\(cnf.pods) pods)"
            }
            let datapath: HTML = node.datapath.map {
                "\($0.rules) rules · \($0.openFlows) open flows of \($0.flowTableSize) · \($0.packets) packets, \($0.drops) dropped · \($0.ringBufferLost) events lost"
            } ?? "not reachable"
            let agent: HTML = node.agent == "up" ? "<span class=\"state healthy\">up</span>" : "<span class=\"state down\">down</span> \(node.error ?? "")"
            return """
                <tr><td>\(node.name)</td><td>\(agent)</td><td>\(cnfs.isEmpty ? "none" : cnfs.joined(separator: "<br>"))</td><td>\(datapath)</td></tr>
                """
        }
        let collectorText: HTML =
            collector.reachable
            ? """
            <dl class="figures">
            <dt>records in</dt><dd id="records-in">\(collector.recordsIn, decimals: 0)</dd>
            <dt>records shipped</dt><dd id="records-out">\(collector.recordsShipped, decimals: 0)</dd>
            <dt>records dropped by filters</dt><dd>\(collector.recordsDropped, decimals: 0)</dd>
            <dt>spool bytes</dt><dd>\(collector.spoolBytes, decimals: 0)</dd>
            </dl>
            """ : "<p class=\"error\">\(collector.source)</p>"
        let central: HTML =
            centralProblem.map { "<p class=\"error\">\($0)</p>" } ?? "<p><span class=\"state healthy\">up</span> sessions are searchable under <a href=\"/tracing\">CNF Tracing</a></p>"
        return layout(
            "Dashboard", frame: frame,
            """
            <section><h2>Edge nodes</h2>
            <table id="nodes"><thead><tr><th>Node</th><th>Agent</th><th>CNFs</th><th>Datapath</th></tr></thead>
            <tbody>\(nodeRows)</tbody></table></section>
            <section><h2>Collector</h2>\(collectorText)</section>
            <section><h2>Central</h2>\(central)</section>
            """)
    }

    // MARK: CNF provisioning

    static func cnfs(frame: Frame, nodes: [NodeView], details: [CNFDetail], drafts: [CNFDraft]) -> HTML {
        var instances: [HTML] = []
        for node in nodes {
            for cnf in node.cnfs {
                let microservices = details.first { $0.cnf.name == cnf.name && $0.cnf.node == node.name }?.microservices.map(\.name) ?? []
                instances.append(
                    """
                    <tr><td><a href="/cnfs/\(node.name)/\(cnf.name)">\(cnf.name)</a></td><td>\(node.name)</td>
                    <td>\(microservices.joined(separator: ", "))</td><td>\(cnf.version)</td>
                    <td><span class="state \(cnf.health)">\(cnf.health)</span></td></tr>
                    """)
            }
        }
        let problems = nodes.compactMap { node -> HTML? in
            node.error.map { "<p class=\"error\">\(node.name): \($0)</p>" }
        }
        let tables = details.map { microservicesTable($0, frame: frame) }
        return layout(
            "CNF Provisioning", frame: frame,
            """
            \(problems)
            <section><h2>CNF instances</h2>
            <table id="cnf-instances"><thead><tr><th>CNF</th><th>Edge node</th><th>μsrvs</th><th>Version</th><th>Health</th></tr></thead>
            <tbody>\(instances.isEmpty ? "<tr><td colspan=\"5\">No CNF is deployed.</td></tr>" : instances.joined())</tbody></table>
            </section>
            \(tables)
            \(Pages.drafts(frame: frame, drafts))
            """)
    }

    static func cnf(frame: Frame, detail: CNFDetail) -> HTML {
        layout("CNF \(detail.cnf.name)", frame: frame, microservicesTable(detail, frame: frame))
    }

    static func microservicesTable(_ detail: CNFDetail, frame: Frame) -> HTML {
        let rows = detail.microservices.map { pod -> HTML in
            let restarts: HTML = pod.sidecarRestarts > 0 ? "\(pod.restarts) (sidecar \(pod.sidecarRestarts))" : "\(pod.restarts)"
            let message: HTML = pod.message.map { "<br><small>\($0)</small>" } ?? .empty
            return """
                <tr><td>\(pod.name)</td><td>\(pod.kind)</td><td>\(pod.interfaces.joined(separator: ", "))</td><td>\(pod.ip)</td>
                <td><span class="state \(pod.state)">\(pod.state)</span>\(message)</td><td>\(restarts)</td>
                <td>\(pod.handlers.joined(separator: ", "))</td></tr>
                """
        }
        let rules = detail.rules.map { rule -> HTML in "<li><code>\(rule)</code></li>" }
        let lastError: HTML = detail.cnf.lastError.map { "<p class=\"error\">Last update rolled back: \($0)</p>" } ?? .empty
        let delete: HTML =
            frame.user?.role == .operator
            ? """
            <form method="post" action="/cnfs/\(detail.cnf.node)/\(detail.cnf.name)/delete" class="inline danger">
            \(csrfField(frame.csrf))<button type="submit" class="delete-cnf">Del CNF</button></form>
            """ : .empty
        return """
            <section class="cnf" id="cnf-\(detail.cnf.name)"><h2>\(detail.cnf.name) on \(detail.cnf.node), version \(detail.cnf.version) \(delete)</h2>
            \(lastError)
            <table class="microservices"><thead><tr><th>μsrv</th><th>Kind</th><th>Interfaces</th><th>IP address</th><th>State</th><th>Restarts</th><th>Handlers</th></tr></thead>
            <tbody>\(rows)</tbody></table>
            <h3>Datapath rules (rule set \(detail.datapathVersion))</h3><ul class="rules">\(rules)</ul>
            </section>
            """
    }

    // MARK: Tracing

    static func tracing(frame: Frame, form: SessionSearch, sessions: [CookieSummary]?, problem: String?) -> HTML {
        let rows = (sessions ?? []).map { session -> HTML in
            let duration = Waterfall.duration(session.lastNs >= session.firstNs ? session.lastNs - session.firstNs : 0)
            let error: HTML = session.error ? "<span class=\"state error\">error</span>" : .empty
            return """
                <tr><td><a class="cookie" href="/tracing/sessions/\(session.cookie)">\(session.cookie)</a></td><td>\(session.cnf)</td>
                <td>\(session.node)</td><td>\(clock(session.firstNs))</td><td>\(duration)</td><td>\(session.records)</td><td>\(error)</td></tr>
                """
        }
        let alert: HTML = problem.map { "<p class=\"error\" role=\"alert\">\($0)</p>" } ?? .empty
        let checked: HTML = form.errorsOnly ? " checked" : ""
        let graphLink: HTML =
            form.cnf.isEmpty
            ? " · <a href=\"/tracing/live\">live trace log</a>"
            : " · <a href=\"/tracing/graph?cnf=\(form.cnf)\">service graph of \(form.cnf)</a> · <a href=\"/tracing/live?cnf=\(form.cnf)\">live trace log of \(form.cnf)</a>"
        return layout(
            "CNF Tracing", frame: frame,
            """
            <form method="get" action="/tracing" class="card search">
            <label>CNF <input name="cnf" value="\(form.cnf)"></label>
            <label>μsrv <input name="service" value="\(form.service)"></label>
            <label>From <input name="since" type="datetime-local" step="1" value="\(form.since)"></label>
            <label>To <input name="until" type="datetime-local" step="1" value="\(form.until)"></label>
            <label><input type="checkbox" name="error" value="true"\(checked)> errors only</label>
            <button type="submit" id="search">Search</button>
            </form>
            \(alert)
            <p>\(sessions.map { "\($0.count) sessions, newest first" } ?? "")\(graphLink)</p>
            <table id="sessions"><thead><tr><th>Cookie</th><th>CNF</th><th>Node</th><th>Started (UTC)</th><th>Duration</th><th>Records</th><th></th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """)
    }

    static func live(frame: Frame, cnf: String) -> HTML {
        layout(
            "Live trace log", frame: frame,
            """
            <form method="get" action="/tracing/live" class="card" id="live-form">
            <label>CNF <input name="cnf" id="live-cnf" value="\(cnf)" placeholder="all CNFs"></label>
            <button type="button" id="start-trace">Start Trace</button>
            <button type="button" id="stop-trace" disabled>Stop Trace</button>
            <button type="button" id="clear-trace">Clear Trace</button>
            <span id="live-state">stopped</span>
            </form>
            <p id="live-counts">0 sessions shown</p>
            <table id="live-log"><thead><tr><th>Started (UTC)</th><th>Cookie</th><th>CNF</th><th>Node</th><th>μsrvs</th><th>Spans</th><th>Flows</th><th>Snapshots</th><th></th></tr></thead>
            <tbody></tbody></table>
            <noscript><p class="error">The live log needs JavaScript; search sessions under <a href="/tracing">CNF Tracing</a> instead.</p></noscript>
            <script src="/static/portal.js"></script>
            """)
    }

    static func waterfall(frame: Frame, _ waterfall: Waterfall) -> HTML {
        let ticks = (0...4).map { step -> HTML in
            let at = Double(waterfall.durationNs) * Double(step) / 4
            return "<span style=\"left:\(Double(step) * 25, decimals: 1)%\">\(Waterfall.duration(UInt64(at)))</span>"
        }
        var rows: [HTML] = []
        rows.reserveCapacity(waterfall.rows.count)
        for (index, row) in waterfall.rows.enumerated() {
            let fields = row.fields.map { field -> HTML in "<dt>\(field.0)</dt><dd>\(field.1)</dd>" }
            let bar: HTML =
                row.kind == .snapshot
                ? "<i class=\"mark\" style=\"left:\(row.left, decimals: 3)%\"></i>"
                : "<i class=\"bar\" style=\"left:\(row.left, decimals: 3)%;width:\(max(row.width, 0.15), decimals: 3)%\"></i>"
            let took: HTML = row.kind == .snapshot ? "" : "\(Waterfall.duration(row.endNs - row.startNs))"
            rows.append(
                """
                <details class="row \(row.kind.rawValue) \(row.status)" id="item-\(index)"><summary>\
                <span class="label" style="padding-left:\(row.depth * 14)px">\(row.label) <small>\(row.detail)</small></span>\
                <span class="track">\(bar)</span><span class="took">\(took)</span></summary>\
                <dl>\(fields)</dl></details>
                """)
        }
        let counts = Dictionary(grouping: waterfall.rows, by: \.kind).mapValues(\.count)
        return layout(
            "Session \(waterfall.cookie)", frame: frame,
            """
            <p>CNF \(waterfall.cnf) · started \(clock(waterfall.originNs)) UTC · \(Waterfall.duration(waterfall.durationNs)) ·
            \(counts[.span] ?? 0) spans, \(counts[.flow] ?? 0) flows, \(counts[.snapshot] ?? 0) snapshots ·
            <a href="/api/v1/sessions/\(waterfall.cookie)">JSON</a></p>
            <div class="waterfall" id="waterfall"><div class="axis"><span class="label"></span><span class="track">\(ticks)</span><span class="took"></span></div>
            \(rows)</div>
            """)
    }

    static func graph(frame: Frame, cnf: String, graph: ServiceGraph) -> HTML {
        let rows = graph.edges.map { edge -> HTML in
            "<tr><td>\(edge.from)</td><td>\(edge.to)</td><td>\(edge.calls)</td><td>\(edge.errorRate * 100, decimals: 1)%</td><td>\(Waterfall.duration(edge.p99Ns))</td></tr>"
        }
        return layout(
            "Service graph of \(cnf)", frame: frame,
            """
            <p>From the spans of the \(graph.sessions) most recent sessions of \(cnf).</p>
            \(ServiceGraphSVG.render(graph))
            <table id="edges"><thead><tr><th>Caller</th><th>Callee</th><th>Calls</th><th>Errors</th><th>p99</th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """)
    }

    // MARK: Dashboards

    static func dashboards(frame: Frame, range: String, scrapes: Int, source: String, sections: [HTML]) -> HTML {
        let ranges = ["5m", "15m", "1h"].map { name -> HTML in
            name == range ? "<strong>last \(name)</strong>" : "<a href=\"/dashboards?range=\(name)\">last \(name)</a>"
        }
        return layout(
            "Dashboards", frame: frame,
            """
            <p>The panels of <code>dashboards/*.json</code> (importable into Grafana), drawn by the portal from its own scrapes of \
            \(source) every 5 s (\(scrapes) kept, an hour at most). \(ranges.joined(separator: " · ")) · <a href="/dashboards?range=\(range)">refresh</a></p>
            \(sections)
            """)
    }

    // MARK: Account

    static func account(frame: Frame, user: PortalUser, tokens: [APIToken], newToken: String?, users: [PortalUser]?) -> HTML {
        let tokenRows = tokens.map { token -> HTML in
            let used: HTML = token.lastUsedAt.map { "\(iso($0))" } ?? "never"
            return """
                <tr><td>\(token.label)</td><td>\(iso(token.createdAt))</td><td>\(used)</td><td>
                <form method="post" action="/account/tokens/\(token.id)/revoke" class="inline">\(csrfField(frame.csrf))<button type="submit">Revoke</button></form></td></tr>
                """
        }
        let shown: HTML = newToken.map {
            "<p class=\"flash\">Your new token (shown once; keep it secret): <code id=\"new-token\">\($0)</code></p>"
        } ?? .empty
        var userSection = HTML.empty
        if let users {
            let rows = users.map { other -> HTML in
                let remove: HTML =
                    other.name == user.name ? "" : """
                    <form method="post" action="/account/users/\(other.name)/delete" class="inline">\(csrfField(frame.csrf))<button type="submit">Remove</button></form>
                    """
                return "<tr><td>\(other.name)</td><td>\(other.role.rawValue)</td><td>\(remove)</td></tr>"
            }
            userSection = """
                <section><h2>Users</h2>
                <table id="users"><thead><tr><th>User</th><th>Role</th><th></th></tr></thead><tbody>\(rows)</tbody></table>
                <form method="post" action="/account/users" class="card">\(csrfField(frame.csrf))
                <label>Name <input name="name" required></label>
                <label>Role <select name="role"><option value="viewer">viewer</option><option value="operator">operator</option></select></label>
                <label>Password <input name="password" type="password" autocomplete="new-password" minlength="12" required></label>
                <button type="submit" id="add-user">Add user</button></form></section>
                """
        }
        return layout(
            "My Account", frame: frame,
            """
            <p>Signed in as <strong>\(user.name)</strong>, \(user.role.rawValue).</p>
            <section><h2>Change password</h2>
            <form method="post" action="/account/password" class="card narrow">\(csrfField(frame.csrf))
            <label>Current password <input name="current" type="password" autocomplete="current-password" required></label>
            <label>New password <input name="new" type="password" autocomplete="new-password" minlength="12" required></label>
            <button type="submit" id="change-password">Change password</button></form></section>
            <section><h2>API tokens</h2>
            <p>API clients send <code>Authorization: Bearer TOKEN</code> to <code>/api/v1</code> (described at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>); a token acts as you, with your role.</p>
            \(shown)
            <table id="tokens"><thead><tr><th>Label</th><th>Created</th><th>Last used</th><th></th></tr></thead><tbody>\(tokenRows)</tbody></table>
            <form method="post" action="/account/tokens" class="card">\(csrfField(frame.csrf))
            <label>Label <input name="label" placeholder="what uses it" required></label>
            <button type="submit" id="create-token">Create token</button></form></section>
            \(userSection)
            """)
    }

    // MARK: Formatting

    static func clock(_ ns: UInt64) -> String {
        guard ns > 0 else { return "-" }
        let date = Date(timeIntervalSince1970: Double(ns) / 1e9)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        return formatter.string(from: date)
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: date)
    }
}

/// The tracing page's search, as the form sends it.
struct SessionSearch: Sendable {
    var cnf = ""
    var service = ""
    /// `datetime-local` values, read as UTC.
    var since = ""
    var until = ""
    var errorsOnly = false

    init(parameters: [String: String]) {
        cnf = parameters["cnf"]?.trimmingCharacters(in: .whitespaces) ?? ""
        service = parameters["service"]?.trimmingCharacters(in: .whitespaces) ?? ""
        since = parameters["since"] ?? ""
        until = parameters["until"] ?? ""
        errorsOnly = parameters["error"] == "true"
    }

    /// The query for central; a time that is not a date is refused with what to write.
    func query(limit: Int = 200) throws(PortalFailure) -> CookieQuery {
        var query = CookieQuery()
        query.cnf = cnf.isEmpty ? nil : cnf
        query.service = service.isEmpty ? nil : service
        query.errorOnly = errorsOnly
        query.limit = limit
        query.sinceNs = try Self.nanoseconds(since, field: "From")
        query.untilNs = try Self.nanoseconds(until, field: "To")
        return query
    }

    static func nanoseconds(_ text: String, field: String) throws(PortalFailure) -> UInt64? {
        guard !text.isEmpty else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return UInt64(max(0, date.timeIntervalSince1970) * 1e9) }
        }
        throw PortalFailure(status: 400, "\(field): '\(text)' is not a time; write it as 2026-12-04T17:30:00 (UTC)")
    }
}
