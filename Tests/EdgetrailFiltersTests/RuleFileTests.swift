import EdgetrailCore
import EdgetrailFilters
import Foundation
import Testing

private func problems(_ text: String) -> [String] {
    do {
        _ = try RuleFile.parse(text, fileName: "f.rules")
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

@Suite("Filter rule files")
struct RuleFileTests {
    @Test("a file with Windows line endings (CRLF) has the same rules, at the same lines, as with LF")
    func crlfLineEndings() throws {
        let text = "# no upstream spans\ndrop span where span.operation == \"upstream GET\"\nredact span.tags[\"a\"]\n"
        let crlf = try RuleFile.parse(text.replacingOccurrences(of: "\n", with: "\r\n"), fileName: "f.rules")
        #expect(crlf.statements.count == 2)
        #expect(problems("# one\r\ndrop span where span.nope == 1\r\n") == ["f.rules:2:17: unknown field span.nope (span fields: duration_ms, kind, operation, service, span_id, status, tags, trace_id)"])
    }

    @Test("every statement form of the language parses, with comments and blank lines")
    func everyStatementParses() throws {
        let rules = try RuleFile.parse(
            """
            # comment

            drop span where span.service == "http-proxy" and span.duration_ms < 1
            drop flow where flow.bytes_in + flow.bytes_out < 128
            redact span.tags["http.url"] matching /\\?.*$/ with "?…"
            redact snapshot.value matching /[0-9]{13,19}/ with "[card]"
            keep cookie where any(span where span.status == "error") or any(snapshot where snapshot.value ~ /infected/)
            sample 10% cookies where cookie.cnf == "edgesecurity"
            drop cookie where not any(flow where flow.action == "redirect")
            drop flow where flow.dst in 10.0.0.0/8 and (flow.dport == 80 or flow.dport != 443)
            drop span where span.duration_ms >= 250ms - 10ms  # durations are milliseconds
            keep cookie where count(span where span.status == "error") > 2 and all(flow where flow.bytes_out > 0)
            redact span.tags["authorization"]
            drop snapshot where snapshot.key ~ /^cookie:[0-9a-f]{16}:tmp:/
            """, fileName: "f.rules")
        #expect(rules.statements.count == 12)
        #expect(rules.statements.map(\.isCookieLevel) == [false, false, false, false, true, true, true, false, false, true, false, false])
        #expect(rules.statements[0].text == #"drop span where span.service == "http-proxy" and span.duration_ms < 1"#)
        #expect(rules.statements[8].text == "drop span where span.duration_ms >= 250ms - 10ms")
        if case .sample(let percent) = rules.statements[5].action { #expect(percent == 10) } else {
            Issue.record("not a sample rule")
        }
        if case .redact(let field, let pattern, let replacement) = rules.statements[10].action {
            #expect(field.description == #"span.tags["authorization"]"#)
            #expect(pattern == nil && replacement == "[redacted]")
        } else {
            Issue.record("not a redact rule")
        }
    }

    @Test("the shipped rule files are valid")
    func shippedFiles() throws {
        #expect(try RuleFile.load(path: "\(root)/filters/default.rules").statements.count == 6)
        #expect(try RuleFile.load(path: "\(root)/filters/examples/edgesecurity.rules").statements.count == 7)
        #expect(try RuleFile.load(path: "\(root)/filters/examples/thin-link.rules").statements.count == 8)
    }

    @Test("unknown fields are reported where they are written, with a suggestion")
    func unknownField() {
        #expect(problems("drop span where span.servce == \"x\"") == [
            "f.rules:1:17: unknown field span.servce; did you mean span.service?"
        ])
        #expect(problems("drop flow where flow.colour == \"red\"").first?.contains("flow fields: action, bytes_in") == true)
    }

    @Test("type mismatches are reported at the operator")
    func typeMismatch() {
        #expect(problems("drop flow where flow.bytes_in > \"large\"") == [
            "f.rules:1:31: '>' orders numbers, but this compares a number with a string"
        ])
        #expect(problems("drop span where span.service ~ \"proxy\"") == [
            "f.rules:1:30: '~' matches text against a /regular expression/, but this compares a string with a string"
        ])
        #expect(problems("drop flow where flow.sport in 10.0.0.0/8") == [
            "f.rules:1:28: 'in' tests an address against a CIDR like 10.0.0.0/8, but this compares a number with a network"
        ])
        #expect(problems("drop span where span.service") == [
            "f.rules:1:17: a condition must be true or false, but this is a string"
        ])
    }

    @Test("a bad regular expression is refused")
    func badRegex() {
        #expect(problems("drop snapshot where snapshot.value ~ /[unclosed/") == [
            "f.rules:1:38: /[unclosed/ is not a valid regular expression"
        ])
    }

    @Test("a regular expression that repeats a repeat is refused with the reason; bounded and single repeats pass")
    func nestedRepeats() {
        let refused = ["/(a+)+$/", "/(a*)*/", "/(x+y)*/", "/((a+))+/", "/(a{2,})+/", "/(?:a+b)+?/", "/((a+)?)*/"]
        for pattern in refused {
            let found = problems("drop snapshot where snapshot.value ~ \(pattern)")
            #expect(found.count == 1, "\(pattern)")
            #expect(found.first?.hasPrefix("f.rules:1:38: \(pattern) repeats a repeat") == true, "\(pattern): \(found)")
        }
        #expect(problems("drop snapshot where snapshot.value ~ /(a+)+$/") == [
            "f.rules:1:38: /(a+)+$/ repeats a repeat ('+' inside ')+'): matching it can take seconds on a value that "
                + "almost matches; repeat the group's content once, e.g. (ab)+ instead of (a+b)+"
        ])
        #expect(problems("redact span.tags[\"q\"] matching /(\\w+\\s?)+$/").first?.contains("repeats a repeat") == true)
        let accepted = ["/(ab)+/", "/a+b+/", "/[(a+)]+/", "/\\(a+\\)+/", "/(a+)?/", "/(a{1,3})+/", "/\\?.*$/", "/x{2}/"]
        for pattern in accepted {
            #expect(problems("drop snapshot where snapshot.value ~ \(pattern)") == [], "\(pattern)")
        }
    }

    @Test("a comparison with a value the field never has is refused with the values it has")
    func impossibleValues() {
        #expect(problems("drop span where span.status == \"bogus\"") == [
            "f.rules:1:32: span.status is never \"bogus\"; its values are \"ok\", \"error\", \"unset\""
        ])
        #expect(problems("drop flow where flow.proto == \"icmp\"") == [
            "f.rules:1:31: flow.proto is never \"icmp\"; its values are \"tcp\", \"udp\" or another IP protocol's number, like \"1\" for ICMP"
        ])
        #expect(problems("keep cookie where any(flow where \"redirected\" != flow.action)").first?.hasSuffix(
            "flow.action is never \"redirected\"; its values are \"redirect\", \"copy\", \"deny\", \"ratelimit\", \"pass\"") == true)
        for fine in ["span.status == \"error\"", "span.status != \"unset\""] {
            #expect(problems("drop span where \(fine)") == [], "\(fine)")
        }
        for fine in ["flow.proto == \"1\"", "flow.proto == \"udp\"", "flow.action == \"pass\""] {
            #expect(problems("drop flow where \(fine)") == [], "\(fine)")
        }
        #expect(problems("drop flow where flow.proto == \"6\"").count == 1, "TCP is named tcp, not 6")
    }

    @Test("rules after one that always decides are reported as unreachable")
    func unreachable() {
        #expect(problems("drop cookie\nkeep cookie where cookie.cnf == \"x\"") == [
            "f.rules:2:1: this rule is never reached: 'drop cookie' on line 1 decides every cookie first"
        ])
        #expect(problems("drop span\nredact span.tags[\"k\"]\ndrop flow where flow.dport == 1") == [
            "f.rules:2:1: this rule is never reached: 'drop span' on line 1 drops every span first"
        ])
    }

    @Test("fields of another kind, and aggregates outside cookie rules, are refused with what to write")
    func scopes() {
        #expect(problems("drop span where flow.dport == 80") == [
            "f.rules:1:17: flow.dport cannot be used in a span rule; use span.… fields"
        ])
        #expect(problems("keep cookie where span.status == \"error\"") == [
            "f.rules:1:19: span.status is a field of each span; in a cookie rule use any(span where …), all(…) or count(…)"
        ])
        #expect(problems("drop span where any(span where span.status == \"error\")") == [
            "f.rules:1:17: any(…) looks at all of a cookie's records, so it only works in cookie rules"
        ])
    }

    @Test("syntax errors on several lines are all reported, each at its column")
    func syntaxErrors() {
        #expect(problems(
            """
            frobnicate span
            drop span where
            keep cookie
            sample 150% cookies
            drop span where span.tags["k" == "v"
            drop span where span.service == "unterminated
            """) == [
                "f.rules:1:1: unknown statement 'frobnicate'; a rule starts with drop, keep, sample or redact",
                "f.rules:2:16: expected a value or a field, found the end of the line",
                "f.rules:3:12: 'keep cookie' needs a condition: 'keep cookie where …'",
                "f.rules:4:8: a sample rate is between 0% and 100%, not 150%",
                "f.rules:5:31: expected ']' to close the key, found '=='",
                "f.rules:6:33: this string is not closed; end it with \" on the same line",
            ])
    }

    @Test("linting arbitrary input never crashes")
    func arbitraryInput() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("drop keep sample redact span flow snapshot cookie where and or not any all count in ~ == != < <= > >= + - ( ) [ ] \" / % # . , 10 2.5 10ms 10.0.0.0/8 \n x_y tags[\"k\"]")
        var ran = 0
        for _ in 0..<3000 {
            let length = Int.random(in: 0...80, using: &generator)
            let text = String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            _ = problems(text)
            ran += 1
        }
        #expect(ran == 3000)
    }

    @Test("a number too large for an integer is reported, not a crash (found by libFuzzer)")
    func hugeNumberInError() {
        let found = problems(#"redact span.tags["a"] with "x" 33333333333333333333333333333333"#)
        #expect(found.count == 1)
        #expect(found.first?.contains("the number 3.3333333333333334e+31 after the end of the statement") == true)
    }
}

