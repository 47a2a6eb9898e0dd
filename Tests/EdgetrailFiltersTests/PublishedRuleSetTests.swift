import EdgetrailCore
import EdgetrailFilters
import Foundation
import Testing

@Suite("Published rule sets: selectors, versions, a collector's own check, the rollout summary")
struct PublishedRuleSetTests {
    @Test("a selector is node=GLOB,cnf=GLOB; a missing key matches every node or CNF")
    func selectors() throws {
        let canary = try RuleSetSelector(parsing: "node=edge-a*")
        #expect(canary.matches(node: "edge-a1", cnf: "edgesecurity"))
        #expect(canary.matches(node: "edge-a", cnf: "other"))
        #expect(!canary.matches(node: "edge-b1", cnf: "edgesecurity"))
        let both = try RuleSetSelector(parsing: "node=edge-?1,cnf=edge*")
        #expect(both.matches(node: "edge-a1", cnf: "edgesecurity"))
        #expect(!both.matches(node: "edge-a12", cnf: "edgesecurity"))
        #expect(!both.matches(node: "edge-a1", cnf: "security"))
        #expect(try RuleSetSelector(parsing: "").matches(node: "anything", cnf: ""))
        #expect(try RuleSetSelector(parsing: "node=*a*b*").matches(node: "xxaxxbxx", cnf: ""))
        #expect(try !RuleSetSelector(parsing: "node=*a*b").matches(node: "xxaxxbxx", cnf: ""))
        #expect(throws: SelectorError.self) { try RuleSetSelector(parsing: "region=eu") }
        #expect(throws: SelectorError.self) { try RuleSetSelector(parsing: "node") }
    }

    @Test("readers keep the newest version of each name, whatever order the topic holds them in")
    func newest() {
        func set(_ name: String, _ version: Int) -> [UInt8] {
            PublishedRuleSet(name: name, version: version, selector: RuleSetSelector(), files: [], author: "a", publishedAtNs: 1).encoded()
        }
        let newest = PublishedRuleSet.newest([set("edge", 1), set("edge", 3), set("other", 1), set("edge", 2), Array("not json".utf8)])
        #expect(newest.mapValues(\.version) == ["edge": 3, "other": 1])
    }

    @Test("a set's files are checked as rule files, each problem named NAME@vVERSION/FILE:LINE:COLUMN")
    func ruleFiles() throws {
        let good = PublishedRuleSet(
            name: "edge", version: 2, selector: RuleSetSelector(),
            files: [.init(name: "a.rules", text: "drop span where span.operation == \"x\"\n")], author: "a", publishedAtNs: 1)
        #expect(try good.ruleFiles().map(\.fileName) == ["edge@v2/a.rules"])
        var bad = good
        bad.files = [.init(name: "b.rules", text: "# one\ndrop span where span.operaton == \"x\"\n")]
        #expect {
            try bad.ruleFiles()
        } throws: { error in
            "\(error)" == "edge@v2/b.rules:2:17: unknown field span.operaton; did you mean span.operation?"
        }
    }

    @Test("a collector refuses rules about records it has no source for, at the statement")
    func reach() throws {
        let file = try RuleFile.parse(
            """
            drop span where span.operation == "x"
            redact snapshot.value with "…"
            keep cookie where any(flow where flow.dport == 443)
            drop cookie where count(span where span.status == "error") > 3
            """, fileName: "r.rules")
        let problems = RuleReach.problems([file], sources: [.span]).map(\.description)
        #expect(problems.count == 2)
        #expect(problems[0].hasPrefix("r.rules:2:1: this collector has no snapshot source (sources.snapshots)"))
        #expect(problems[1].hasPrefix("r.rules:3:1: this collector has no flow source (sources.flows)"))
        #expect(RuleReach.problems([file], sources: [.span, .flow, .snapshot]).isEmpty)
    }

    @Test("the rollout summary: each node's last answer; a node behind on the newest version is named")
    func summary() {
        let reports = [
            RuleSetStatus(node: "edge-a", cnf: "c", name: "r", version: 1, outcome: .applied, atNs: 1_000_000_000),
            RuleSetStatus(node: "edge-a", cnf: "c", name: "r", version: 2, outcome: .applied, atNs: 2_000_000_000),
            RuleSetStatus(node: "edge-b", cnf: "c", name: "r", version: 1, outcome: .applied, atNs: 1_000_000_000),
            RuleSetStatus(node: "edge-c", cnf: "c", name: "r", version: 2, outcome: .refused, errors: ["r@v2/x.rules:1:1: boom"], atNs: 3_000_000_000),
        ]
        let summary = RolloutSummary(newest: 2, reports: reports)
        #expect(summary.refusedNewest)
        #expect(summary.lines == [
            "edge-a: version 2 applied at 1970-01-01T00:00:02Z",
            "edge-b: has not answered version 2 (last: version 1 applied at 1970-01-01T00:00:01Z)",
            "edge-c: version 2 REFUSED at 1970-01-01T00:00:03Z; its rules in force stay",
            "    r@v2/x.rules:1:1: boom",
        ])
        #expect(!RolloutSummary(newest: 1, reports: Array(reports.prefix(1))).refusedNewest)
        #expect(RolloutSummary(newest: 1, reports: []).lines == ["no collector has answered yet"])
    }
}
