import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailDatapathManager
import EdgetrailProto
import Foundation
import Testing

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

private func problems(_ yaml: String) -> [String] {
    do {
        _ = try RuleSetFile.read(yaml, fileName: "rules.yaml")
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

@Suite("Rule set files for 'edgetrail datapath apply'")
struct RuleSetFileTests {
    @Test("the shipped example reads into four rules and two pods, MAC given or left to ARP")
    func example() throws {
        let request = try RuleSetFile.load(path: root + "/examples/datapath/rules.yaml")
        let (rules, refused) = DatapathMessages.rules(request.rules)
        #expect(refused.isEmpty)
        #expect(rules.map(\.action) == [.redirect, .copy, .deny, .ratelimit])
        #expect(rules[3].rateBytesPerSecond == 10_000_000)
        #expect(request.pods.map(\.name) == ["http-proxy-0", "tap-0"])
        #expect(request.pods[0].ip == Data([10, 250, 1, 2]) && request.pods[0].mac.isEmpty)
        #expect(request.pods[1].mac == Data([0x02, 0x00, 0x0a, 0xfa, 0x02, 0x02]))
    }

    @Test("every mistake is reported at its line and column, including an unquoted rule YAML took for a mapping")
    func mistakes() {
        let yaml = """
            rules:
              - "10.0.0.1 99999 : deny"
              - 10.0.0.0/8 * : deny
              - "* * : teleport"
            pods:
              - name: p
                labels: [x]
                interface: et-p1
                mac: 02:00
              - name: q
                interface: et-p2
            """
        #expect(problems(yaml) == [
            "rules.yaml:2:15: '99999' is not a port (1-65535) or '*'",
            "rules.yaml:3:5: YAML read this rule as a mapping (because of ' : '); quote it: \"10.0.0.1 80 : redirect => [proxy]\"",
            "rules.yaml:4:12: unknown action 'teleport' (expected redirect, copy, deny, ratelimit)",
            "rules.yaml:9:10: '02:00' is not a MAC address like 02:00:00:00:00:01",
            "rules.yaml:10:5: the pod 'q' needs 'labels' for rules to select it",
            "rules.yaml:10:5: the pod 'q' needs 'ip' (its MAC is then asked by ARP) or 'mac'",
        ])
    }

    @Test("rules from the wire that cannot be rules are named by position")
    func wireRules() {
        var bad = Edgetrail_V1_DatapathRule()
        bad.ip = "10.0.0.300"
        bad.action = .deny
        var noAction = Edgetrail_V1_DatapathRule()
        noAction.ip = "*"
        var good = Edgetrail_V1_DatapathRule()
        good.ip = "10.0.0.0/8"
        good.port = 80
        good.action = .ratelimit
        good.rateBytesPerSecond = 1000
        let (rules, problems) = DatapathMessages.rules([bad, noAction, good])
        #expect(rules.map(\.shorthand) == ["10.0.0.0/8 80 : ratelimit 1KB/s"])
        #expect(problems.count == 2)
        #expect(problems[0].hasPrefix("rule 1: '10.0.0.300' is not an IP address"))
        #expect(problems[1] == "rule 2: no action (redirect, copy, deny or ratelimit)")
    }
}
