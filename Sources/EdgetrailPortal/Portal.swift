import EdgetrailCentralAPI
import EdgetrailCore
import EdgetrailRuntime
import Foundation
import Hummingbird
import HummingbirdAuth
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The operator portal: pages for people, `/api/v1` for programs, both over the same backend
/// calls and the same role and CSRF checks (`PortalRoutes`).
public final class Portal: Sendable {
    public let configuration: PortalConfiguration
    public let store: PortalStore
    public let backend: PortalBackend
    private let throttle: Mutex<LoginThrottle>
    let deployments = Deployments()
    /// The node's metrics over the last hour, for the Dashboards page.
    public let history = MetricsHistory()
    let logger: Logger
    /// Sessions live in the portal's file: a restarted portal keeps everyone signed in.
    private let sessions: SQLiteSessionDriver
    static let sessionCookie = "edgetrail_session"
    static let loginCookie = "edgetrail_login"

    /// Opens (or creates) the portal's file. When it has no users yet, `admin` is created and its
    /// password returned, for the caller to print once.
    public init(configuration: PortalConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        store = try PortalStore(
            path: configuration.dataDirectory + "/portal.sqlite", hasher: PasswordHasher(rounds: configuration.passwordRounds))
        backend = PortalBackend(configuration: configuration)
        sessions = SQLiteSessionDriver(store: store)
        throttle = Mutex(LoginThrottle(limits: configuration.loginLimits))
    }

    /// Creates `admin` if there are no users; the password it got, or nil.
    public func createFirstAdmin() throws -> String? {
        try store.createFirstAdmin(password: configuration.adminPassword)
    }

    // MARK: Routes

    /// Every route the portal serves, with who may use it.
    public func routes() -> (router: Router<PortalContext>, routes: [RouteInfo]) {
        let router = Router(context: PortalContext.self)
        router.add(middleware: SecurityHeadersMiddleware())
        router.add(
            middleware: SessionMiddleware(
                storage: sessions,
                configuration: .init(
                    sessionCookieParameters: .init(name: Self.sessionCookie, path: "/", sameSite: .strict),
                    defaultSessionExpiration: configuration.sessionLifetime)))
        router.add(middleware: PortalAuthenticator(store: store))
        let routes = PortalRoutes(router: router)
        addStatic(router)
        addLogin(routes)
        addPages(routes)
        addProvisioning(routes)
        addFilters(routes)
        addDashboards(routes)
        addAPI(routes)
        routes.note(RouteInfo(method: "GET", path: "/api/v1/openapi.json", summary: "This document.", need: .anyone, api: true))
        let list = routes.routes
        router.get("/api/v1/openapi.json") { _, _ in PortalRoutes.json(200, OpenAPIDocument.json(list)) }
        return (router, list)
    }

    func frame(_ context: PortalContext, _ section: String) -> Pages.Frame {
        let session = context.sessions.session
        return Pages.Frame(user: context.identity, csrf: session?.csrf ?? "", flash: session?.flash, section: section)
    }

    /// Shows a page, consuming the session's flash message.
    func page(_ context: PortalContext, _ html: HTML, status: Int = 200) -> Response {
        if context.sessions.session?.flash != nil {
            context.sessions.withLockedSession { $0?.flash = nil }
        }
        return PortalRoutes.html(status, html)
    }

    /// After a form: back to `location` with a message.
    func done(_ context: PortalContext, _ message: String, to location: String) -> Response {
        context.sessions.withLockedSession { $0?.flash = message }
        return PortalRoutes.redirect(location)
    }

