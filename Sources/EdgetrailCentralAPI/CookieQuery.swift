import Foundation

/// One line of the cookie listing.
public struct CookieSummary: Codable, Sendable, Hashable {
    public var cookie: String
    public var cnf: String
    public var node: String
    public var firstNs: UInt64
    public var lastNs: UInt64
    /// True when a span of the cookie ended in error.
    public var error: Bool
    public var records: Int

    public init(
        cookie: String, cnf: String, node: String, firstNs: UInt64, lastNs: UInt64, error: Bool, records: Int
    ) {
        self.cookie = cookie
        self.cnf = cnf
        self.node = node
        self.firstNs = firstNs
        self.lastNs = lastNs
        self.error = error
        self.records = records
    }
}

/// `GET /v1/cookies?cnf=&service=&since=&until=&error=true&limit=`: what central's listing
/// takes. Its URL form is read (`init(parameters:)`) and written (`parameters`) here only.
public struct CookieQuery: Sendable, Hashable {
    public var cnf: String?
    public var service: String?
    /// Cookies active at or after this time (their last record).
    public var sinceNs: UInt64?
    /// Cookies that began at or before this time (their first record).
    public var untilNs: UInt64?
    public var errorOnly = false
    public var limit = 100

    public init() {}
}

extension CookieQuery {
    /// The most cookies one listing returns.
    public static let maxLimit = 10_000

    /// The query as URL parameters, in a fixed order; defaults are left out.
    public var parameters: [(name: String, value: String)] {
        var result: [(String, String)] = []
        if let cnf { result.append(("cnf", cnf)) }
        if let service { result.append(("service", service)) }
        if let sinceNs { result.append(("since", String(sinceNs))) }
        if let untilNs { result.append(("until", String(untilNs))) }
        if errorOnly { result.append(("error", "true")) }
        if limit != CookieQuery().limit { result.append(("limit", String(limit))) }
        return result
    }

    /// Reads URL parameters; a value of the wrong form is refused with what to write instead.
    public init(parameters: [String: String]) throws(CookieQueryError) {
        self.init()
        cnf = parameters["cnf"]
        service = parameters["service"]
        for (name, keyPath) in [("since", \CookieQuery.sinceNs), ("until", \CookieQuery.untilNs)] {
            guard let value = parameters[name] else { continue }
            guard let number = UInt64(value) else {
                throw CookieQueryError("'\(name)' must be Unix nanoseconds, got '\(value)'")
            }
            self[keyPath: keyPath] = number
        }
        if let error = parameters["error"] {
            guard error == "true" || error == "false" else { throw CookieQueryError("'error' must be true or false") }
            errorOnly = error == "true"
        }
        if let limit = parameters["limit"] {
            guard let number = Int(limit), (1...Self.maxLimit).contains(number) else {
                throw CookieQueryError("'limit' must be 1-\(Self.maxLimit)")
            }
            self.limit = number
        }
    }
}

/// A listing query central cannot answer as written.
public struct CookieQueryError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
