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
    /// Exactly 16 hex digits (either case). Read byte by byte: the collector parses one for
    /// nearly every record, and going through Characters and a generic integer parser cost
    /// several percent of its time.
    public init?(hex: some StringProtocol) {
        self.init(hex: String(hex))
    }

    /// The same for a `String`, read as contiguous UTF-8: the collector parses one per span, and
    /// the generic path iterates code units through protocol witnesses.
    public init?(hex: String) {
        var text = hex
        guard let value = text.withUTF8({ Self.parse($0) }) else { return nil }
        self.rawValue = value
    }

    /// The same for UTF-8 bytes (a Redis key as it comes off the wire).
    public init?(hexBytes bytes: ArraySlice<UInt8>) {
        guard let value = bytes.withUnsafeBufferPointer({ Self.parse($0) }) else { return nil }
        self.rawValue = value
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard bytes.count == 16 else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte &- UInt8(ascii: "A") &+ 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// The cookie as 16 lowercase hex digits, zero-padded.
    public var hex: String {
        withUnsafeBytes(of: rawValue.bigEndian) { Hex.string($0) }
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
