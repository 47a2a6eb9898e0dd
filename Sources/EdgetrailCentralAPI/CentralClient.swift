import EdgetrailCore
import Foundation

/// Asks central's query API over HTTP: what `edgetrail trace` and the portal read. Central's
/// answers are the contract types of this target (`CookieTimeline`, `CookieSummary`); its error
/// bodies are `{"error": "…"}`.
public struct CentralClient: Sendable {
    /// Central's base address, e.g. `http://127.0.0.1:7070` (no path).
    public let base: String

    public init(base: String) {
        self.base = base
    }

    /// The reconstructed session, and the JSON exactly as central sent it.
    public func timeline(_ cookie: Cookie) async throws(CentralClientError) -> (timeline: CookieTimeline, json: Data) {
        let data = try await get("/v1/cookies/\(cookie.hex)")
        do {
            return (try JSONDecoder().decode(CookieTimeline.self, from: data), data)
        } catch {
            throw CentralClientError(.unreadable, "central answered something that is not a cookie timeline: \(error)")
        }
    }

    /// Cookies matching `query`, newest first.
    public func cookies(_ query: CookieQuery) async throws(CentralClientError) -> [CookieSummary] {
        let data = try await get(Self.path("/v1/cookies", query))
        struct Listing: Decodable { var cookies: [CookieSummary] }
        do {
            return try JSONDecoder().decode(Listing.self, from: data).cookies
        } catch {
            throw CentralClientError(.unreadable, "central answered something that is not a cookie listing: \(error)")
        }
    }

    /// The service graph of the sessions `query` lists (its `cnf` is required).
    public func graph(_ query: CookieQuery) async throws(CentralClientError) -> ServiceGraph {
        let data = try await get(Self.path("/v1/graph", query))
        do {
            return try JSONDecoder().decode(ServiceGraph.self, from: data)
        } catch {
            throw CentralClientError(.unreadable, "central answered something that is not a service graph: \(error)")
        }
    }

    /// The published filter rule sets and each node's answer (`name`: one set only).
    public func filterRollouts(name: String? = nil) async throws(CentralClientError) -> FilterRollouts {
        var path = "/v1/filters"
        if let name, !name.isEmpty, let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) { path += "?name=\(encoded)" }
        let data = try await get(path)
        do {
            return try JSONDecoder().decode(FilterRollouts.self, from: data)
        } catch {
            throw CentralClientError(.unreadable, "central answered something that is not a list of filter rollouts: \(error)")
        }
    }

    /// Recent sessions matching `query` as a capture (CookieBatch frames, as `collector --capture`
    /// writes), for a filter dry-run over real traffic.
    public func capture(_ query: CookieQuery) async throws(CentralClientError) -> Data {
        return try await get(Self.path("/v1/capture", query))
    }

    /// `path` with `query` as its URL parameters.
    static func path(_ path: String, _ query: CookieQuery) -> String {
        var components = URLComponents()
        components.queryItems = query.parameters.map { URLQueryItem(name: $0.name, value: $0.value) }
        return path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
    }

    /// The body of a 200 answer to `path`; anything else is an error that says what to do.
    func get(_ path: String) async throws(CentralClientError) -> Data {
        guard let url = URL(string: base + path), url.scheme != nil, url.host != nil else {
            throw CentralClientError(.notCentral, "'\(base)' is not a URL like http://127.0.0.1:7070")
        }
        let answer: HTTPGet.Response
        do {
            answer = try await HTTPGet.fetch(url.absoluteString)
        } catch {
            throw CentralClientError(.unreachable, "cannot reach central at \(base): \(error); is 'edgetrail central' running?")
        }
        let data = answer.body
        let status = answer.status
        guard status == 200 else {
            if let message = (try? JSONDecoder().decode([String: String].self, from: data))?["error"] {
                throw CentralClientError(.answered(status: status), message)
            }
            if status == 404 {
                // Not central's own answer: the base names something else (e.g. a path after the port).
                throw CentralClientError(
                    .notCentral,
                    "\(url.absoluteString) answered 404 Not Found; central's address is its base address, "
                        + "like http://127.0.0.1:7070, without a path")
            }
            let body = String(decoding: data.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw CentralClientError(
                .answered(status: status),
                "central at \(base) answered HTTP \(status)\(body.isEmpty ? " with an empty body" : ": \(body)")")
        }
        return data
    }
}

/// What went wrong asking central, said so a person knows what to do.
public struct CentralClientError: Error, CustomStringConvertible, Sendable {
    public enum Reason: Sendable, Equatable {
        /// Nothing answered at the address.
        case unreachable
        /// Something answered, but not central's API (a path after the port, another server).
        case notCentral
        /// Central refused the request (its `error` message is the description).
        case answered(status: Int)
        /// Central's answer could not be read as the contract says.
        case unreadable
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { message }
}
