import EdgetrailCore
import EdgetrailFilters
import EdgetrailProto
import EdgetrailTelemetry
import Foundation

/// `edgetrail bench filters`: what record rules cost per record, with the shipped defaults and
/// with 100 rules, against no rules at all.
public enum FilterBenchmark {
    public static func run(defaultRules: String, records count: Int, print say: (String) -> Void) throws {
        let base = UInt64(Date().timeIntervalSince1970 * 1e9)
        var records: [Edgetrail_V1_Record] = []
        var cookie: UInt64 = 1
        while records.count < count {
            records += SyntheticSessions.records(cookie: cookie, at: base + cookie * 1000).map { record in
                var record = record
                if case .span = record.kind { record.span.tags["http.url"] = "/catalog/item/\(cookie)?user=alice&session=\(cookie)" }
                return record
            }
            cookie += 1
        }
        records = Array(records.prefix(count))
        /// 100 rules of four kinds; `tag` names the tags the redactions are for.
        func hundred(tag: (Int) -> String) -> String {
            var text = ""
            for index in 0..<100 {
                switch index % 4 {
                case 0: text += "drop span where span.service == \"svc\(index)\" and span.duration_ms < \(index)\n"
                case 1: text += "drop flow where flow.bytes_in + flow.bytes_out < \(index) and flow.dport == \(1000 + index)\n"
                case 2: text += "drop snapshot where snapshot.key == \"cookie:none:\(index)\"\n"
                default: text += "redact span.tags[\"\(tag(index))\"] with \"x\"\n"
                }
            }
            return text
        }
        // Tag names the spans' own tags (http.url, http.method) never share a length with, so the
        // guard look-up passes them over unhashed; and names exactly as long as http.url, so
        // every span's http.url is looked up: the worst case for the same rules.
        let short = hundred { "t\($0)" }
        let sameLength = hundred { String(format: "tag.%04d", $0) }
        let sets: [(String, FilterRules)] = [
            ("no rules", .passThrough),
            ("filters/default.rules", RuleCompiler.compile([try RuleFile.parse(defaultRules, fileName: "default")], version: "d")),
            ("100 rules", RuleCompiler.compile([try RuleFile.parse(short, fileName: "hundred")], version: "h")),
            ("100 rules, same lengths", RuleCompiler.compile([try RuleFile.parse(sameLength, fileName: "same")], version: "s")),
        ]
        say("filter benchmark: \(count) records (spans with URLs, flows, snapshots), record rules only")
        say("  hot: the first 1,000 records, 200 rounds (records just built, as the pipeline filters them);")
        say("  cold: all \(count) records once each (most of each record comes from main memory)")
        let hot = Array(records.prefix(1000))
        func row(_ name: String, _ admit: (inout Edgetrail_V1_Record) -> Bool) {
            let hotCost = bestOf3 { measure(hot, rounds: 200, admit) }
            let coldCost = bestOf3 { measure(records, rounds: 1, admit) }
            say(
                "  " + name.padding(toLength: 24, withPad: " ", startingAt: 0)
                    + String(format: "hot %6.0f ns/record   cold %6.0f ns/record   (best of 3)", hotCost, coldCost))
        }
        for (name, rules) in sets {
            var stage = FilterStage(rules: rules)
            row(name) { stage.admit(&$0) }
        }
        // The baseline: what any rule pays first, reading the record's payload (SwiftProtobuf's
        // oneof accessor copies it, retaining each of its fields).
        row("baseline: record.kind") { $0.kind != nil }
        say("  target: <= 300 ns/record with 100 rules on one core")
    }

    private static func bestOf3(_ run: () -> Double) -> Double {
        (0..<3).map { _ in run() }.min()!
    }

    /// Nanoseconds per record of `admit` over `records`, `rounds` times; each round works on its
    /// own copy, made before the clock starts.
    private static func measure(
        _ records: [Edgetrail_V1_Record], rounds: Int, _ admit: (inout Edgetrail_V1_Record) -> Bool
    ) -> Double {
        var elapsed: UInt64 = 0
        var kept = 0
        for _ in 0..<rounds {
            var copy = records
            copy.withUnsafeMutableBufferPointer { _ in }  // the copy happens here, not while timed
            let started = DispatchTime.now().uptimeNanoseconds
            for index in copy.indices where admit(&copy[index]) { kept += 1 }
            elapsed += DispatchTime.now().uptimeNanoseconds - started
        }
        precondition(kept >= 0)
        return Double(elapsed) / Double(records.count * rounds)
    }
}
