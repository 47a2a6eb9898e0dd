import EdgetrailCNF
import EdgetrailCore
import Foundation
import Testing

/// Reads `yaml` as `spec.yaml` in a folder where only the handler files in `existing` exist.
private func problems(_ yaml: String, existing: Set<String> = ["on_request.py"]) -> [String] {
    let reader = CNFSpecReader(fileName: "spec.yaml", baseDirectory: "/cnf") { path in
        existing.contains(String(path.dropFirst("/cnf/".count))) ? nil : "no such file"
    }
    do {
        _ = try reader.read(yaml)
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

private func read(_ yaml: String, existing: Set<String> = ["on_request.py"]) throws -> CNFSpec {
    let reader = CNFSpecReader(fileName: "spec.yaml", baseDirectory: "/cnf") { path in
        existing.contains(String(path.dropFirst("/cnf/".count))) ? nil : "no such file"
    }
    return try reader.read(yaml)
}

private let valid = """
    name: edgesecurity
    node: edge-1
    microservices:
      - name: http-proxy
        kind: http-proxy
      - name: policy-mgr
        kind: policy-mgr
        labels: [policy, mgr]
    handlers:
      - microservice: http-proxy
        event: request_received
        file: on_request.py
    datapath:
      - "10.201.0.2 80 : redirect => [http-proxy]"
      - ip: 10.201.0.0/24
        port: "*"
        action: ratelimit
        rate: 2MB/s
    """

@Suite("CNF spec reader")
struct CNFSpecReaderTests {
    @Test("the example CNF in examples/edgesecurity is valid")
    func exampleIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let spec = try CNFSpecReader.load(path: root.appendingPathComponent("examples/edgesecurity/cnf.yaml").path)
        #expect(spec.name == "edgesecurity")
        #expect(spec.microservices.map(\.name) == ["http-proxy", "policy-mgr", "content-inspect"])
        #expect(spec.microservices[1].config == "policy-mgr.yaml")
        #expect(spec.handlers.count == 3)
        #expect(spec.datapath.first?.action == .redirect)
    }

    @Test("a valid spec yields its μsrvs, handlers and rules, with defaults filled in")
    func readsValidSpec() throws {
        let spec = try read(valid)
        #expect(spec.node == "edge-1")
        #expect(spec.microservices[0].labels == ["http-proxy"])
        #expect(spec.microservices[0].events == ["request_received", "response_received", "response_sent"])
        #expect(spec.microservices[1].labels == ["policy", "mgr"])
        #expect(spec.handlers == [Handler(microservice: "http-proxy", event: "request_received", file: "on_request.py")])
        #expect(spec.datapath.count == 2)
        #expect(spec.datapath[1].destination == IPPrefix("10.201.0.0/24"))
        #expect(spec.datapath[1].port == nil)
        #expect(spec.datapath[1].rateBytesPerSecond == 2_000_000)
    }

    @Test("settings are name: value pairs handlers read as text; a list as a value is refused where it is")
    func settings() throws {
        let spec = try read(valid + "\nsettings:\n  max_download_mb: 50\n  scan_downloads: true\n  greeting: hello there\n")
        #expect(spec.settings == ["max_download_mb": "50", "scan_downloads": "true", "greeting": "hello there"])
        #expect(try read(valid).settings.isEmpty)
        #expect(
            problems(valid + "\nsettings:\n  ok: 1\n  sizes: [1, 2]\n")
                == ["spec.yaml:21:10: expected the value of setting 'sizes' (text, a number or true/false) as a single value"])
        #expect(problems(valid + "\nsettings: [a, b]\n") == ["spec.yaml:19:11: expected settings as a mapping of 'field: value'"])
    }

    @Test("a μsrv may name its settings file; one that cannot be read is reported where it is named")
    func settingsFile() throws {
        let yaml = valid.replacingOccurrences(of: "labels: [policy, mgr]", with: "labels: [policy, mgr]\n    config: rules/policy.yaml")
        let spec = try read(yaml, existing: ["on_request.py", "rules/policy.yaml"])
        #expect(spec.microservices[1].config == "rules/policy.yaml")
        #expect(spec.microservices[0].config == nil)
        #expect(spec.files == ["on_request.py", "rules/policy.yaml"], "what a deployment must carry")
        #expect(problems(yaml) == ["spec.yaml:9:13: cannot read settings file 'rules/policy.yaml': no such file"])
    }

    @Test("an unknown action is reported at the action inside the shorthand string")
    func unknownAction() {
        let yaml = valid.replacingOccurrences(of: ": redirect =>", with: ": forward =>")
        #expect(problems(yaml) == [
            "spec.yaml:14:22: unknown action 'forward' (expected redirect, copy, deny, ratelimit)"
        ])
    }

    @Test("an unknown action in the long form is reported at its value")
    func unknownLongFormAction() {
        let yaml = valid.replacingOccurrences(of: "action: ratelimit", with: "action: throttle")
        #expect(problems(yaml) == [
            "spec.yaml:17:13: unknown action 'throttle' (expected redirect, copy, deny, ratelimit)"
        ])
    }

    @Test("a label no μsrv carries is reported")
    func unknownLabel() {
        let yaml = valid.replacingOccurrences(of: "=> [http-proxy]", with: "=> [web-proxy]")
        #expect(problems(yaml) == [
            "spec.yaml:14:35: no μsrv carries the label 'web-proxy' (labels in this CNF: http-proxy, mgr, policy)"
        ])
    }

    @Test("a handler for an event its μsrv does not publish is reported at the event")
    func handlerForUnpublishedEvent() {
        let yaml = valid.replacingOccurrences(of: "event: request_received", with: "event: policy_check")
        #expect(problems(yaml) == [
            "spec.yaml:11:12: μsrv 'http-proxy' does not publish 'policy_check' (it publishes: request_received, response_received, response_sent)"
        ])
    }

    @Test("a handler for a μsrv the CNF does not have is reported")
    func handlerForMissingMicroservice() {
        let yaml = valid.replacingOccurrences(of: "- microservice: http-proxy", with: "- microservice: anti-virus")
        #expect(problems(yaml) == [
            "spec.yaml:10:19: no μsrv named 'anti-virus' in this CNF (its μsrvs: http-proxy, policy-mgr)"
        ])
    }

    @Test("duplicate μsrv names are reported at the second one")
    func duplicateNames() {
        let yaml = valid.replacingOccurrences(of: "  - name: policy-mgr", with: "  - name: http-proxy")
        #expect(problems(yaml) == [
            "spec.yaml:6:11: duplicate μsrv name 'http-proxy' (first defined at line 4)"
        ])
    }

    @Test("bad addresses and ports are reported where they are written")
    func badAddressAndPort() {
        let yaml = valid
            .replacingOccurrences(of: "10.201.0.2 80", with: "10.201.0.2 70000")
            .replacingOccurrences(of: "ip: 10.201.0.0/24", with: "ip: 10.201.0.0/40")
        #expect(problems(yaml) == [
            "spec.yaml:14:17: '70000' is not a port (1-65535) or '*'",
            "spec.yaml:15:9: '10.201.0.0/40' is not an IP address, a CIDR (like 10.0.0.0/8) or '*'",
        ])
    }

    @Test("an unreadable handler file is reported at its path")
    func unreadableHandler() {
        #expect(problems(valid, existing: []) == [
            "spec.yaml:12:11: cannot read handler file 'on_request.py': no such file"
        ])
    }

    @Test("malformed YAML is reported with the parser's position")
    func malformedYAML() {
        let found = problems("name: x\nmicroservices: [a, b\nnode: y\n")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("spec.yaml:3:") == true)
        #expect(found.first?.contains("malformed YAML") == true)
    }

    @Test("every problem in a file is reported, in file order, not just the first")
    func reportsAllProblems() {
        let yaml = """
            name: Bad Name
            microservices:
              - name: proxy
                kind: http-proxy
                events: [request_received, exploded]
              - name: scanner
                kind: virus-scanner
            handlers:
              - microservice: proxy
                event: scan_done
                file: missing.py
            datapath:
              - "* 80 : copy"
              - "* 80 : deny"
              - ip: 10.0.0.1
                port: 22
                action: deny
                rate: 5MB/s
            extra: true
            """
        #expect(problems(yaml) == [
            "spec.yaml:1:1: the CNF is missing the required field 'node'",
            "spec.yaml:1:7: 'Bad Name' is not a valid name for 'name': use 1-63 lowercase letters, digits, '-' or '_', starting with a letter",
            "spec.yaml:5:32: a http-proxy does not publish 'exploded' (it publishes: request_received, response_received, response_sent)",
            "spec.yaml:7:11: unknown μsrv kind 'virus-scanner' (expected one of: http-proxy, policy-mgr, content-inspect, anti-virus)",
            "spec.yaml:10:12: μsrv 'proxy' does not publish 'scan_done' (it publishes: request_received)",
            "spec.yaml:11:11: cannot read handler file 'missing.py': no such file",
            "spec.yaml:13:6: a copy rule needs the label of the pod to send traffic to, e.g. '=> [http-proxy]'",
            "spec.yaml:14:6: a second rule for * 80 (the first is at line 13); one rule per address and port",
            "spec.yaml:15:5: a rate applies to ratelimit rules only, not deny",
            "spec.yaml:19:1: unknown field 'extra' in the CNF spec (expected one of: name, node, microservices, handlers, datapath, settings)",
        ])
    }

    @Test("a ratelimit without a rate is refused")
    func ratelimitNeedsRate() {
        let yaml = valid.replacingOccurrences(of: "    rate: 2MB/s\n", with: "").replacingOccurrences(
            of: "    rate: 2MB/s", with: "")
        #expect(problems(yaml) == [
            "spec.yaml:15:5: a ratelimit rule needs a rate, e.g. 'ratelimit 1MB/s' or 'rate: 1MB/s'"
        ])
    }

    @Test("an empty file says what a spec needs")
    func emptyFile() {
        #expect(problems("") == ["spec.yaml:1:1: the file is empty; a CNF spec needs name, node and microservices"])
    }
}

@Suite("CNF spec bounds")
struct CNFSpecBoundsTests {
    @Test("more datapath rules than a node's datapath holds are refused at validation, at the first one too many")
    func tooManyRules() {
        let head = "name: big\nnode: edge-1\nmicroservices:\n  - { name: http-proxy, kind: http-proxy }\ndatapath:\n"
        let rules = (0..<1100).map { "  - \"10.\($0 / 256).\($0 % 256).1 80 : deny\"" }.joined(separator: "\n")
        // Line 6 holds rule 1, so rule 1,025 is on line 1,030.
        #expect(problems(head + rules) == [
            "spec.yaml:1030:6: 1100 datapath rules; a node's datapath holds at most 1024 (this is rule 1025); "
                + "merge rules with networks like 10.0.0.0/8 or '*'"
        ])
        let atTheBound = (0..<1024).map { "  - \"10.\($0 / 256).\($0 % 256).1 80 : deny\"" }.joined(separator: "\n")
        #expect(problems(head + atTheBound) == [])
    }
}
