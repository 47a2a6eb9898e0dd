import Foundation

/// The OpenAPI 3.1 description of `/api/v1`, made from the routes as registered, so it cannot
/// list a route that does not exist or miss one that does.
enum OpenAPIDocument {
    static func json(_ routes: [RouteInfo]) -> OpenAPIValue {
        var paths: [String: OpenAPIValue] = [:]
        for route in routes where route.api {
            let (path, parameters) = openAPIPath(route.path)
            var operation: [String: OpenAPIValue] = [
                "summary": .string(route.summary),
                "x-edgetrail-role": .string(route.need.rawValue),
                "responses": .object([
                    "200": .object(["description": .string("Done; the answer is JSON.")]),
                    "400": .object(["description": .string("The request was not right: {\"error\": \"...\"} says how.")]),
                    "401": .object(["description": .string("No valid bearer token or session.")]),
                    "403": .object(["description": .string("The role may not do this (or, from a browser session, no CSRF token).")]),
                ]),
            ]
            if !parameters.isEmpty {
                operation["parameters"] = .array(
                    parameters.map {
                        .object([
                            "name": .string($0), "in": .string("path"), "required": .bool(true),
                            "schema": .object(["type": .string("string")]),
                        ])
                    })
            }
            if route.need == .anyone {
                operation["security"] = .array([])
            }
            if route.mutating, route.method != "DELETE" {
                operation["requestBody"] = .object([
                    "content": .object(["application/json": .object(["schema": .object(["type": .string("object")])])])
                ])
            }
            var item = paths[path]?.objectValue ?? [:]
            item[route.method.lowercased()] = .object(operation)
            paths[path] = .object(item)
        }
        return .object([
            "openapi": .string("3.1.0"),
            "info": .object([
                "title": .string("Edgetrail portal API"), "version": .string("1"),
                "description": .string(
                    "What the portal's pages do, for programs. Authenticate with 'Authorization: Bearer TOKEN' (an operator or viewer creates tokens on My Account); a token has its user's role. Errors are {\"error\": \"...\"}."
                ),
            ]),
            "servers": .array([.object(["url": .string("/")])]),
            "components": .object([
                "securitySchemes": .object(["bearer": .object(["type": .string("http"), "scheme": .string("bearer")])])
            ]),
            "security": .array([.object(["bearer": .array([])])]),
            "paths": .object(paths),
        ])
    }

    /// `/api/v1/users/:name` → `/api/v1/users/{name}` and its parameter names.
    static func openAPIPath(_ path: String) -> (String, [String]) {
        var parameters: [String] = []
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map { part -> String in
            guard part.hasPrefix(":") else { return String(part) }
            parameters.append(String(part.dropFirst()))
            return "{\(part.dropFirst())}"
        }
        return (parts.joined(separator: "/"), parameters)
    }
}

/// A JSON value, for documents whose shape is data.
public indirect enum OpenAPIValue: Encodable, Sendable, Equatable {
    case string(String)
    case bool(Bool)
    case array([OpenAPIValue])
    case object([String: OpenAPIValue])

    var objectValue: [String: OpenAPIValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}
