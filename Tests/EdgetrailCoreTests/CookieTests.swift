import EdgetrailCore
import Testing

@Suite("Cookies")
struct CookieTests {
    @Test("a cookie is written as 16 lowercase hex digits, zero-padded")
    func hexIsSixteenLowercaseDigits() {
        #expect(Cookie(0xAB).hex == "00000000000000ab")
        #expect(Cookie(UInt64.max).hex == "ffffffffffffffff")
        #expect(Cookie(0x0123_4567_89AB_CDEF).redisKeyPrefix == "cookie:0123456789abcdef:")
    }

    @Test("a cookie read back from its hex form is the same cookie")
    func hexRoundTrips() {
        for value: UInt64 in [0, 1, 0xDEAD_BEEF, 1 << 63, UInt64.max] {
            #expect(Cookie(hex: Cookie(value).hex) == Cookie(value))
        }
        #expect(Cookie(hex: "0123456789ABCDEF")?.rawValue == 0x0123_4567_89AB_CDEF)
    }

    @Test("text that is not exactly 16 hex digits is not a cookie", arguments: ["", "abc", "0123456789abcdeg", "0123456789abcdef0", "+123456789abcdef"])
    func rejectsMalformedHex(_ text: String) {
        #expect(Cookie(hex: text) == nil)
    }
}

@Suite("IP prefixes")
struct IPPrefixTests {
    @Test("addresses and CIDRs of both families parse, and host bits are cleared")
    func parsesAddressesAndNetworks() throws {
        #expect(IPPrefix("10.201.0.2")?.description == "10.201.0.2")
        #expect(IPPrefix("10.201.0.77/24")?.description == "10.201.0.0/24")
        #expect(IPPrefix("0.0.0.0/0")?.description == "0.0.0.0/0")
        #expect(IPPrefix("fd00::1")?.description == "fd00::1")
        #expect(IPPrefix("fd00:1:2::7/48")?.description == "fd00:1:2::/48")
    }

    @Test("a network contains the addresses inside it and no others")
    func containment() throws {
        let network = try #require(IPPrefix("10.201.0.0/24"))
        #expect(network.contains(try #require(IPPrefix("10.201.0.2"))))
        #expect(!network.contains(try #require(IPPrefix("10.201.1.2"))))
        #expect(!network.contains(try #require(IPPrefix("fd00::1"))))
        #expect(!network.contains(try #require(IPPrefix("10.0.0.0/8"))))
    }

    @Test("malformed addresses are refused", arguments: ["10.201.0", "10.201.0.256", "10.1.2.3/33", "10.1.2.3/", "a.b.c.d", "fd00::/129", "1.2.3.4/x", " 1.2.3.4"])
    func refusesMalformed(_ text: String) {
        #expect(IPPrefix(text) == nil)
    }
}
