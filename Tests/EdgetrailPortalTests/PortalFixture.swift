import EdgetrailPortal
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging

/// A portal on a private data folder, with `admin` created (password `adminPassword`) and the
/// cheapest password hashing BoringSSL allows, so tests can log in many times.
struct PortalFixture {
    static let adminPassword = "admin-password-1"
    let directory: String
    let portal: Portal

    init(central: String = "http://127.0.0.1:9", configure: (inout PortalConfiguration) -> Void = { _ in }) throws {
        directory = NSTemporaryDirectory() + "edgetrail-portal-\(UUID().uuidString)"
        var configuration = PortalConfiguration(dataDirectory: directory, runDirectory: directory + "/run")
        configuration.passwordRounds = PasswordHasher.minimumRounds
        configuration.adminPassword = Self.adminPassword
        configuration.central = central
        // Nothing listens on port 9 (discard): the figures say they cannot be read.
        configuration.collectorMetrics = "http://127.0.0.1:9/metrics"
        configure(&configuration)
        portal = try Portal(configuration: configuration, logger: Logger(label: "test.portal"))
        _ = try portal.createFirstAdmin()
    }

    func app() -> some ApplicationProtocol {
        Application(router: portal.routes().router)
    }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A browser's state: its cookies and the CSRF token of the last page it saw.
struct Browser {
    var cookies: [String: String] = [:]
    var csrf = ""

    var cookieHeader: HTTPFields {
        cookies.isEmpty ? [:] : [.cookie: cookies.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "; ")]
    }

    /// Takes the cookies a response sets (an expired one is removed).
    mutating func take(_ response: TestResponse) {
        for header in response.headers[values: .setCookie] {
            let first = header.split(separator: ";")[0]
            let parts = first.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            if parts.count == 2 {
                if header.contains("Expires=Thu, 01 Jan 1970") || parts[1].isEmpty {
                    cookies[parts[0]] = nil
                } else {
                    cookies[parts[0]] = parts[1]
                }
            }
        }
    }

    func get(_ client: some TestClientProtocol, _ uri: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .get, headers: cookieHeader)
    }

    /// Posts a form, adding the CSRF token unless `csrf` is false.
    func post(_ client: some TestClientProtocol, _ uri: String, _ fields: [String: String] = [:], csrf: Bool = true)
        async throws -> TestResponse
    {
        var fields = fields
        if csrf { fields["csrf"] = self.csrf }
        var headers = cookieHeader
        headers[.contentType] = "application/x-www-form-urlencoded"
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: Self.form(fields)))
    }

    /// Sends a JSON call as the page's scripts would (CSRF token in a header).
    func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, json: String = "{}", csrf: Bool = true)
        async throws -> TestResponse
    {
        var headers = cookieHeader
        headers[.contentType] = "application/json"
        if csrf { headers[HTTPField.Name("X-CSRF-Token")!] = self.csrf }
        return try await client.execute(uri: uri, method: method, headers: headers, body: ByteBuffer(string: json))
    }

    static func form(_ fields: [String: String]) -> String {
        fields.sorted { $0.key < $1.key }.map {
            "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        }.joined(separator: "&")
    }

    /// Opens the login page, posts the form, and reads the CSRF token off the dashboard.
    static func login(_ client: some TestClientProtocol, user: String, password: String) async throws -> (Browser, TestResponse) {
        var browser = Browser()
        let form = try await browser.get(client, "/login")
        browser.take(form)
        let token = Self.value(of: "login_token", in: String(buffer: form.body)) ?? ""
        let response = try await browser.post(
            client, "/login", ["user": user, "password": password, "login_token": token, "next": "/"], csrf: false)
        browser.take(response)
        if response.status == .seeOther {
            let home = try await browser.get(client, "/account")
            browser.csrf = Self.value(of: "csrf", in: String(buffer: home.body)) ?? ""
        }
        return (browser, response)
    }

    /// The value of the hidden field `name` in a page.
    static func value(of name: String, in page: String) -> String? {
        guard let range = page.range(of: "name=\"\(name)\" value=\"") else { return nil }
        let rest = page[range.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }
}
