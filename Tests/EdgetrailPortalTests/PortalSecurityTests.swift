import EdgetrailPortal
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Portal: signing in, roles and CSRF")
struct PortalSecurityTests {
    @Test("a page without a session sends the browser to log in; the API answers 401 and says how to sign in")
    func signInFirst() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let page = try await client.execute(uri: "/cnfs", method: .get)
            #expect(page.status == .seeOther)
            #expect(page.headers[.location] == "/login?next=%2Fcnfs")
            let api = try await client.execute(uri: "/api/v1/nodes", method: .get)
            #expect(api.status == .unauthorized)
            #expect(String(buffer: api.body).contains("Authorization: Bearer"))
            #expect(api.headers[.wwwAuthenticate] == "Bearer")
        }
    }

    @Test("logging in sets an HttpOnly, SameSite=Strict session cookie and shows who is signed in")
    func login() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (browser, response) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            #expect(response.status == .seeOther)
            #expect(response.headers[.location] == "/")
            let cookie = try #require(response.headers[values: .setCookie].first { $0.hasPrefix("edgetrail_session=") })
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("SameSite=Strict"))
            let home = try await browser.get(client, "/")
            #expect(home.status == .ok)
            let text = String(buffer: home.body)
            #expect(text.contains("admin (operator)"))
            #expect(home.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
            #expect(browser.csrf.count == 64)
        }
    }

    @Test("a wrong password is refused; the fifth failure locks the user, and the right password is then refused too")
    func lockout() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            for attempt in 1...5 {
                let (_, response) = try await Browser.login(client, user: "admin", password: "not-the-password")
                #expect(response.status == (attempt < 5 ? .unauthorized : .tooManyRequests))
                if attempt < 5 { #expect(String(buffer: response.body).contains("The user name or password is not right.")) }
            }
            let (_, locked) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            #expect(locked.status == .tooManyRequests)
            #expect(String(buffer: locked.body).contains("Too many failed logins for this user; try again in 15 min."))
            #expect(locked.headers[values: .setCookie].allSatisfy { !$0.hasPrefix("edgetrail_session=") })
        }
    }

    @Test("twenty failures from one address, each for another name, lock that address (over a real connection)")
    func addressLockout() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try fixture.portal.store.addUser(name: "vera", role: .viewer, password: "viewer-password-1")
        try await fixture.app().test(.live) { client in
            for attempt in 1...20 {
                let (_, response) = try await Browser.login(client, user: "nobody\(attempt)", password: "wrong-password")
                #expect(response.status == (attempt < 20 ? .unauthorized : .tooManyRequests))
            }
            // Another name, even with its right password: the address is locked.
            let (_, locked) = try await Browser.login(client, user: "vera", password: "viewer-password-1")
            #expect(locked.status == .tooManyRequests)
            #expect(String(buffer: locked.body).contains("Too many failed logins from your address; try again in 15 min."))
        }
    }

    @Test("a login posted without the login form's token (from another site) is refused")
    func loginCSRF() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let response = try await Browser().post(
                client, "/login", ["user": "admin", "password": PortalFixture.adminPassword, "login_token": "forged"], csrf: false)
            #expect(response.status == .forbidden)
            #expect(response.headers[values: .setCookie].allSatisfy { !$0.hasPrefix("edgetrail_session=") })
        }
    }

    /// A value for each path parameter, so every registered route can be called.
    static func concrete(_ path: String) -> String {
        path.replacingOccurrences(of: ":node", with: "edge-1").replacingOccurrences(of: ":name", with: "nobody")
            .replacingOccurrences(of: ":id", with: "1").replacingOccurrences(of: ":cookie", with: "00000000000000ab")
    }

    @Test("every route that changes something refuses without a session, without the CSRF token, and as a viewer when it needs an operator")
    func everyMutatingRoute() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        let routes = fixture.portal.routes().routes
        let mutating = routes.filter(\.mutating)
        // The list is what the portal registers; it must hold the changes a user can make.
        #expect(mutating.count >= 12)
        #expect(mutating.contains { $0.path == "/api/v1/nodes/:node/cnfs/:name" && $0.method == "DELETE" && $0.need == .operator })
        #expect(mutating.allSatisfy { $0.need != .anyone })
        try fixture.portal.store.addUser(name: "vera", role: .viewer, password: "viewer-password-1")
        try await fixture.app().test(.router) { client in
            let (viewer, _) = try await Browser.login(client, user: "vera", password: "viewer-password-1")
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            for route in mutating {
                let uri = Self.concrete(route.path)
                let method = HTTPRequest.Method(route.method)!
                let label = "\(route.method) \(route.path)"
                let anonymous = try await Browser().call(client, method, uri, csrf: false)
                if route.api {
                    #expect(anonymous.status == .unauthorized, "\(label) without a session")
                } else {
                    #expect(anonymous.status == .seeOther, "\(label) without a session")
                    #expect(anonymous.headers[.location]?.hasPrefix("/login") == true, "\(label) without a session")
                }
                let forged = try await admin.call(client, method, uri, csrf: false)
                #expect(forged.status == .forbidden, "\(label) without the CSRF token")
                #expect(String(buffer: forged.body).contains("CSRF token"), "\(label) without the CSRF token")
                var wrong = admin
                wrong.csrf = String(repeating: "0", count: 64)
                #expect(try await wrong.call(client, method, uri).status == .forbidden, "\(label) with a wrong CSRF token")
                if route.need == .operator {
                    let asViewer = try await viewer.call(client, method, uri)
                    #expect(asViewer.status == .forbidden, "\(label) as a viewer")
                    #expect(String(buffer: asViewer.body).contains("vera is a viewer; only an operator may do this"), "\(label) as a viewer")
                }
            }
            // A view that only operators may see.
            #expect(try await viewer.get(client, "/api/v1/users").status == .forbidden)
            #expect(try await admin.get(client, "/api/v1/users").status == .ok)
        }
    }

    @Test("an operator adds a viewer on My Account; the viewer sees pages but no delete buttons and cannot delete")
    func viewerCannotDelete() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let added = try await admin.post(client, "/account/users", ["name": "vic", "role": "viewer", "password": "viewer-password-2"])
            #expect(added.status == .seeOther)
            let account = String(buffer: try await admin.get(client, "/account").body)
            #expect(account.contains("Added vic (viewer)."))
            #expect(account.contains("<td>vic</td><td>viewer</td>"))
            let (viewer, login) = try await Browser.login(client, user: "vic", password: "viewer-password-2")
            #expect(login.status == .seeOther)
            let own = String(buffer: try await viewer.get(client, "/account").body)
            #expect(!own.contains("id=\"add-user\""))
            let delete = try await viewer.post(client, "/cnfs/edge-1/edgesecurity/delete")
            #expect(delete.status == .forbidden)
            let short = try await admin.post(client, "/account/users", ["name": "x", "role": "viewer", "password": "short"])
            #expect(short.status == .seeOther || short.status == .badRequest)
            #expect(String(buffer: short.body).contains("at least 12 characters"))
        }
    }

    @Test("an API token acts as its user without a CSRF token; a revoked token is refused")
    func apiTokens() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let created = try await admin.call(client, .post, "/api/v1/tokens", json: #"{"label": "ci"}"#)
            #expect(created.status == .created)
            struct Created: Decodable { var token: String; var id: Int }
            let token = try JSONDecoder().decode(Created.self, from: Data(buffer: created.body))
            #expect(token.token.hasPrefix("et_"))
            let bearer: HTTPFields = [.authorization: "Bearer \(token.token)"]
            let me = try await client.execute(uri: "/api/v1/me", method: .get, headers: bearer)
            #expect(me.status == .ok)
            #expect(String(buffer: me.body).contains(#""name":"admin""#))
            var headers = bearer
            headers[.contentType] = "application/json"
            let add = try await client.execute(
                uri: "/api/v1/users", method: .post, headers: headers,
                body: ByteBuffer(string: #"{"name": "robot", "role": "viewer", "password": "robot-password-1"}"#))
            #expect(add.status == .created)
            let listed = String(buffer: try await admin.get(client, "/api/v1/tokens").body)
            #expect(listed.contains(#""label":"ci""#))
            #expect(!listed.contains(token.token))
            let revoked = try await client.execute(uri: "/api/v1/tokens/\(token.id)", method: .delete, headers: bearer)
            #expect(revoked.status == .ok)
            let after = try await client.execute(uri: "/api/v1/me", method: .get, headers: bearer)
            #expect(after.status == .unauthorized)
            let forged = try await client.execute(uri: "/api/v1/me", method: .get, headers: [.authorization: "Bearer et_0000"])
            #expect(forged.status == .unauthorized)
        }
    }

    @Test("changing the password needs the current one; afterwards only the new one signs in")
    func changePassword() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let wrong = try await admin.post(client, "/account/password", ["current": "nope-nope-nope", "new": "brand-new-password"])
            #expect(wrong.status == .badRequest)
            #expect(String(buffer: wrong.body).contains("the current password is not right"))
            let changed = try await admin.post(
                client, "/account/password", ["current": PortalFixture.adminPassword, "new": "brand-new-password"])
            #expect(changed.status == .seeOther)
            let (_, old) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            #expect(old.status == .unauthorized)
            let (_, new) = try await Browser.login(client, user: "admin", password: "brand-new-password")
            #expect(new.status == .seeOther)
        }
    }

    @Test("logging out ends the session: the same cookie no longer opens a page")
    func logout() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let out = try await admin.post(client, "/logout")
            #expect(out.status == .seeOther)
            #expect(out.headers[.location] == "/login")
            #expect(try await admin.get(client, "/account").status == .seeOther)
        }
    }

    @Test("a restarted portal keeps its sessions: the same cookie still opens pages, and logging out ends it for good")
    func sessionsSurviveARestart() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        let browser = try await fixture.app().test(.router) { client in
            let (admin, response) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            #expect(response.status == .seeOther)
            return admin
        }
        // The file holds the session id's digest only, not the id.
        let file = try String(contentsOfFile: fixture.directory + "/portal.sqlite", encoding: .isoLatin1)
        #expect(!file.contains(try #require(browser.cookies["edgetrail_session"])))
        // A new portal on the same data folder.
        var configuration = fixture.portal.configuration
        configuration.adminPassword = nil
        let restarted = try Portal(configuration: configuration, logger: .init(label: "test.portal"))
        #expect(try restarted.createFirstAdmin() == nil)
        try await Application(router: restarted.routes().router).test(.router) { client in
            let page = try await browser.get(client, "/account")
            #expect(page.status == .ok)
            #expect(String(buffer: page.body).contains("Signed in as <strong>admin</strong>"))
            #expect(try await browser.post(client, "/logout").status == .seeOther)
            #expect(try await browser.get(client, "/account").status == .seeOther)
        }
    }

    @Test("the OpenAPI document describes every /api/v1 route with its role, and needs no sign-in")
    func openAPI() async throws {
        let fixture = try PortalFixture()
        defer { fixture.cleanUp() }
        let routes = fixture.portal.routes().routes.filter(\.api)
        try await fixture.app().test(.router) { client in
            let response = try await client.execute(uri: "/api/v1/openapi.json", method: .get)
            #expect(response.status == .ok)
            let document = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            for route in routes {
                let path = route.path.split(separator: "/", omittingEmptySubsequences: false).map {
                    $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0)
                }.joined(separator: "/")
                let operation = paths[path]?[route.method.lowercased()] as? [String: Any]
                #expect(operation != nil, "\(route.method) \(path) is not in the document")
                #expect(operation?["x-edgetrail-role"] as? String == route.need.rawValue)
            }
        }
    }
}
