import EdgetrailCore
@testable import EdgetrailFilters
import EdgetrailProto
import EdgetrailTelemetry
import EdgetrailTestRecords
import Foundation
import Testing

private func stage(_ text: String) throws -> FilterStage {
    FilterStage(rules: RuleCompiler.compile([try RuleFile.parse(text, fileName: "f.rules")], version: "test"))
}

private func span(_ service: String, ms: UInt64, status: Edgetrail_V1_SpanStatus = .ok, url: String? = nil)
    -> Edgetrail_V1_Record
{
    TestRecords.span(
        cookie: 7, trace: nil, id: nil, operation: "op", service: service, startNs: 1_000_000,
        endNs: 1_000_000 + ms * 1_000_000, status: status, tags: url.map { ["http.url": $0] } ?? [:])
}

private func flow(bytes: UInt64, action: Edgetrail_V1_DatapathAction = .redirect, dst: [UInt8] = [10, 201, 0, 2])
    -> Edgetrail_V1_Record
{
    TestRecords.flow(
        cookie: 7, source: [], sourcePort: 0, destination: dst, proto: 0, action: action, startNs: 0,
        bytesIn: bytes / 2, bytesOut: bytes - bytes / 2)
}

private func snapshot(_ value: String) -> Edgetrail_V1_Record {
    TestRecords.snapshot(cookie: 7, key: "cookie:0000000000000007:anti-virus:verdict", value: value, atNs: 0)
}

private func batch(_ cookie: UInt64, cnf: String = "edgesecurity", _ records: [Edgetrail_V1_Record]) -> Edgetrail_V1_CookieBatch {
    TestRecords.batch(cookie: cookie, final: false, cnf: cnf, node: "", records)
}

