#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 network: an address and how many leading bits of it matter.
///
/// A single address is a prefix of full length (`/32` or `/128`).
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    /// The address bytes, network order: 4 for IPv4, 16 for IPv6; host bits are zero.
    public var address: [UInt8]
    public var length: Int

    public var isIPv4: Bool { address.count == 4 }

    /// Parses `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`; `nil` when it is neither.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = IPPrefix.parseAddress(String(parts[0])) else { return nil }
        let maxLength = bytes.count * 8
        var length = maxLength
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy(\.isASCII), parts[1].allSatisfy(\.isNumber),
                let value = Int(parts[1]), value <= maxLength
            else { return nil }
            length = value
        }
        self.init(address: bytes, length: length)
    }

    public init(address: [UInt8], length: Int) {
        var masked = address
        for index in masked.indices {
            let bitsBefore = index * 8
            if bitsBefore >= length { masked[index] = 0 }
            else if bitsBefore + 8 > length {
                masked[index] &= UInt8(truncatingIfNeeded: 0xFF << (8 - (length - bitsBefore)))
            }
        }
        self.address = masked
        self.length = length
    }

    /// True when `other` (an address or a narrower network) lies inside this network.
    public func contains(_ other: IPPrefix) -> Bool {
        guard other.address.count == address.count, other.length >= length else { return false }
        return IPPrefix(address: other.address, length: length).address == address
    }

    public var description: String {
        let text = IPPrefix.format(address)
        return length == address.count * 8 ? text : "\(text)/\(length)"
    }

    /// IPv4 dotted quad or IPv6 text to bytes.
    public static func parseAddress(_ text: String) -> [UInt8]? {
        if text.contains(":") {
            var storage = in6_addr()
            guard inet_pton(AF_INET6, text, &storage) == 1 else { return nil }
            return withUnsafeBytes(of: storage) { Array($0) }
        }
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = UInt8(octet)
            else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    /// Bytes (4 or 16) to conventional text.
    public static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        guard bytes.count == 16 else { return bytes.map { String($0, radix: 16) }.joined(separator: ":") }
        var storage = in6_addr()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
