/// The 64-bit id of one client session: the key every record is joined on.
///
/// Written everywhere (Kafka keys, Redis keys, the CLI) as 16 lowercase hex digits.
public struct Cookie: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The raw 64-bit value (a `fixed64` on the wire).
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Parses exactly 16 hex digits (either case); anything else is `nil`.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 16, hex.allSatisfy(\.isHexDigit), let value = UInt64(hex, radix: 16) else {
            return nil
        }
        self.rawValue = value
    }

    /// The cookie as 16 lowercase hex digits, zero-padded.
    public var hex: String {
        let digits = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// The Redis key prefix under which μsrvs keep this session's state.
    public var redisKeyPrefix: String { "cookie:\(hex):" }

    public var description: String { hex }

    public static func < (lhs: Cookie, rhs: Cookie) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Bytes written as lowercase hex digits, two per byte (ids, digests).
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func string(_ bytes: some Collection<UInt8>) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            var index = 0
            for byte in bytes {
                buffer[index] = digits[Int(byte >> 4)]
                buffer[index + 1] = digits[Int(byte & 0x0F)]
                index += 2
            }
            return index
        }
    }
}