    private func addStatic(_ router: Router<PortalContext>) {
        router.get("/static/portal.css") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "max-age=300"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: PortalStyle.css)))
        }
        router.get("/static/portal.js") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/javascript; charset=utf-8", .cacheControl: "max-age=300"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: PortalScript.javascript)))
        }
        router.get("/healthz") { _, _ in "ok\n" }
    }

    // MARK: Login and logout

    private func addLogin(_ routes: PortalRoutes) {
        let router = routes.router
        // The login form carries a token that must match a cookie set with it (double submit), so
        // another site cannot sign a browser in to an account of its choosing.
        router.get("/login") { request, context in
            if context.identity != nil { return PortalRoutes.redirect("/") }
            let token = Secrets.randomHex(bytes: 16)
            let next = Self.localPath(request.uri.queryParameters["next"].map(String.init))
            var response = PortalRoutes.html(200, Pages.login(next: next, loginToken: token, message: nil))
            response.setCookie(Hummingbird.Cookie(name: Self.loginCookie, value: token, path: "/login", httpOnly: true, sameSite: .strict))
            return response
        }
        router.post("/login") { [self] request, context in
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            let form = Submission.form(String(buffer: body))
            let user = form["user"]?.trimmingCharacters(in: .whitespaces) ?? ""
            let password = form["password"] ?? ""
            let next = Self.localPath(form["next"])
            let expected = request.cookies[Self.loginCookie]?.value ?? ""
            let again = { (status: Int, message: String) -> Response in
                let token = Secrets.randomHex(bytes: 16)
                var response = PortalRoutes.html(status, Pages.login(next: next, loginToken: token, message: message))
                response.setCookie(Hummingbird.Cookie(name: Self.loginCookie, value: token, path: "/login", httpOnly: true, sameSite: .strict))
                return response
            }
            guard !expected.isEmpty, Secrets.constantTimeEqual(form["login_token"] ?? "", String(expected)) else {
                return again(403, "The login form expired; log in again.")
            }
            let address = context.remoteAddress
            let now = Date().timeIntervalSince1970
            if let refusal = throttle.withLock({ $0.refusal(user: user, address: address, now: now) }) {
                return again(429, Self.lockedMessage(refusal, now: now))
            }
            let store = self.store
            let found = try await Blocking.run { try store.authenticate(name: user, password: password) }
            guard let found else {
                let lock = throttle.withLock { $0.failed(user: user, address: address, now: now) }
                logger.notice("failed login", metadata: ["user": "\(user)", "address": "\(address)"])
                return again(lock == nil ? 401 : 429, lock.map { Self.lockedMessage($0, now: now) } ?? "The user name or password is not right.")
            }
            throttle.withLock { $0.succeeded(user: user) }
            // A new session id at login: a session id planted before login is worth nothing.
            context.sessions.createSession(PortalSession(user: found.name, csrf: Secrets.randomHex(bytes: 32)))
            var response = PortalRoutes.redirect(next)
            response.setCookie(Hummingbird.Cookie(name: Self.loginCookie, value: "", expires: Date(timeIntervalSince1970: 0), path: "/login"))
            return response
        }
        routes.change(.post, "/logout", api: false, summary: "Ends the browser session.", need: .signedIn) { _, context, _, _ in
            context.sessions.clearSession()
            return PortalRoutes.redirect("/login")
        }
    }

    static func lockedMessage(_ refusal: LoginThrottle.Refusal, now: Double) -> String {
        let minutes = max(1, Int(((refusal.until - now) / 60).rounded(.up)))
        switch refusal {
        case .userLocked: return "Too many failed logins for this user; try again in \(minutes) min."
        case .addressLocked: return "Too many failed logins from your address; try again in \(minutes) min."
        }
    }

    /// A redirect target from a form: only a path on this portal.
    static func localPath(_ text: String?) -> String {
        guard let text, text.hasPrefix("/"), !text.hasPrefix("//"), !text.contains("\\"), !text.hasPrefix("/login") else { return "/" }
        return text
    }

    // MARK: Pages

    private func addPages(_ routes: PortalRoutes) {
        let backend = self.backend
        let store = self.store
        routes.view("/", api: false, summary: "Dashboard home") { [self] _, context, _ in
            async let nodes = backend.nodes()
            async let collector = backend.collector()
            async let central = backend.centralHealth()
            return page(context, Pages.home(frame: frame(context, "home"), nodes: await nodes, collector: await collector, centralProblem: await central))
        }
        routes.view("/cnfs", api: false, summary: "CNF instances and their μsrvs") { [self] _, context, _ in
            let nodes = await backend.nodes()
            var details: [CNFDetail] = []
            for node in nodes {
                for cnf in node.cnfs {
                    if let detail = try? await backend.cnf(node: node.name, name: cnf.name) { details.append(detail) }
                }
            }
            let drafts = try await Blocking.run { try store.drafts() }
            return page(context, Pages.cnfs(frame: frame(context, "cnfs"), nodes: nodes, details: details, drafts: drafts))
        }
        routes.view("/cnfs/:node/:name", api: false, summary: "One CNF") { [self] _, context, _ in
            let detail = try await backend.cnf(node: try context.parameters.require("node"), name: try context.parameters.require("name"))
            return page(context, Pages.cnf(frame: frame(context, "cnfs"), detail: detail))
        }
        routes.change(.post, "/cnfs/:node/:name/delete", api: false, summary: "Del CNF", need: .operator) { [self] _, context, _, _ in
            let node = try context.parameters.require("node")
            let name = try context.parameters.require("name")
            let removed = try await backend.deleteCNF(node: node, name: name)
            return done(context, "Deleted \(name) from \(node): \(removed.count) items removed.", to: "/cnfs")
        }
        routes.view("/tracing", api: false, summary: "Search sessions") { [self] request, context, _ in
            let search = SessionSearch(parameters: Self.query(request))
            var sessions: [CookieSummary]?
            var problem: String?
            do {
                sessions = try await backend.sessions(try search.query())
            } catch let failure as PortalFailure {
                problem = failure.description
            }
            return page(context, Pages.tracing(frame: frame(context, "tracing"), form: search, sessions: sessions, problem: problem))
        }
        routes.view("/tracing/live", api: false, summary: "A CNF's live trace log") { [self] request, context, _ in
            let cnf = Self.query(request)["cnf"] ?? ""
            return page(context, Pages.live(frame: frame(context, "tracing"), cnf: cnf))
        }
        routes.view("/tracing/sessions/:cookie", api: false, summary: "A session's waterfall") { [self] _, context, _ in
            let cookie = try Self.cookie(context)
            let timeline = try await backend.timeline(cookie)
            return page(context, Pages.waterfall(frame: frame(context, "tracing"), Waterfall(timeline)))
        }
        routes.view("/tracing/graph", api: false, summary: "A CNF's service graph") { [self] request, context, _ in
            let cnf = Self.query(request)["cnf"] ?? ""
            let graph = try await serviceGraph(cnf: cnf)
            return page(context, Pages.graph(frame: frame(context, "tracing"), cnf: cnf, graph: graph))
        }
        routes.view("/account", api: false, summary: "My Account") { [self] _, context, user in
            let user = user!
            let tokens = try await Blocking.run { try store.tokens(user: user.name) }
            let users = user.role == .operator ? try await Blocking.run { try store.users() } : nil
            let shown = context.sessions.session?.flash.flatMap { $0.hasPrefix("token:") ? String($0.dropFirst(6)) : nil }
            var frame = frame(context, "account")
            if shown != nil { frame.flash = "Token created." }
            return page(context, Pages.account(frame: frame, user: user, tokens: tokens, newToken: shown, users: users))
        }
        routes.change(.post, "/account/password", api: false, summary: "Change my password", need: .signedIn) { [self] _, context, user, form in
            let current = form.field("current") ?? ""
            let new = form.field("new") ?? ""
            try await Blocking.run { try store.changePassword(name: user.name, current: current, new: new) }
            return done(context, "Password changed.", to: "/account")
        }
        routes.change(.post, "/account/tokens", api: false, summary: "Create an API token", need: .signedIn) { [self] _, context, user, form in
            let label = form.field("label") ?? ""
            let created = try await Blocking.run { try store.createToken(user: user.name, label: label) }
            return done(context, "token:" + created.token, to: "/account")
        }
        routes.change(.post, "/account/tokens/:id/revoke", api: false, summary: "Revoke an API token", need: .signedIn) { [self] _, context, user, _ in
            let id = try context.parameters.require("id", as: Int64.self)
            try await Blocking.run { try store.revokeToken(id: id, user: user.name) }
            return done(context, "Token revoked.", to: "/account")
        }
        routes.change(.post, "/account/users", api: false, summary: "Add a user", need: .operator) { [self] _, context, _, form in
            let name = form.field("name") ?? ""
            let role = try Self.role(form.field("role"))
            let password = form.field("password") ?? ""
            try await Blocking.run { try store.addUser(name: name, role: role, password: password) }
            return done(context, "Added \(name) (\(role.rawValue)).", to: "/account")
        }
        routes.change(.post, "/account/users/:name/delete", api: false, summary: "Remove a user", need: .operator) { [self] _, context, user, _ in
            let name = try context.parameters.require("name")
            guard name.lowercased() != user.name.lowercased() else { throw PortalFailure(status: 400, "you cannot remove yourself") }
            try await Blocking.run { try store.deleteUser(name: name) }
            return done(context, "Removed \(name).", to: "/account")
        }
    }

    // MARK: API

    private func addAPI(_ routes: PortalRoutes) {
        let backend = self.backend
        let store = self.store
        routes.view("/api/v1/me", api: true, summary: "Who the token or session belongs to.") { _, _, user in
            PortalRoutes.json(200, user!)
        }
        routes.view("/api/v1/nodes", api: true, summary: "Edge nodes, their agents, CNFs and datapath figures.") { _, _, _ in
            PortalRoutes.json(200, ["nodes": await backend.nodes()])
        }
        routes.view("/api/v1/collector", api: true, summary: "The node collector's key figures.") { _, _, _ in
            PortalRoutes.json(200, await backend.collector())
        }
        routes.view("/api/v1/nodes/:node/cnfs/:name", api: true, summary: "A CNF's status: its μsrvs and datapath rules.") { _, context, _ in
            PortalRoutes.json(200, try await backend.cnf(node: try context.parameters.require("node"), name: try context.parameters.require("name")))
        }
        routes.change(.delete, "/api/v1/nodes/:node/cnfs/:name", api: true, summary: "Removes a CNF from its node.", need: .operator) { _, context, _, _ in
            let removed = try await backend.deleteCNF(node: try context.parameters.require("node"), name: try context.parameters.require("name"))
            return PortalRoutes.json(200, ["removed": removed])
        }
        routes.view("/api/v1/sessions", api: true, summary: "Sessions matching cnf, service, since, until (UTC), error=true; newest first.") {
            request, _, _ in
            let search = SessionSearch(parameters: Self.query(request))
            return PortalRoutes.json(200, ["sessions": try await backend.sessions(try search.query())])
        }
        routes.view("/api/v1/live", api: true, summary: "Sessions as central stores them (?cnf=NAME), as server-sent events: 'sessions' ({sessions, lost}), batched; 'problem' when central cannot be followed.") {
            request, _, _ in
            let cnf = Self.query(request)["cnf"]
            let events = backend.central.live(cnf: cnf)
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store"],
                body: ResponseBody { writer in
                    try await writer.write(ByteBuffer(string: ": following central\n\n"))
                    do {
                        // Ends when the portal shuts down: a SIGTERM never waits on a browser.
                        for try await event in events.cancelOnGracefulShutdown() {
                            try await writer.write(ByteBuffer(string: ServerSentEvents.Event(name: "sessions", json: event).text))
                        }
                    } catch let error as CentralClientError {
                        try await writer.write(ByteBuffer(string: ServerSentEvents.Event(name: "problem", data: error.message).text))
                    }
                    try await writer.finish(nil)
                })
        }
        routes.view("/api/v1/sessions/:cookie", api: true, summary: "A session's reconstruction (central's timeline).") { _, context, _ in
            PortalRoutes.json(200, try await backend.timeline(try Self.cookie(context)))
        }
        routes.view("/api/v1/graph", api: true, summary: "A CNF's service graph from its recent sessions (?cnf=NAME).") { [self] request, _, _ in
            let graph = try await serviceGraph(cnf: Self.query(request)["cnf"] ?? "")
            return PortalRoutes.json(200, graph)
        }
        routes.change(.post, "/api/v1/account/password", api: true, summary: "Changes my password ({current, new}).", need: .signedIn) { _, _, user, body in
            struct Change: Decodable { var current: String; var new: String }
            let change = try body.decode(Change.self)
            try await Blocking.run { try store.changePassword(name: user.name, current: change.current, new: change.new) }
            return PortalRoutes.json(200, ["changed": true])
        }
        routes.view("/api/v1/tokens", api: true, summary: "My API tokens (never the tokens themselves).") { _, _, user in
            PortalRoutes.json(200, ["tokens": try await Blocking.run { try store.tokens(user: user!.name) }])
        }
        routes.change(.post, "/api/v1/tokens", api: true, summary: "Creates an API token ({label}); the token is in this answer only.", need: .signedIn) {
            _, _, user, body in
            struct Create: Decodable { var label: String }
            let label = try body.decode(Create.self).label
            let created = try await Blocking.run { try store.createToken(user: user.name, label: label) }
            struct Created: Encodable { var token: String; var id: Int64 }
            return PortalRoutes.json(201, Created(token: created.token, id: created.id))
        }
        routes.change(.delete, "/api/v1/tokens/:id", api: true, summary: "Revokes one of my API tokens.", need: .signedIn) { _, context, user, _ in
            let id = try context.parameters.require("id", as: Int64.self)
            try await Blocking.run { try store.revokeToken(id: id, user: user.name) }
            return PortalRoutes.json(200, ["revoked": id])
        }
        routes.view("/api/v1/users", api: true, summary: "The portal's users and their roles.", need: .operator) { _, _, _ in
            PortalRoutes.json(200, ["users": try await Blocking.run { try store.users() }])
        }
        routes.change(.post, "/api/v1/users", api: true, summary: "Adds a user ({name, role, password}).", need: .operator) { _, _, _, body in
            struct Add: Decodable { var name: String; var role: String; var password: String }
            let add = try body.decode(Add.self)
            let role = try Self.role(add.role)
            try await Blocking.run { try store.addUser(name: add.name, role: role, password: add.password) }
            return PortalRoutes.json(201, PortalUser(name: add.name, role: role))
        }
        routes.change(.delete, "/api/v1/users/:name", api: true, summary: "Removes a user.", need: .operator) { _, context, user, _ in
            let name = try context.parameters.require("name")
            guard name.lowercased() != user.name.lowercased() else { throw PortalFailure(status: 400, "you cannot remove yourself") }
            try await Blocking.run { try store.deleteUser(name: name) }
            return PortalRoutes.json(200, ["removed": name])
        }
    }

    /// The service graph of a CNF from its most recent sessions (at most 200), computed by central.
    func serviceGraph(cnf: String) async throws(PortalFailure) -> ServiceGraph {
        guard !cnf.isEmpty else { throw PortalFailure(status: 400, "name the CNF: ?cnf=NAME") }
        var query = CookieQuery()
        query.cnf = cnf
        query.limit = 200
        do {
            return try await backend.central.graph(query)
        } catch {
            throw PortalBackend.failure(error)
        }
    }

    func addDashboards(_ routes: PortalRoutes) {
        routes.view("/dashboards", api: false, summary: "Dashboards") { [self] request, context, _ in
            let range = Self.range(Self.query(request)["range"])
            let now = Date().timeIntervalSince1970
            let history = self.history.all
            let files = DashboardFile.load(configuration.dashboardsDirectory)
            var sections: [HTML] = []
            for file in files {
                guard let dashboard = file.dashboard else {
                    sections.append("<p class=\"error\">\(file.problem ?? file.name)</p>")
                    continue
                }
                let panels = dashboard.panels.filter { $0.type == "timeseries" }.map {
                    PanelChart($0, history: history, from: now - range.seconds, to: now).render()
                }
                sections.append(
                    """
                    <section class="dashboard"><h2>\(dashboard.title) <small>(\(file.name))</small></h2>
                    <div class="panels">\(panels)</div></section>
                    """)
            }
            return page(context, Pages.dashboards(frame: frame(context, "dashboards"), range: range.name, scrapes: history.count,
                                                  source: configuration.collectorMetrics, sections: sections))
        }
        routes.view("/api/v1/dashboards", api: true, summary: "The dashboards' panels as series over ?range=5m|15m|1h (from the portal's scrapes).") {
            [self] request, _, _ in
            let range = Self.range(Self.query(request)["range"])
            let now = Date().timeIntervalSince1970
            let history = self.history.all
            struct Line: Encodable { var name: String; var points: [[Double]] }
            struct Panel: Encodable { var title: String; var unit: String; var series: [Line]; var problem: String? }
            struct Board: Encodable { var file: String; var title: String; var panels: [Panel] }
            let boards = DashboardFile.load(configuration.dashboardsDirectory).compactMap { file -> Board? in
                guard let dashboard = file.dashboard else { return nil }
                return Board(
                    file: file.name, title: dashboard.title,
                    panels: dashboard.panels.map { panel in
                        let chart = PanelChart(panel, history: history, from: now - range.seconds, to: now)
                        return Panel(
                            title: chart.title, unit: chart.unit,
                            series: chart.series.map { Line(name: $0.name, points: $0.points.map { [$0.0, $0.1] }) }, problem: chart.problem)
                    })
            }
            return PortalRoutes.json(200, ["dashboards": boards])
        }
    }

    /// The waterfall page of a timeline as the portal renders it (for the benchmark).
    public static func renderWaterfallPage(_ timeline: CookieTimeline, user: PortalUser) -> String {
        Pages.waterfall(frame: Pages.Frame(user: user, csrf: String(repeating: "0", count: 64), section: "tracing"), Waterfall(timeline)).text
    }

    static func range(_ text: String?) -> (name: String, seconds: Double) {
        switch text {
        case "5m": ("5m", 300)
        case "1h": ("1h", 3600)
        default: ("15m", 900)
        }
    }

    static func query(_ request: Request) -> [String: String] {
        var parameters: [String: String] = [:]
        for (name, value) in request.uri.queryParameters { parameters[String(name)] = String(value) }
        return parameters
    }

    static func cookie(_ context: PortalContext) throws -> EdgetrailCore.Cookie {
        let text = try context.parameters.require("cookie")
        guard let cookie = EdgetrailCore.Cookie(hex: text) else {
            throw PortalFailure(status: 400, "'\(text)' is not a cookie; write it as 16 hex digits")
        }
        return cookie
    }

    static func role(_ text: String?) throws(PortalFailure) -> Role {
        guard let text, let role = Role(rawValue: text) else {
            throw PortalFailure(status: 400, "a role is 'operator' or 'viewer', not '\(text ?? "")'")
        }
        return role
    }

    // MARK: Running

    /// What runs while the portal serves: its HTTP server and the metrics scraper.
    public func makeServices(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> [any Service] {
        [
            makeApplication(onServerRunning: onServerRunning),
            MetricsScraper(url: configuration.collectorMetrics, history: history, interval: configuration.scrapeInterval),
        ]
    }

    /// The portal's HTTP server.
    public func makeApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some Service {
        var appLogger = logger
        appLogger.logLevel = .warning
        return Application(
            router: routes().router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "edgetrail-portal"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: appLogger)
    }
}
