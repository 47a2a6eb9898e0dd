import EdgetrailPortal
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// The repository's folders (examples, filters), found from this file.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

@Suite("Portal: CNF editor and filters")
struct PortalProvisioningTests {
    func fixture() throws -> PortalFixture {
        try PortalFixture { configuration in
            configuration.examplesDirectory = Repository.root + "/examples"
            configuration.filtersDirectory = Repository.root + "/filters"
            configuration.captureDirectories = [Repository.root + "/filters/testdata"]
        }
    }

    @Test("Add CNF from the example puts its spec and every file it names in the editor, checked clean")
    func addFromExample() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let form = String(buffer: try await admin.get(client, "/cnfs/new").body)
            #expect(form.contains("<option value=\"example:edgesecurity\">example: edgesecurity</option>"))
            let added = try await admin.post(client, "/cnfs/new", ["source": "example:edgesecurity"])
            #expect(added.status == .seeOther)
            #expect(added.headers[.location] == "/cnfs/edit/edgesecurity")
            let editor = String(buffer: try await admin.get(client, "/cnfs/edit/edgesecurity").body)
            #expect(editor.contains("Checks: no errors."))
            for file in ["handlers/on_request.py", "handlers/on_response.py", "handlers/on_inspect.py", "policy-mgr.yaml"] {
                #expect(editor.contains("name=\"file:\(file)\""), "\(file) is in the editor")
            }
            #expect(editor.contains("10.201.0.2 80 : redirect =&gt; [http-proxy]"))
            // Its μsrvs as the spec declares them, with their handlers and settings.
            #expect(editor.contains("The spec declares 3 μsrvs, 3 datapath rules"))
            #expect(editor.contains("<tr><td>http-proxy</td><td>http-proxy</td><td>http-proxy</td><td>request_received=handlers/on_request.py, response_sent=handlers/on_response.py</td></tr>"))
            #expect(editor.contains("settings policy-mgr.yaml"))
            let again = try await admin.post(client, "/cnfs/new", ["source": "example:edgesecurity"])
            #expect(again.status == .badRequest)
            #expect(String(buffer: again.body).contains("already in the editor"))
        }
    }

    @Test("a bad datapath rule is reported at the line and column cnf validate reports, and the spec is not saved")
    func badRule() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        let spec = try String(contentsOfFile: Repository.root + "/examples/edgesecurity/cnf.yaml", encoding: .utf8)
        let bad = spec.replacingOccurrences(of: "10.201.0.99 * : deny", with: "10.201.0.99 * : dney")
        let line = bad.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("dney") }! + 1
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            _ = try await admin.post(client, "/cnfs/new", ["source": "example:edgesecurity"])
            // As typed: the check the editor's script calls.
            let checked = try await admin.call(
                client, .post, "/api/v1/drafts/check", json: try Self.json(["name": "edgesecurity", "spec": bad]))
            let report = String(buffer: checked.body)
            #expect(report.contains(#""line":\#(line)"#))
            #expect(report.contains(#""column":22"#))
            #expect(report.contains("unknown action 'dney' (expected redirect, copy, deny, ratelimit)"))
            // Saved: refused, shown with the text as typed, and the saved spec unchanged.
            let saved = try await admin.post(client, "/cnfs/edit/edgesecurity", ["spec": bad])
            #expect(saved.status == .init(code: 422))
            let page = String(buffer: saved.body)
            #expect(page.contains("cnf.yaml:\(line):22: unknown action &#39;dney&#39;"))
            #expect(page.contains("10.201.0.99 * : dney"))
            let stored = String(buffer: try await admin.get(client, "/api/v1/drafts/edgesecurity").body)
            #expect(!stored.contains("dney"))
        }
    }

    @Test("a handler with a syntax error is refused at its FILE:LINE:COL; a fixed one is saved")
    func handlerSyntax() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            _ = try await admin.post(client, "/cnfs/new", ["source": "template", "name": "tiny"])
            let broken = "def handle(event, ctx)\n    return None\n"
            let refused = try await admin.post(client, "/cnfs/edit/tiny", ["file:handlers/on_request.py": broken])
            #expect(refused.status == .init(code: 422))
            #expect(String(buffer: refused.body).contains("handlers/on_request.py:1:23:"))
            let fixed = try await admin.post(client, "/cnfs/edit/tiny", ["file:handlers/on_request.py": "def handle(event, ctx):\n    return None\n"])
            #expect(fixed.status == .seeOther)
            let stored = String(buffer: try await admin.get(client, "/api/v1/drafts/tiny").body)
            #expect(stored.contains(#"def handle(event, ctx):\n    return None\n"#))
        }
    }

    @Test("handler code and rule text that hold markup are shown as text, in the editor and on the Filters page")
    func escaping() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            _ = try await admin.post(client, "/cnfs/new", ["source": "template", "name": "marked"])
            let handler = "# </textarea><script>alert(1)</script>\ndef handle(event, ctx):\n    return None\n"
            #expect(try await admin.post(client, "/cnfs/edit/marked", ["file:handlers/on_request.py": handler]).status == .seeOther)
            let editor = String(buffer: try await admin.get(client, "/cnfs/edit/marked").body)
            #expect(editor.contains("# &lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(!editor.contains("<script>alert(1)</script>"))
            let filters = try await admin.post(
                client, "/filters", ["rules": "# <script>alert(2)</script>\ndrop span where span.operation == \"<b>\"\n", "action": "dry-run"])
            let page = String(buffer: filters.body)
            // Central is not there: the page says so and keeps the text as typed.
            #expect(filters.status == .badGateway)
            #expect(page.contains("cannot reach central at http://127.0.0.1:9"))
            #expect(page.contains("# &lt;script&gt;alert(2)&lt;/script&gt;"))
            #expect(!page.contains("<script>alert(2)</script>"))
            #expect(!page.contains("== \"<b>\""))
        }
    }

    @Test("a viewer may open the editor but not save, add or deploy")
    func viewerReadOnly() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        try fixture.portal.store.addUser(name: "vera", role: .viewer, password: "viewer-password-1")
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            _ = try await admin.post(client, "/cnfs/new", ["source": "example:edgesecurity"])
            let (viewer, _) = try await Browser.login(client, user: "vera", password: "viewer-password-1")
            let editor = String(buffer: try await viewer.get(client, "/cnfs/edit/edgesecurity").body)
            #expect(editor.contains("readonly"))
            #expect(!editor.contains("id=\"deploy\""))
            #expect(try await viewer.post(client, "/cnfs/edit/edgesecurity", ["spec": "x"]).status == .forbidden)
            #expect(try await viewer.post(client, "/cnfs/edit/edgesecurity/deploy", ["node": "edge-1"]).status == .forbidden)
        }
    }

    @Test("deploying when the node is down says how to bring it up, and starts nothing")
    func deployNodeDown() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            _ = try await admin.post(client, "/cnfs/new", ["source": "example:edgesecurity"])
            let response = try await admin.call(client, .post, "/api/v1/drafts/edgesecurity/deploy", json: #"{"node": "edge-1"}"#)
            #expect(response.status == .serviceUnavailable)
            #expect(String(buffer: response.body).contains("is the node up? (sudo edgetrail node up --name edge-1)"))
            let other = try await admin.call(client, .post, "/api/v1/drafts/edgesecurity/deploy", json: #"{"node": "edge-9"}"#)
            #expect(other.status == .notFound)
        }
    }

    @Test("filters: lint errors at their line; a dry run over a capture gives the figures of filters test")
    func filters() async throws {
        let fixture = try fixture()
        defer { fixture.cleanUp() }
        try await fixture.app().test(.router) { client in
            let (admin, _) = try await Browser.login(client, user: "admin", password: PortalFixture.adminPassword)
            let lint = try await admin.call(
                client, .post, "/api/v1/filters/lint", json: try Self.json(["text": "# keep\ndrop span where span.nope == 1\n"]))
            let report = String(buffer: lint.body)
            #expect(report.contains(#""line":2"#))
            #expect(report.contains(#""column":17"#))
            #expect(report.contains("unknown field span.nope"))
            let run = try await admin.call(
                client, .post, "/api/v1/filters/dry-run",
                json: try Self.json(["text": "drop cookie where cookie.spans < 0\n", "capture": "file:sample.capture"]))
            #expect(run.status == .ok)
            let text = String(buffer: run.body)
            #expect(text.contains(#""cookies":20"#))
            #expect(text.contains(#""records":123"#))
            #expect(text.contains("cookies: 20 of 20 kept (100.0%)"))
            let page = try await admin.post(client, "/filters", ["rules": "drop span where\n", "action": "dry-run"])
            #expect(page.status == .init(code: 422))
            #expect(String(buffer: page.body).contains("active.rules:1:"))
        }
    }

    static func json(_ value: [String: String]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value), as: UTF8.self)
    }
}
