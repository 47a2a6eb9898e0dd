import EdgetrailRuntime
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import NIOCore

/// What a browser session holds: who signed in and the token every form must carry back.
public struct PortalSession: Codable, Sendable {
    public var user: String
    public var csrf: String
    /// A message for the next page shown (after a form's redirect).
    public var flash: String?
}

public struct PortalContext: AuthRequestContext, SessionRequestContext, RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: PortalUser?
    public let sessions: SessionContext<PortalSession>
    /// The client's address, for the login limit.
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        identity = nil
        sessions = .init()
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "local"
    }
}

/// Who may use a route.
public enum Need: String, Sendable {
    /// Anyone (the login page, the OpenAPI document).
    case anyone
    /// Any signed-in user, viewer or operator.
    case signedIn
    /// Operators only.
    case `operator`
}

/// One route, as registered: the OpenAPI document and the security tests are made from this
/// list, so a route cannot exist without its declared need.
public struct RouteInfo: Sendable, Equatable {
    public var method: String
    /// Hummingbird's form: `/api/v1/users/:name`.
    public var path: String
    public var summary: String
    public var need: Need
    public var api: Bool
    public var mutating: Bool { method != "GET" }
}

/// The body of a form post or a JSON call, read once.
public struct Submission: Sendable {
    public let body: ByteBuffer
    public let isJSON: Bool

    /// A field of a form, or a top-level string of a JSON object.
    public func field(_ name: String) -> String? {
        if isJSON {
            guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else { return nil }
            return object[name] as? String
        }
        return Self.form(String(buffer: body))[name]
    }

    public func decode<T: Decodable>(_ type: T.Type) throws(PortalFailure) -> T {
        do {
            if isJSON { return try JSONDecoder().decode(type, from: Data(buffer: body)) }
            return try URLEncodedFormDecoder().decode(type, from: String(buffer: body))
        } catch {
            throw PortalFailure(status: 400, "the request's body is not what this call takes: \(error)")
        }
    }

    static func form(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            // Browsers send a textarea's line breaks as CRLF; the files the portal writes use LF.
            let decode = { (part: Substring) in
                (String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(part))
                    .replacingOccurrences(of: "\r\n", with: "\n")
            }
            fields[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }
}

/// Registers routes with their need checked before the handler runs. A route that changes
/// something (any method but GET) also needs, from a browser session, the session's CSRF token
/// (form field `csrf` or header `X-CSRF-Token`); API clients with a bearer token send their
/// credential explicitly, so they need none.
final class PortalRoutes: @unchecked Sendable {
    let router: Router<PortalContext>
    private(set) var routes: [RouteInfo] = []

    init(router: Router<PortalContext>) {
        self.router = router
    }

    /// Records a route registered directly (one that needs no check).
    func note(_ route: RouteInfo) {
        routes.append(route)
    }

    typealias ViewHandler = @Sendable (Request, PortalContext, PortalUser?) async throws -> Response
    typealias ChangeHandler = @Sendable (Request, PortalContext, PortalUser, Submission) async throws -> Response

    func view(_ path: String, api: Bool, summary: String, need: Need = .signedIn, _ handler: @escaping ViewHandler) {
        routes.append(RouteInfo(method: "GET", path: path, summary: summary, need: need, api: api))
        router.get(RouterPath(path)) { request, context in
            if need != .anyone {
                guard let user = context.identity else { return Self.unauthenticated(request, api: api) }
                if need == .operator, user.role != .operator { return Self.forbidden(api: api, user: user) }
            }
            return try await Self.answer(api: api) { try await handler(request, context, context.identity) }
        }
    }

    func change(
        _ method: HTTPRequest.Method, _ path: String, api: Bool, summary: String, need: Need, _ handler: @escaping ChangeHandler
    ) {
        precondition(need != .anyone, "a route that changes something needs a signed-in user")
        routes.append(RouteInfo(method: method.rawValue, path: path, summary: summary, need: need, api: api))
        router.on(RouterPath(path), method: method) { request, context in
            guard let user = context.identity else { return Self.unauthenticated(request, api: api) }
            var request = request
            let body = try await request.collectBody(upTo: context.maxUploadSize)
            let contentType = request.headers[.contentType] ?? ""
            let submission = Submission(body: body, isJSON: contentType.hasPrefix("application/json"))
            if !user.viaToken {
                let sent = request.headers[.csrfToken] ?? submission.field("csrf") ?? ""
                guard let expected = context.sessions.session?.csrf, !sent.isEmpty, Secrets.constantTimeEqual(sent, expected) else {
                    return Self.refuse(
                        403, api: api,
                        "this form is out of date or did not come from the portal (its CSRF token is missing or wrong); reload the page and try again")
                }
            }
            if need == .operator, user.role != .operator { return Self.forbidden(api: api, user: user) }
            return try await Self.answer(api: api) { try await handler(request, context, user, submission) }
        }
    }

    /// Runs a handler; a `PortalFailure` becomes its status with the message (JSON for the API,
    /// a page otherwise).
    static func answer(api: Bool, _ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let failure as PortalFailure {
            return refuse(failure.status, api: api, failure.description)
        } catch let failure as PortalStoreError {
            return refuse(400, api: api, failure.description)
        }
    }

    static func unauthenticated(_ request: Request, api: Bool) -> Response {
        if api {
            var response = refuse(401, api: true, "sign in first: send 'Authorization: Bearer TOKEN' (create a token on My Account)")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        let next = request.method == .get ? request.uri.description : "/"
        return redirect("/login?next=" + (next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/"))
    }

    static func forbidden(api: Bool, user: PortalUser) -> Response {
        refuse(403, api: api, "\(user.name) is a \(user.role.rawValue); only an operator may do this")
    }

    static func refuse(_ status: Int, api: Bool, _ message: String) -> Response {
        if api { return json(status, ["error": message]) }
        return html(status, Pages.error(status: status, message: message))
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    static func json(_ status: Int, _ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(
            status: .init(code: status), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func html(_ status: Int, _ page: HTML) -> Response {
        Response(
            status: .init(code: status), headers: [.contentType: "text/html; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: page.text)))
    }
}

extension HTTPField.Name {
    static let csrfToken = Self("X-CSRF-Token")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}

/// Headers on every answer: pages may not be framed, sniffed or load anything from elsewhere.
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = PortalContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.contentSecurityPolicy] =
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.referrerPolicy] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }
}

/// Who is asking: a bearer token (API clients) or the browser session's user. A deleted user's
/// session signs no one in.
struct PortalAuthenticator: AuthenticatorMiddleware {
    typealias Context = PortalContext
    let store: PortalStore

    func authenticate(request: Request, context: PortalContext) async throws -> PortalUser? {
        let store = self.store
        if let bearer = request.headers.bearer {
            let token = bearer.token
            return try await Blocking.run { try store.user(token: token) }
        }
        if let session = context.sessions.session {
            let name = session.user
            return try await Blocking.run { try store.user(named: name) }
        }
        return nil
    }
}
