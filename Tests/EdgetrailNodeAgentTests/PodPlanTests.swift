import EdgetrailCNF
import EdgetrailCore
import EdgetrailNode
import EdgetrailNodeAgent
import Foundation
import Testing

/// How the node agent lays a CNF onto a node, and what an update does to the pods in force.
@Suite("Pod plans and updates")
struct PodPlanTests {
    func spec(_ microservices: [(String, MicroserviceKind)], handlers: [Handler] = [], settings: [String: String] = [:])
        -> CNFSpec
    {
        CNFSpec(
            name: "edgesecurity", node: "edge-1",
            microservices: microservices.map { Microservice(name: $0.0, kind: $0.1, labels: [$0.0], events: $0.1.events) },
            handlers: handlers,
            datapath: [DatapathRule(destination: IPPrefix("10.201.0.2/32"), port: 80, action: .redirect, labels: ["http-proxy"])],
            settings: settings)
    }

    let base: [(String, MicroserviceKind)] = [
        ("http-proxy", .httpProxy), ("policy-mgr", .policyManager), ("content-inspect", .contentInspect),
    ]
    let onRequest = Handler(microservice: "http-proxy", event: "request_received", file: "handlers/on_request.py", timeoutMilliseconds: 500)
    let onInspect = Handler(microservice: "content-inspect", event: "inspect_done", file: "handlers/on_inspect.py")
    let sources = [
        "handlers/on_request.py": Data("def handle(event, ctx): pass\n".utf8),
        "handlers/on_inspect.py": Data("def handle(event, ctx): pass\n".utf8),
    ]

    @Test("each μsrv gets a pod on its own subnet, named after the node, the CNF and the μsrv, with its handlers")
    func plan() throws {
        let plan = try PodPlan.make(spec(base, handlers: [onRequest, onInspect]), sources: sources)
        #expect(plan.pods.map(\.index) == [1, 2, 3])
        let proxy = try #require(plan.pod(named: "http-proxy"))
        #expect(proxy.namespace == "edge-1-edgesecurity-http-proxy")
        #expect(proxy.address == "10.250.1.2" && proxy.gateway == "10.250.1.1")
        #expect(
            proxy.link
                == EdgeNodeNamespaces.PodLink(
                    namespace: "edge-1-edgesecurity-http-proxy", index: 1, nodeInterface: "etp1", podInterface: "etq1"))
        #expect(proxy.handlers.map(\.event) == ["request_received"])
        #expect(proxy.handlers.first?.timeoutMilliseconds == 500)
        #expect(plan.pod(named: "policy-mgr")?.handlers.isEmpty == true)
        #expect(plan.peers == ["http-proxy=http-proxy", "policy-mgr=policy-mgr", "content-inspect=content-inspect"])
    }

    @Test("a handler file the deployment does not carry is refused, naming it")
    func missingSource() {
        #expect(throws: PlanError("the deployment lacks the file handlers/on_request.py")) {
            try PodPlan.make(spec(base, handlers: [onRequest]), sources: [:])
        }
    }

    @Test("across an update pods keep their subnets; a new μsrv takes the lowest one free, skipping other CNFs'")
    func indexesKept() throws {
        let first = try PodPlan.make(spec(base), sources: [:])
        let second = try PodPlan.make(
            spec([("http-proxy", .httpProxy), ("content-inspect", .contentInspect), ("anti-virus", .antiVirus)]), sources: [:],
            current: first, taken: [4])
        #expect(second.pods.map { "\($0.name)@\($0.index)" } == ["http-proxy@1", "content-inspect@3", "anti-virus@2"])
        let third = try PodPlan.make(spec(base + [("anti-virus", .antiVirus)]), sources: [:], current: first, taken: [4])
        #expect(third.pod(named: "anti-virus")?.index == 5)
    }

    @Test("the demo's update 1: anti-virus starts, content-inspect only gets new handler code, the rest runs on")
    func addAntiVirus() throws {
        let old = try PodPlan.make(spec(base, handlers: [onRequest, onInspect]), sources: sources)
        var newSources = sources
        newSources["handlers/on_inspect.py"] = Data("from edgetrail.sdk import anti_virus\ndef handle(event, ctx): pass\n".utf8)
        let new = try PodPlan.make(
            spec(base + [("anti-virus", .antiVirus)], handlers: [onRequest, onInspect]), sources: newSources, current: old)
        let update = UpdatePlan(from: old, to: new, oldRules: [], newRules: [])
        #expect(update.change(of: "content-inspect") == .swapHandlers)
        #expect(update.change(of: "anti-virus") == .start)
        #expect(update.change(of: "http-proxy") == .unchanged)
        #expect(update.change(of: "policy-mgr") == .unchanged)
        #expect(update.rulesChanged, "a new pod: the rules are applied again with it")
        #expect(!update.swapsHandlersOnly)
    }

    @Test("the demo's update 2: binding a handler to policy_check restarts policy-mgr; a removed μsrv stops")
    func moveScan() throws {
        let old = try PodPlan.make(spec(base + [("anti-virus", .antiVirus)], handlers: [onRequest, onInspect]), sources: sources)
        let onCheck = Handler(microservice: "policy-mgr", event: "policy_check", file: "handlers/on_check.py")
        var newSources = sources
        newSources["handlers/on_check.py"] = Data("def handle(event, ctx): pass\n".utf8)
        let new = try PodPlan.make(spec(base, handlers: [onRequest, onInspect, onCheck]), sources: newSources, current: old)
        let update = UpdatePlan(from: old, to: new, oldRules: [], newRules: [])
        #expect(update.change(of: "policy-mgr") == .restart)
        #expect(update.change(of: "content-inspect") == .unchanged)
        #expect(update.change(of: "anti-virus") == .stop)
    }

    @Test("an update that changes only handler code swaps handlers and nothing else; a timeout or a setting restarts")
    func onlyCode() throws {
        let old = try PodPlan.make(spec(base, handlers: [onRequest]), sources: sources)
        var edited = sources
        edited["handlers/on_request.py"] = Data("def handle(event, ctx):\n    return None\n".utf8)
        let new = try PodPlan.make(spec(base, handlers: [onRequest]), sources: edited, current: old)
        #expect(UpdatePlan(from: old, to: new, oldRules: [], newRules: []).swapsHandlersOnly)
        var slower = onRequest
        slower.timeoutMilliseconds = 900
        let retimed = try PodPlan.make(spec(base, handlers: [slower]), sources: sources, current: old)
        #expect(UpdatePlan(from: old, to: retimed, oldRules: [], newRules: []).change(of: "http-proxy") == .restart)
        let configured = try PodPlan.make(spec(base, handlers: [onRequest], settings: ["scan": "true"]), sources: sources, current: old)
        #expect(UpdatePlan(from: old, to: configured, oldRules: [], newRules: []).change(of: "http-proxy") == .restart)
        #expect(UpdatePlan(from: old, to: old, oldRules: [], newRules: []).changes.allSatisfy { $0.change == .unchanged })
    }
}