@Suite("Filter rule evaluation")
struct RuleEvaluationTests {
    @Test("record rules drop what their condition matches and count each match")
    func recordDrops() throws {
        var filters = try stage("""
            drop span where span.service == "http-proxy" and span.duration_ms < 1
            drop flow where flow.bytes_in + flow.bytes_out < 128
            drop flow where flow.dst in 10.99.0.0/16
            """)
        var fast = span("http-proxy", ms: 0)
        var slow = span("http-proxy", ms: 5)
        var other = span("policy-mgr", ms: 0)
        var tiny = flow(bytes: 100)
        var big = flow(bytes: 4096)
        var elsewhere = flow(bytes: 4096, dst: [10, 99, 3, 4])
        do { let result = filters.admit(&fast); #expect(!result) }
        do { let result = filters.admit(&slow); #expect(result) }
        do { let result = filters.admit(&other); #expect(result) }
        do { let result = filters.admit(&tiny); #expect(!result) }
        do { let result = filters.admit(&big); #expect(result) }
        do { let result = filters.admit(&elsewhere); #expect(!result) }
        #expect(filters.matches == ["f.rules:1": 1, "f.rules:2": 1, "f.rules:3": 1])
        #expect(filters.droppedRecords == 3)
    }

    @Test("redaction rewrites only the matching part, or the whole value without a pattern")
    func redaction() throws {
        var filters = try stage("""
            redact span.tags["http.url"] matching /\\?.*$/ with "?…"
            redact snapshot.value matching /[0-9]{13,19}/ with "[card]"
            redact span.tags["authorization"]
            """)
        var record = span("http-proxy", ms: 2, url: "/pay?card=4111111111111111&user=alice")
        record.span.tags["authorization"] = "Bearer secret"
        do { let result = filters.admit(&record); #expect(result) }
        #expect(record.span.tags["http.url"] == "/pay?…")
        #expect(record.span.tags["authorization"] == "[redacted]")
        var plain = span("http-proxy", ms: 2, url: "/index.html")
        do { let result = filters.admit(&plain); #expect(result) }
        #expect(plain.span.tags["http.url"] == "/index.html")
        var state = snapshot("card 4111111111111111 used")
        do { let result = filters.admit(&state); #expect(result) }
        #expect(state.snapshot.stringValue == Data("card [card] used".utf8))
        #expect(filters.matches["f.rules:1"] == 1 && filters.matches["f.rules:2"] == 1)
    }

    @Test("the first keep or drop that matches decides a cookie, before any sample rule")
    func cookieDecisions() throws {
        var filters = try stage("""
            sample 0% cookies
            keep cookie where any(span where span.status == "error") or any(snapshot where snapshot.value ~ /infected/)
            drop cookie where not any(flow where flow.action == "redirect")
            """)
        let error = batch(1, [span("policy-mgr", ms: 1, status: .error)])
        let infected = batch(2, [snapshot("infected: Eicar"), flow(bytes: 500, action: .pass)])
        let unredirected = batch(3, [flow(bytes: 500, action: .pass)])
        let ordinary = batch(4, [flow(bytes: 500)])
        do { let result = filters.keep(error); #expect(result) }
        do { let result = filters.keep(infected); #expect(result) }
        do { let result = filters.keep(unredirected); #expect(!result, "dropped by the drop rule") }
        do { let result = filters.keep(ordinary); #expect(!result, "undecided by keep/drop, then sampled at 0%") }
        #expect(filters.droppedCookies == 2)
    }

    @Test("sampling is deterministic per cookie and close to its rate")
    func sampling() throws {
        var first = try stage("sample 10% cookies where cookie.cnf == \"edgesecurity\"")
        var second = try stage("sample 10% cookies where cookie.cnf == \"edgesecurity\"")
        var kept = 0
        for cookie in 1...20_000 as ClosedRange<UInt64> {
            let decision = first.keep(batch(cookie, [span("x", ms: 1)]))
            let again = second.keep(batch(cookie, [span("x", ms: 1)]))
            #expect(decision == again)
            if decision { kept += 1 }
        }
        #expect((1_700...2_300).contains(kept), "kept \(kept) of 20,000 at 10%")
        // Another CNF is not covered by the rule: kept.
        do { let result = first.keep(batch(99, cnf: "other", [span("x", ms: 1)])); #expect(result) }
    }

    @Test("counts and cookie fields work in cookie conditions")
    func countsAndCookieFields() throws {
        var filters = try stage("drop cookie where count(span where span.duration_ms > 10) >= 2 and cookie.records < 4")
        let twoSlow = filters.keep(batch(5, [span("a", ms: 20), span("b", ms: 30)]))
        let oneSlow = filters.keep(batch(6, [span("a", ms: 20), span("b", ms: 3)]))
        let many = filters.keep(batch(7, [span("a", ms: 20), span("b", ms: 30), span("c", ms: 1), span("d", ms: 1)]))
        #expect(!twoSlow)
        #expect(oneSlow)
        #expect(many)
    }

    @Test("evaluating valid rules never fails, whatever the records hold")
    func robustEvaluation() throws {
        var filters = try stage("""
            drop span where span.tags["missing"] == "x" or span.tags["missing"] != "y"
            drop flow where flow.src in 0.0.0.0/0
            keep cookie where all(flow where flow.duration_ms > 0)
            """)
        var empty = Edgetrail_V1_Record()
        _ = filters.admit(&empty)
        var noAddress = flow(bytes: 10, dst: [])
        _ = filters.admit(&noAddress)
        _ = filters.keep(batch(8, []))
        var bare = span("x", ms: 0)
        do { let result = filters.admit(&bare); #expect(!result, "a missing tag is != anything") }
    }
}

@Suite("Filter rule properties")
struct RulePropertyTests {
    /// Random valid rules over random records: evaluation always ends with a verdict.
    @Test("random valid rules evaluate on random records without failing")
    func randomValidRules() throws {
        var generator = SystemRandomNumberGenerator()
        let spanConditions = [
            "span.service == \"http-proxy\"", "span.duration_ms < 5", "span.tags[\"k\"] ~ /a.*b/",
            "span.status != \"ok\"", "span.duration_ms + 1 >= 2ms",
        ]
        let flowConditions = [
            "flow.dst in 10.0.0.0/8", "flow.bytes_in - flow.bytes_out > 0", "flow.proto == \"tcp\"",
            "flow.src == 10.200.0.2", "flow.action != \"deny\"",
        ]
        let cookieConditions = [
            "any(span where span.status == \"error\")", "count(flow where flow.dport == 80) > 1",
            "all(snapshot where snapshot.value ~ /x/)", "cookie.records < 10", "cookie.cnf == \"c\"",
        ]
        func condition(_ pool: [String]) -> String {
            var text = pool.randomElement(using: &generator)!
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                let joiner = Bool.random(using: &generator) ? " and " : " or "
                let next = pool.randomElement(using: &generator)!
                text = Bool.random(using: &generator) ? "(\(text))\(joiner)not \(next)" : "\(text)\(joiner)\(next)"
            }
            return text
        }
        var evaluated = 0
        for _ in 0..<200 {
            var lines: [String] = []
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                switch Int.random(in: 0...5, using: &generator) {
                case 0: lines.append("drop span where \(condition(spanConditions))")
                case 1: lines.append("drop flow where \(condition(flowConditions))")
                case 2: lines.append("redact span.tags[\"k\"] matching /[0-9]+/ with \"#\"")
                case 3: lines.append("keep cookie where \(condition(cookieConditions))")
                case 4: lines.append("sample \(Int.random(in: 0...100, using: &generator))% cookies where \(condition(cookieConditions))")
                default: lines.append("drop cookie where \(condition(cookieConditions))")
                }
            }
            let file = try RuleFile.parse(lines.joined(separator: "\n"), fileName: "random.rules")
            var stage = FilterStage(rules: RuleCompiler.compile([file], version: "r"))
            var batch = Edgetrail_V1_CookieBatch()
            batch.cookie = UInt64.random(in: 0...UInt64.max, using: &generator)
            for _ in 0..<Int.random(in: 0...12, using: &generator) {
                var record = Edgetrail_V1_Record()
                switch Int.random(in: 0...3, using: &generator) {
                case 0:
                    record.span.operation = "op"
                    record.span.startNs = UInt64.random(in: 0...1_000_000_000, using: &generator)
                    record.span.endNs = UInt64.random(in: 0...1_000_000_000, using: &generator)
                    record.span.tags["k"] = String(Int.random(in: 0...999_999, using: &generator))
                case 1:
                    record.flow.tuple.dstIp = Data((0..<[0, 4, 16].randomElement(using: &generator)!).map { _ in UInt8.random(in: 0...255, using: &generator) })
                    record.flow.bytesIn = UInt64.random(in: 0...10_000, using: &generator)
                case 2:
                    record.snapshot.stringValue = Data("x\(Int.random(in: 0...9, using: &generator))".utf8)
                default:
                    break  // a record with nothing set
                }
                if stage.admit(&record) { batch.records.append(record) }
                evaluated += 1
            }
            _ = stage.keep(batch)
        }
        #expect(evaluated > 0)
    }

    @Test("rules picked by their guards decide exactly as running every rule in file order")
    func guardedIndexMatchesPlainOrder() throws {
        var generator = SystemRandomNumberGenerator()
        func pick<T>(_ values: [T]) -> T { values.randomElement(using: &generator)! }
        let services = ["s1", "s2", "s3"]
        let tags = ["k1", "k2", "k3"]
        let ruleShapes: [() -> String] = [
            { "drop span where span.service == \"\(pick(services))\"" },
            { "drop span where span.duration_ms < 5 and span.service == \"\(pick(services))\"" },
            { "drop span where span.tags[\"\(pick(tags))\"] == \"v\(Int.random(in: 1...2))\"" },
            { "drop span where span.service == \"\(pick(services))\" or span.duration_ms > 8" },
            // Redactions that change a field later rules are guarded by.
            { "redact span.service matching /\(pick(services))/ with \"\(pick(services))\"" },
            { "redact span.tags[\"\(pick(tags))\"] with \"v\(Int.random(in: 1...2))\"" },
            { "drop flow where flow.dport == \(pick([80, 443, 8080]))" },
            { "drop flow where flow.bytes_in > 500" },
            { "drop snapshot where snapshot.key == \"\(pick(["a", "b"]))\"" },
        ]
        var compared = 0
        for _ in 0..<300 {
            let text = (0..<Int.random(in: 1...12, using: &generator)).map { _ in pick(ruleShapes)() }
                .joined(separator: "\n")
            let rules = RuleCompiler.compile([try RuleFile.parse(text, fileName: "g.rules")], version: "g")
            var stage = FilterStage(rules: rules)
            var expectedMatches: [String: Int] = [:]
            for _ in 0..<40 {
                var record = Edgetrail_V1_Record()
                switch Int.random(in: 0...2, using: &generator) {
                case 0:
                    record.service = pick(services)
                    record.span.endNs = UInt64.random(in: 0...10, using: &generator) * 1_000_000
                    for tag in tags where Bool.random(using: &generator) {
                        record.span.tags[tag] = "v\(Int.random(in: 1...2, using: &generator))"
                    }
                case 1:
                    record.flow.tuple.dstPort = pick([80, 443, 8080])
                    record.flow.bytesIn = UInt64.random(in: 0...1000, using: &generator)
                default:
                    record.snapshot.key = pick(["a", "b", "c"])
                }
                // The reference: every rule, in file order, the first drop wins.
                var plain = record
                var plainKept = true
                for rule in rules.recordRules {
                    let (matched, verdict) = rule.apply(to: &plain)
                    if matched { expectedMatches[rule.name, default: 0] += 1 }
                    if verdict == .drop {
                        plainKept = false
                        break
                    }
                }
                var indexed = record
                let kept = stage.admit(&indexed)
                #expect(kept == plainKept, "rules:\n\(text)\nrecord: \(record)")
                if kept { #expect(indexed == plain, "rules:\n\(text)\nrecord: \(record)") }
                compared += 1
            }
            #expect(stage.matches == expectedMatches.filter { $0.value > 0 }, "rules:\n\(text)")
        }
        #expect(compared == 12_000)
    }

    @Test("a match that runs past its time bound is abandoned and counted: the condition does not match, a redaction replaces the whole value")
    func regexTimeBound() throws {
        // Lint cannot see that (a|a)+ backtracks exponentially; on 28 a's and a mismatch ICU
        // would take seconds. Bounded, each match gives up after its budget.
        let value = String(repeating: "a", count: 28) + "!"
        let before = RegexBudget.exceededCount
        var filters = try stage("drop snapshot where snapshot.value ~ /(a|a)+$/\nredact snapshot.value matching /(a|a)+$/")
        var record = snapshot(value)
        let kept = filters.admit(&record)
        #expect(kept, "a match out of time counts as no match: the record is kept")
        #expect(record.snapshot.stringValue == Data("[redacted]".utf8), "the redaction fails closed")
        #expect(RegexBudget.exceededCount - before == 2)
        #expect(RegexBudget.lastExceededPattern == "(a|a)+$")
        // The same rules on an ordinary value decide as usual, without touching the bound.
        var plain = snapshot("aaa")
        let counted = RegexBudget.exceededCount
        let plainKept = filters.admit(&plain)
        #expect(!plainKept)
        #expect(RegexBudget.exceededCount == counted)
    }

    @Test("lint knows every name an enumerated field can have")
    func valueCatalog() {
        #expect(Set(Edgetrail_V1_SpanStatus.allCases.map(\.ruleName)) == Set(FieldCatalog.values["span.status"]!))
        #expect(Set(Edgetrail_V1_DatapathAction.allCases.map(\.ruleName)) == Set(FieldCatalog.values["flow.action"]!))
        var tuple = Edgetrail_V1_FiveTuple()
        tuple.protocol = 6
        #expect(FieldCatalog.values["flow.proto"]!.contains(tuple.protocolRuleName))
        tuple.protocol = 17
        #expect(FieldCatalog.values["flow.proto"]!.contains(tuple.protocolRuleName))
    }

    @Test("match counts survive a rule swap")
    func countsSurviveSwap() throws {
        var filters = try stage("drop span where span.service == \"x\"")
        var record = span("x", ms: 1)
        _ = filters.admit(&record)
        filters.replace(with: RuleCompiler.compile([try RuleFile.parse("drop span where span.service == \"x\"", fileName: "f.rules")], version: "2"))
        var again = span("x", ms: 1)
        _ = filters.admit(&again)
        #expect(filters.matches == ["f.rules:1": 2])
    }
}

@Suite("Regex literal prefilter")
struct RegexLiteralTests {
    @Test("the literal every match starts with is found conservatively")
    func leadingLiterals() {
        #expect(RegexLiterals.leading(#"\?.*$"#) == "?")
        #expect(RegexLiterals.leading("^token=[a-z]+") == "token=")
        #expect(RegexLiterals.leading("abc?") == "ab")
        #expect(RegexLiterals.leading("a+") == nil)
        #expect(RegexLiterals.leading("[0-9]{13,19}") == nil)
        #expect(RegexLiterals.leading("secret|token") == nil)
        #expect(RegexLiterals.leading("(?i)secret") == nil)
        #expect(RegexLiterals.leading(#"\d+"#) == nil)
        #expect(RegexLiterals.leading(#"\.\*x"#) == ".*x")
    }

    @Test("patterns that run from a literal to the end of the line are recognised, and only those")
    func tailLiterals() {
        #expect(RegexLiterals.tail(#"\?.*$"#) == "?")
        #expect(RegexLiterals.tail("token=.*$") == "token=")
        #expect(RegexLiterals.tail(##"\#.*$"##) == "#")
        #expect(RegexLiterals.tail("^token=.*$") == nil)
        #expect(RegexLiterals.tail("a+.*$") == nil)
        #expect(RegexLiterals.tail("ab?.*$") == nil)
        #expect(RegexLiterals.tail("[?].*$") == nil)
        #expect(RegexLiterals.tail(".*$") == nil)
        #expect(RegexLiterals.tail(#"\?.*"#) == nil)
        #expect(RegexLiterals.tail("a|b.*$") == nil)
    }

    @Test("a redaction with a literal prefilter or the end-of-line shortcut redacts exactly what the regex alone would")
    func prefilterAgreesWithRegex() throws {
        let patterns = [#"\?.*$"#, "token=[a-z]+", "e", "ab?c", "x{2}", "token=.*$", "ab.*$"]
        // "e" against a decomposed é: the regex sees the code point e, so must the prefilter.
        var texts = [
            "/a?b=1", "/plain", "token=abc&x", "token=", "cafe\u{301}", "café", "ac", "abc", "xx", "x",
            "/a?b\nsecond?line", "/a?b\r\n", "/a?b\n", "é?x", "?", "token=x?token=y", "ab", "aab\u{2028}ab", "",
        ]
        // And random values from a small alphabet with line breaks and non-ASCII characters.
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ab?t=oken/\n\r é\u{85}")
        for _ in 0..<300 {
            texts.append(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
        }
        for pattern in patterns {
            let rules = RuleCompiler.compile(
                [try RuleFile.parse("redact span.tags[\"v\"] matching /\(pattern)/ with \"#\"", fileName: "p.rules")],
                version: "p")
            let regex = try NSRegularExpression(pattern: pattern)
            for text in texts {
                var record = Edgetrail_V1_Record()
                record.span.tags["v"] = text
                var stage = FilterStage(rules: rules)
                _ = stage.admit(&record)
                let expected = regex.stringByReplacingMatches(
                    in: text, range: NSRange(text.startIndex..., in: text), withTemplate: "#")
                #expect(record.span.tags["v"] == expected, "pattern \(pattern) on \(text)")
            }
        }
    }
}
