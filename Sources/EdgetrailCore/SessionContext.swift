import Foundation

/// What travels with every call and event of one session, in gRPC metadata: the cookie
/// (`edgetrail-cookie`), the W3C trace context (`traceparent`) and W3C `baggage`, which carries
/// the cookie too (`edgetrail.cookie`) so that OpenTelemetry SDKs pass it on by themselves.
/// The μsrvs, the handler sidecar and the collector read it the same way, from here.
public struct SessionContext: Sendable, Equatable {
    /// The metadata names, lowercase as gRPC sends them.
    public static let cookieHeader = "edgetrail-cookie"
    public static let traceParentHeader = "traceparent"
    public static let baggageHeader = "baggage"
    /// The baggage entry (and span attribute) that names the cookie.
    public static let cookieBaggageKey = "edgetrail.cookie"

    public var cookie: Cookie?
    public var traceParent: TraceParent?
    /// Baggage entries other than the cookie, in order.
    public var baggage: [(key: String, value: String)]

    public init(cookie: Cookie? = nil, traceParent: TraceParent? = nil, baggage: [(key: String, value: String)] = []) {
        self.cookie = cookie
        self.traceParent = traceParent
        self.baggage = baggage
    }

    /// Reads the context from metadata (names compared without case). The cookie comes from
    /// `edgetrail-cookie`, or else from the baggage; values that are not what they claim to be
    /// are left out rather than guessed at.
    public init(metadata: [(name: String, value: String)]) {
        self.init()
        var baggageCookie: Cookie?
        for (name, value) in metadata {
            switch name.lowercased() {
            case Self.cookieHeader:
                if cookie == nil { cookie = Cookie(hex: value.trimmingCharacters(in: .whitespaces)) }
            case Self.traceParentHeader:
                if traceParent == nil { traceParent = TraceParent(header: value) }
            case Self.baggageHeader:
                for entry in Baggage.entries(value) {
                    if entry.key == Self.cookieBaggageKey {
                        baggageCookie = baggageCookie ?? Cookie(hex: entry.value)
                    } else if baggage.count < Baggage.maxEntries {
                        baggage.append(entry)
                    }
                }
            default:
                break
            }
        }
        if cookie == nil { cookie = baggageCookie }
    }

    public static func == (lhs: SessionContext, rhs: SessionContext) -> Bool {
        lhs.cookie == rhs.cookie && lhs.traceParent == rhs.traceParent
            && lhs.baggage.elementsEqual(rhs.baggage) { $0.key == $1.key && $0.value == $1.value }
    }

    /// The metadata for a call made on the session's behalf: the cookie in its own header and in
    /// the baggage, and the trace context with `parentSpanID` (the caller's span) as the parent.
    public func metadata(parentSpanID: [UInt8]? = nil) -> [(name: String, value: String)] {
        var result: [(name: String, value: String)] = []
        if let cookie { result.append((Self.cookieHeader, cookie.hex)) }
        if var traceParent {
            if let parentSpanID, parentSpanID.count == 8 { traceParent.parentID = parentSpanID }
            result.append((Self.traceParentHeader, traceParent.header))
        }
        var entries = baggage
        if let cookie { entries.insert((Self.cookieBaggageKey, cookie.hex), at: 0) }
        if !entries.isEmpty { result.append((Self.baggageHeader, Baggage.header(entries))) }
        return result
    }
}

/// The W3C `traceparent` header: `00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>`.
public struct TraceParent: Sendable, Equatable {
    public var traceID: [UInt8]
    public var parentID: [UInt8]
    public var sampled: Bool

    public init?(traceID: [UInt8], parentID: [UInt8], sampled: Bool) {
        guard traceID.count == 16, parentID.count == 8, traceID.contains(where: { $0 != 0 }),
            parentID.contains(where: { $0 != 0 })
        else { return nil }
        self.traceID = traceID
        self.parentID = parentID
        self.sampled = sampled
    }

    /// Parses a header as the W3C recommendation says: lowercase hex, ids not all zero, version
    /// `ff` invalid; a later version may carry more after its four fields.
    public init?(header: String) {
        let text = Array(header.trimmingCharacters(in: .whitespaces).utf8)
        guard text.count >= 55, text[2] == UInt8(ascii: "-"), text[35] == UInt8(ascii: "-"), text[52] == UInt8(ascii: "-"),
            let version = Self.bytes(text[0..<2]), version != [0xff],
            let traceID = Self.bytes(text[3..<35]), let parentID = Self.bytes(text[36..<52]),
            let flags = Self.bytes(text[53..<55])
        else { return nil }
        // Version 00 is exactly 55 characters; a later one may go on after a '-'.
        if version == [0] ? text.count != 55 : (text.count > 55 && text[55] != UInt8(ascii: "-")) { return nil }
        self.init(traceID: traceID, parentID: parentID, sampled: flags[0] & 1 == 1)
    }

    /// The header, version 00.
    public var header: String {
        "00-\(Self.hex(traceID))-\(Self.hex(parentID))-\(sampled ? "01" : "00")"
    }

    private static func bytes(_ digits: ArraySlice<UInt8>) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        var result: [UInt8] = []
        var index = digits.startIndex
        while index < digits.endIndex {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            result.append(high << 4 | low)
            index += 2
        }
        return result
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        Hex.string(bytes)
    }
}

/// The W3C `baggage` header: `key=value;property,key2=value2`, values percent-encoded.
public enum Baggage {
    /// The W3C limits: at most 180 entries and 8,192 bytes; past them the rest is ignored.
    public static let maxEntries = 180
    public static let maxBytes = 8192

    /// The entries of a header, in order, values percent-decoded; properties are dropped and
    /// malformed members skipped.
    public static func entries(_ header: String) -> [(key: String, value: String)] {
        var result: [(key: String, value: String)] = []
        for member in header.utf8.prefix(maxBytes).split(separator: UInt8(ascii: ",")) {
            guard result.count < maxEntries else { break }
            let text = String(decoding: member, as: UTF8.self)
            let pair = text.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else { continue }
            let key = pair[0].trimmingCharacters(in: .whitespaces)
            let raw = pair[1].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { continue }
            result.append((key, raw.removingPercentEncoding ?? raw))
        }
        return result
    }

    /// A header for `entries`, values percent-encoded where the format needs it.
    public static func header(_ entries: [(key: String, value: String)]) -> String {
        // baggage-octet (RFC-style ASCII without controls, space, '"', ',', ';', '\\' and '%').
        let allowed = CharacterSet(
            charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&'()*+-./:<=>?@[]^_`{|}~")
        return entries.prefix(maxEntries).map {
            "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.value)"
        }.joined(separator: ",")
    }

    /// The cookie in a header's `edgetrail.cookie` entry.
    public static func cookie(in header: String) -> Cookie? {
        entries(header).first { $0.key == SessionContext.cookieBaggageKey }.flatMap { Cookie(hex: $0.value) }
    }
}
