import EdgetrailContentInspect
import EdgetrailCore
import EdgetrailPolicyManager
import EdgetrailYAML
import Testing
import Yams

@Suite("policy-mgr's rules")
struct PolicyRulesTests {
    let rules = PolicyRules(rules: {
        var admin = PolicyRule(name: "no-admin", decision: .deny, reason: "admin pages are internal")
        admin.paths = ["/admin*"]
        var uploads = PolicyRule(name: "no-uploads-from-guests", decision: .deny, reason: "guests may not upload")
        uploads.methods = ["POST", "PUT"]
        uploads.clients = [IPPrefix("10.200.0.0/24")!]
        var executables = PolicyRule(name: "no-executables", decision: .deny, reason: "executables are blocked")
        executables.categories = ["executable"]
        var partner = PolicyRule(name: "partners", decision: .allow)
        partner.hosts = ["*.partner.example"]
        return [partner, admin, uploads, executables]
    }())

    func decide(_ method: String, _ url: String, client: String = "10.200.0.2:41000", categories: [String] = []) -> String {
        rules.decide(PolicyQuestion(method: method, url: url, client: client, categories: categories)).name
    }

    @Test("the first matching rule decides; no match is the default")
    func firstMatch() {
        #expect(decide("GET", "http://10.201.0.2/admin/users") == "no-admin")
        #expect(decide("GET", "http://shop.partner.example/admin/") == "partners")
        #expect(decide("POST", "http://10.201.0.2/upload") == "no-uploads-from-guests")
        #expect(decide("POST", "http://10.201.0.2/upload", client: "192.168.1.5:5000") == "default")
        #expect(decide("GET", "http://10.201.0.2/x.exe", categories: ["executable", "download"]) == "no-executables")
        #expect(decide("GET", "/index.html") == "default")
        #expect(rules.decide(PolicyQuestion(method: "GET", url: "/", client: "")).decision == .allow)
    }

    @Test("a policy section with mistakes is refused with each at its place")
    func yamlProblems() throws {
        let yaml = """
            default: maybe
            rules:
              - name: a
                action: deny
                clients: [10.0.0.0/33]
              - action: allow
              - name: a
                action: block
                colour: red
            """
        var context = YAMLContext(fileName: "ms.yaml")
        let node = try #require(try Yams.compose(yaml: yaml))
        #expect(PolicyRules.read(node, context: &context) == nil)
        #expect(context.diagnostics.map(\.description) == [
            "ms.yaml:1:10: 'maybe' is not a valid default (expected one of: allow, deny)",
            "ms.yaml:5:15: '10.0.0.0/33' is not an IP address or prefix, e.g. 10.200.0.0/24",
            "ms.yaml:6:5: a policy rule is missing the required field 'name'",
            "ms.yaml:9:5: unknown field 'colour' in a policy rule (expected one of: name, action, reason, hosts, paths, methods, clients, categories)",
            "ms.yaml:8:13: 'block' is not a valid action (expected one of: allow, deny)",
        ])
    }
}

@Suite("content-inspect's sniffing")
struct ContentSnifferTests {
    @Test("the type comes from the bytes, not from what the sender declared")
    func sniffing() {
        let pdf = ContentSniffer.inspect(Array("%PDF-1.4\n...".utf8), declaredType: "text/html")
        #expect(pdf.sniffedType == "application/pdf")
        #expect(pdf.categories == ["pdf", "download"])
        #expect(pdf.needsScan)
        let page = ContentSniffer.inspect(Array("  <!DOCTYPE html><html></html>".utf8), declaredType: "text/html; charset=utf-8")
        #expect(page.categories == ["html"])
        #expect(!page.needsScan)
        let elf = ContentSniffer.inspect([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0], declaredType: "image/png")
        #expect(elf.categories == ["executable", "download"])
        let zip = ContentSniffer.inspect([0x50, 0x4B, 0x03, 0x04, 0, 0])
        #expect(zip.categories == ["archive", "download"])
        let png = ContentSniffer.inspect([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0], declaredType: "image/png")
        #expect(png.categories == ["image"])
        #expect(!png.needsScan)
    }

    @Test("text offered as a download is a download, and is advised for scanning (the EICAR file is text)")
    func textDownload() {
        let eicar = Array(#"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"#.utf8)
        let report = ContentSniffer.inspect(eicar, declaredType: "application/octet-stream")
        #expect(report.categories == ["text", "download"])
        #expect(report.needsScan)
        #expect(report.size == 68)
        #expect(report.sha256 == "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")
        let plain = ContentSniffer.inspect(Array("hello\n".utf8), declaredType: "text/plain")
        #expect(plain.categories == ["text"])
        #expect(!plain.needsScan)
        #expect(ContentSniffer.inspect([0, 1, 2, 3]).categories == ["binary", "download"])
    }
}
