import Testing

@testable import EdgetrailNodeAgent

/// How the node agent reads a sidecar's log for a pod's health: attached or not, and a handler
/// that cannot run.
@Suite("A sidecar's log, as the node agent reads it for health")
struct SidecarReportTests {
    @Test("attached after waiting; detached again when its μsrv goes; attached when it is back")
    func attachment() {
        var log = "waiting for http-proxy: nothing serves /run/x/http-proxy.events.sock yet\n"
        #expect(!NodeAgent.sidecarReport(text: log, microservice: "http-proxy").attached)
        log += "attached http-proxy events=request_received socket=/run/x/http-proxy.events.sock\n"
        #expect(NodeAgent.sidecarReport(text: log, microservice: "http-proxy") == .init(attached: true, problem: nil))
        log += "detached http-proxy: StatusCode.UNAVAILABLE; reattaching\n"
        #expect(!NodeAgent.sidecarReport(text: log, microservice: "http-proxy").attached)
        log += "attached http-proxy events=request_received socket=/run/x/http-proxy.events.sock\n"
        #expect(NodeAgent.sidecarReport(text: log, microservice: "http-proxy").attached)
    }

    @Test("another μsrv's name that starts the same is not this one's attachment")
    func otherMicroservice() {
        let log = "attached http-proxy-2 events=request_received socket=/run/x/http-proxy-2.events.sock\n"
        #expect(!NodeAgent.sidecarReport(text: log, microservice: "http-proxy").attached)
    }

    @Test("a handler that cannot run is the problem until a version of it loads")
    func handlerProblem() {
        let broken =
            "handler inspect_done.py (inspect_done) cannot run: /p/inspect_done.py:1: importing it raised ConnectionRefusedError: [Errno 111] Connection refused; its events get their default verdict until the file is fixed\n"
        var log = broken + "attached content-inspect events=inspect_done socket=/run/x/content-inspect.events.sock\n"
        let report = NodeAgent.sidecarReport(text: log, microservice: "content-inspect")
        #expect(report.attached)
        #expect(report.problem?.contains("ConnectionRefusedError") == true)
        log += "handler inspect_done.py (inspect_done) reloaded: version 1\n"
        #expect(NodeAgent.sidecarReport(text: log, microservice: "content-inspect").problem == nil)
    }
}