@Suite("Filter rule bounds")
struct RuleBoundsTests {
    private static let condition = "span.service == \"a\""

    @Test("conditions nested thousands deep are refused at the level that passes the bound, not a crash")
    func deepNesting() {
        let parentheses = "drop span where " + String(repeating: "(", count: 2000) + Self.condition
            + String(repeating: ")", count: 2000)
        #expect(problems(parentheses) == [
            "f.rules:1:49: '(' nests deeper than 32 levels; split the condition into several rules"
        ])
        let nots = "drop span where " + String(repeating: "not ", count: 10_000) + Self.condition
        #expect(problems(nots) == [
            "f.rules:1:145: 'not' nests deeper than 32 levels; split the condition into several rules"
        ])
        let aggregates = "keep cookie where " + String(repeating: "any(span where ", count: 2000) + Self.condition
            + String(repeating: ")", count: 2000)
        #expect(problems(aggregates).first?.hasPrefix(
            "f.rules:1:\(18 + 32 * 15 + 1): any(…) nests deeper than 32 levels") == true)
    }

    @Test("a condition with thousands of operators is refused at the first operator past the bound")
    func longChains() {
        let terms = Array(repeating: Self.condition, count: 5000)
        let chain = "drop span where " + terms.joined(separator: " or ")
        // Operators count in reading order: each term's '==', then the 'or' after it. The 257th is
        // the '==' of term 129, which starts at column 17 + 128 × 23 ('span.service == "a" or ').
        #expect(problems(chain) == [
            "f.rules:1:\(17 + 128 * 23 + 13): a condition holds at most 256 operators; split it into several rules"
        ])
        let sums = "drop span where span.duration_ms " + String(repeating: "+ 1 ", count: 3000) + "> 5"
        #expect(problems(sums).first?.hasSuffix("a condition holds at most 256 operators; split it into several rules") == true)
    }

    @Test("conditions at the bounds still parse, and the lines after a refused one are still checked")
    func atTheBounds() {
        let nested = "drop span where " + String(repeating: "(", count: 32) + Self.condition
            + String(repeating: ")", count: 32)
        #expect(problems(nested) == [])
        let nots = "drop span where " + String(repeating: "not ", count: 32) + Self.condition
        #expect(problems(nots) == [])
        // 128 comparisons joined by 127 'and's: 255 operators.
        let chain = "drop span where " + Array(repeating: Self.condition, count: 128).joined(separator: " and ")
        #expect(problems(chain) == [])
        let deep = "drop span where " + String(repeating: "(", count: 40) + Self.condition + String(repeating: ")", count: 40)
        let found = problems(deep + "\ndrop span where span.servce == \"x\"")
        #expect(found.count == 2)
        #expect(found.last?.hasPrefix("f.rules:2:17: unknown field span.servce") == true)
    }
}
