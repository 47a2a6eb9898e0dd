import EdgetrailClamAV
import EdgetrailCore
import EdgetrailMicroservice
import EdgetrailProto
import EdgetrailRuntime
import Foundation
import GRPCCore
import Synchronization
import Tracing

/// anti-virus: the legacy-function adapter. `Scan` streams the body to a real clamd over its Unix
/// socket (INSTREAM) and answers infected / signature / engine; then raises `scan_done` (sync),
/// whose handler may overrule the decision (deny when infected, allow when clean). clamd down or
/// slow is an error that says so (`unavailable`, `deadlineExceeded`): never a hang, never "clean".
public final class AntiVirusService: Edgetrail_V1_AntiVirus.SimpleServiceProtocol, Sendable {
    let kit: MicroserviceKit
    let clamd: ClamAVClient
    private let engine = Mutex<String?>(nil)

    public init(kit: MicroserviceKit, clamd: ClamAVClient) {
        self.kit = kit
        self.clamd = clamd
    }

    public func scan(request: Edgetrail_V1_ScanRequest, context: ServerContext) async throws -> Edgetrail_V1_ScanResult {
        var serviceContext = ServiceContext.current ?? .topLevel
        let cookie = try sessionCookie(request.cookie, &serviceContext)
        let clamd = self.clamd
        let body = [UInt8](request.body)
        let span = kit.tracer.startSpan("clamd INSTREAM", context: serviceContext, ofKind: .client)
        span.setAttribute("clamd.socket", .string(clamd.socketPath))
        span.setAttribute("scan.size", .int64(Int64(body.count)))
        let verdict: ScanVerdict
        let engine: String
        do {
            (verdict, engine) = try await Blocking.run { [known = self.engine.withLock { $0 }] in
                (try clamd.scan(body), try known ?? clamd.version())
            }
            self.engine.withLock { $0 = engine }
            span.end()
        } catch {
            span.recordError(error)
            span.end()
            throw Self.explain(error, clamd: clamd)
        }
        var result = Edgetrail_V1_ScanResult()
        result.engine = engine
        if case .infected(let signature) = verdict {
            result.infected = true
            result.signature = signature
        }
        let attributes = [
            "scan.infected": "\(result.infected)", "scan.signature": result.signature, "scan.engine": engine,
            "scan.name": request.name, "scan.size": "\(body.count)",
        ]
        let outcome = await kit.raise("scan_done", context: serviceContext, attributes: attributes)
        switch outcome {
        case .answered(let handler):
            result.decision = handler.denied ? .deny : .allow
            result.reason = handler.reason
        default:
            result.decision = result.infected ? .deny : .allow
        }
        if result.decision == .deny, result.reason.isEmpty {
            result.reason = result.infected ? "malware found: \(result.signature)" : "denied by the scan_done handler"
        }
        kit.state.set(
            cookie, "scan",
            [("infected", "\(result.infected)"), ("signature", result.signature), ("engine", engine), ("name", request.name)])
        return result
    }

    /// The gRPC error a caller gets when clamd could not scan, with the cause and what to do.
    static func explain(_ error: any Error, clamd: ClamAVClient) -> RPCError {
        switch (error as? ClamAVError)?.kind {
        case .timedOut:
            RPCError(code: .deadlineExceeded, message: "cannot scan: \(error)")
        case .tooLarge:
            RPCError(code: .resourceExhausted, message: "cannot scan: \(error)")
        case .unreachable:
            RPCError(code: .unavailable, message: "cannot scan: \(error)")
        default:
            RPCError(code: .internalError, message: "cannot scan: \(error)")
        }
    }
}
