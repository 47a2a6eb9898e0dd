import EdgetrailCore
import Testing

@Suite("Datapath rule shorthand")
struct DatapathRuleSyntaxTests {
    @Test("the seed's shorthand reads as a redirect to the labelled pod")
    func seedShorthand() throws {
        let rule = try DatapathRule.parse(shorthand: "10.201.0.2 80 : redirect => [http-proxy]")
        #expect(rule.destination == IPPrefix("10.201.0.2"))
        #expect(rule.port == 80)
        #expect(rule.action == .redirect)
        #expect(rule.labels == ["http-proxy"])
        #expect(rule.rateBytesPerSecond == nil)
    }

    @Test("braces, wildcards, several labels and IPv6 are accepted")
    func variants() throws {
        let braced = try DatapathRule.parse(shorthand: "{ * * : copy => [tap, audit] }")
        #expect(braced.destination == nil && braced.port == nil)
        #expect(braced.labels == ["tap", "audit"])
        let v6 = try DatapathRule.parse(shorthand: "fd00::/64 443 : deny")
        #expect(v6.destination == IPPrefix("fd00::/64"))
        #expect(v6.action == .deny && v6.labels.isEmpty)
        let compact = try DatapathRule.parse(shorthand: "10.0.0.0/8 8080:deny")
        #expect(compact.port == 8080 && compact.action == .deny)
    }

    @Test("a ratelimit carries its rate in bytes per second")
    func rates() throws {
        #expect(try DatapathRule.parse(shorthand: "* 443 : ratelimit 1MB/s").rateBytesPerSecond == 1_000_000)
        #expect(try DatapathRule.parse(shorthand: "* 443 : ratelimit 64KiB/s").rateBytesPerSecond == 65_536)
        #expect(try DatapathRule.parse(shorthand: "* 443 : ratelimit 100Mbit/s").rateBytesPerSecond == 12_500_000)
        #expect(try DatapathRule.parse(shorthand: "* 443 : ratelimit 5000").rateBytesPerSecond == 5000)
    }

    @Test("each mistake is reported at the character where it is")
    func errorsPointAtTheMistake() {
        func failure(_ text: String) -> DatapathRuleSyntaxError? {
            do {
                _ = try DatapathRule.parse(shorthand: text)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure("10.201.0.2 80 : forward => [x]") == DatapathRuleSyntaxError(
            "unknown action 'forward' (expected redirect, copy, deny, ratelimit)", offset: 16))
        #expect(failure("10.201.0.300 80 : deny")?.offset == 0)
        #expect(failure("10.201.0.2 99999 : deny")?.offset == 11)
        #expect(failure("10.201.0.2 80 redirect")?.message == "expected ':' between the port and the action")
        #expect(failure("10.201.0.2 80 : redirect => [a b]")?.offset == 31)
        #expect(failure("10.201.0.2 80 : ratelimit fast")?.offset == 26)
        #expect(failure("{ 10.201.0.2 80 : deny")?.message == "expected '}' to close the rule")
        #expect(failure("") != nil)
    }

    @Test("a rule written out in shorthand reads back as the same rule")
    func shorthandRoundTrips() throws {
        for text in [
            "10.201.0.2 80 : redirect => [http-proxy]", "* * : deny", "10.0.0.0/8 443 : ratelimit 2000B/s",
            "* 80 : ratelimit 1500B/s", "* 81 : ratelimit 64KiB/s", "* 82 : ratelimit 3GB/s", "* 83 : ratelimit 100Mbit/s",
        ] {
            let rule = try DatapathRule.parse(shorthand: text)
            #expect(try DatapathRule.parse(shorthand: rule.shorthand) == rule)
        }
        #expect(DatapathRule.format(rate: 1_000_000) == "1MB/s")
        #expect(DatapathRule.format(rate: 65_536) == "64KiB/s")
        #expect(DatapathRule.format(rate: 12_500_000) == "12500KB/s")
        #expect(DatapathRule.format(rate: 1500) == "1500B/s")
    }
}