@Suite("Restart back-off")
struct RestartBackoffTests {
    @Test("a process that keeps failing waits twice as long each time, up to the maximum; one that ran a while starts over")
    func backoff() {
        var backoff = RestartBackoff(initial: .milliseconds(500), maximum: .seconds(4), stableAfter: .seconds(60))
        let delays = (0..<6).map { _ in backoff.exited(after: .seconds(1)) }
        #expect(delays == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(4), .seconds(4)])
        #expect(backoff.exited(after: .seconds(90)) == .milliseconds(500))
        #expect(backoff.restarts == 7)
    }
}

@Suite("Pod command lines")
struct PodCommandsTests {
    let paths = PodCommands.Paths(
        edgetrail: "/opt/edgetrail", python: "/opt/venv/bin/python", socketDirectory: "/run/n/pods/edgesecurity",
        spec: "/run/n/cnfs/edgesecurity/v1/cnf.yaml", handlerDirectory: "/run/n/cnfs/edgesecurity/handlers",
        redisSocket: "/run/redis.sock", otlpSocket: "/run/n/otlp.sock", datapathSocket: "/run/n/datapath.sock",
        clamdSocket: "/run/clamd.sock")

    @Test("the proxy runs transparently on the redirected port inside its pod; its sidecar knows the CNF's μsrvs, settings and handlers")
    func proxyPod() throws {
        let spec = CNFSpec(
            name: "edgesecurity", node: "edge-1",
            microservices: [
                Microservice(name: "http-proxy", kind: .httpProxy, labels: ["web"], events: MicroserviceKind.httpProxy.events),
                Microservice(name: "policy-mgr", kind: .policyManager, labels: ["policy-mgr"], events: ["policy_check"]),
            ],
            handlers: [Handler(microservice: "http-proxy", event: "request_received", file: "handlers/on_request.py")],
            datapath: [DatapathRule(destination: IPPrefix("10.201.0.2/32"), port: 8080, action: .redirect, labels: ["web"])],
            settings: ["scan": "true"])
        let plan = try PodPlan.make(spec, sources: ["handlers/on_request.py": Data()])
        let proxy = PodCommands(pod: plan.pods[0], plan: plan, datapath: spec.datapath, paths: paths)
        #expect(
            proxy.microservice == [
                "/usr/sbin/ip", "netns", "exec", "edge-1-edgesecurity-http-proxy", "/opt/edgetrail", "microservice", "run",
                "http-proxy", "--name", "http-proxy", "--cnf", paths.spec, "--run-dir", paths.socketDirectory, "--redis",
                paths.redisSocket, "--otlp", paths.otlpSocket, "--transparent", "--listen", "0.0.0.0:8080",
                "--datapath-socket", paths.datapathSocket,
            ])
        #expect(
            proxy.sidecar == [
                "/usr/sbin/ip", "netns", "exec", "edge-1-edgesecurity-http-proxy", "/opt/venv/bin/python", "-m",
                "edgetrail.sidecar", "--microservice", "http-proxy", "--run-dir", paths.socketDirectory, "--cnf",
                "edgesecurity", "--redis", paths.redisSocket, "--otlp", paths.otlpSocket, "--peer", "http-proxy=http-proxy",
                "--peer", "policy-mgr=policy-mgr", "--setting", "scan=true", "--handler",
                "request_received=/run/n/cnfs/edgesecurity/handlers/http-proxy/request_received.py",
            ])
        let policy = PodCommands(pod: plan.pods[1], plan: plan, datapath: spec.datapath, paths: paths)
        #expect(policy.sidecar == nil, "no handler bound: no sidecar")
        #expect(!policy.microservice.contains("--transparent"))
        #expect(!policy.microservice.contains("--clamd"))
    }

    @Test("a μsrv with a settings file runs with the version's copy; a changed file restarts it, a changed handler does not")
    func settingsFile() throws {
        var policy = Microservice(name: "policy-mgr", kind: .policyManager, labels: ["policy-mgr"], events: ["policy_check"])
        policy.config = "rules/policy.yaml"
        let spec = CNFSpec(
            name: "edgesecurity", node: "edge-1", microservices: [policy],
            handlers: [Handler(microservice: "policy-mgr", event: "policy_check", file: "on_policy.py")], datapath: [])
        let sources = ["rules/policy.yaml": Data("policy: {default: allow}\n".utf8), "on_policy.py": Data("a".utf8)]
        let plan = try PodPlan.make(spec, sources: sources)
        let commands = PodCommands(pod: plan.pods[0], plan: plan, datapath: [], paths: paths)
        #expect(Array(commands.microservice.suffix(2)) == ["--config", "/run/n/cnfs/edgesecurity/v1/rules/policy.yaml"])
        #expect(throws: PlanError("the deployment lacks the file rules/policy.yaml")) {
            try PodPlan.make(spec, sources: ["on_policy.py": Data()])
        }
        var edited = sources
        edited["rules/policy.yaml"] = Data("policy: {default: deny}\n".utf8)
        let stricter = try PodPlan.make(spec, sources: edited, current: plan)
        #expect(UpdatePlan(from: plan, to: stricter, oldRules: [], newRules: []).change(of: "policy-mgr") == .restart)
        var handler = sources
        handler["on_policy.py"] = Data("b".utf8)
        let swapped = try PodPlan.make(spec, sources: handler, current: plan)
        #expect(UpdatePlan(from: plan, to: swapped, oldRules: [], newRules: []).change(of: "policy-mgr") == .swapHandlers)
    }

    @Test("an anti-virus pod is told where clamd is")
    func antiVirusPod() throws {
        let spec = CNFSpec(
            name: "scan", node: "edge-1",
            microservices: [Microservice(name: "av", kind: .antiVirus, labels: ["av"], events: ["scan_done"])], handlers: [],
            datapath: [])
        let plan = try PodPlan.make(spec, sources: [:])
        let commands = PodCommands(pod: plan.pods[0], plan: plan, datapath: [], paths: paths)
        #expect(Array(commands.microservice.suffix(2)) == ["--clamd", "/run/clamd.sock"])
    }
}
