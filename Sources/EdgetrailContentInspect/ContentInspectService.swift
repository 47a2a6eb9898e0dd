import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailProto
import Foundation
import GRPCCore
import Tracing

/// content-inspect's API: `Inspect` sniffs the body's real type, size, SHA-256 and categories,
/// keeps them in the session's state (`cookie:<hex>:<μsrv>:result`), and raises `inspect_done`
/// (sync): its handler may deny the body (say, after asking anti-virus), which the result carries.
public struct ContentInspectService: Edgetrail_V1_ContentInspect.SimpleServiceProtocol {
    let kit: MicroserviceKit
    /// Bodies above this many bytes go to the handler cut to it (the report covers all of it).
    let payloadLimit: Int

    public init(kit: MicroserviceKit, payloadLimit: Int = 1 << 20) {
        self.kit = kit
        self.payloadLimit = payloadLimit
    }

    public func inspect(request: Edgetrail_V1_InspectRequest, context: ServerContext) async throws
        -> Edgetrail_V1_InspectResult
    {
        var serviceContext = ServiceContext.current ?? .topLevel
        let cookie = try sessionCookie(request.cookie, &serviceContext)
        let report = ContentSniffer.inspect(request.body, declaredType: request.contentType)
        var result = Edgetrail_V1_InspectResult()
        result.categories = report.categories
        result.needsScan = report.needsScan
        result.size = UInt64(report.size)
        result.sniffedType = report.sniffedType
        result.sha256 = report.sha256
        result.decision = .allow
        let attributes = [
            "content.categories": report.categories.joined(separator: ","), "content.type": report.sniffedType,
            "content.declared_type": request.contentType, "content.size": "\(report.size)",
            "content.sha256": report.sha256, "content.needs_scan": "\(report.needsScan)",
        ]
        let outcome = await kit.raise(
            "inspect_done", context: serviceContext, attributes: attributes, payload: request.body.prefix(payloadLimit))
        if outcome.verdict.denied {
            result.decision = .deny
            result.reason = outcome.verdict.reason.isEmpty ? "denied by the inspect_done handler" : outcome.verdict.reason
        }
        kit.state.set(
            cookie, "result",
            [
                ("categories", result.categories.joined(separator: ",")), ("type", report.sniffedType),
                ("sha256", report.sha256), ("size", "\(report.size)"), ("decision", result.decision == .deny ? "deny" : "allow"),
            ])
        return result
    }
}
