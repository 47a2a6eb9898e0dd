import EdgetrailCNF
import EdgetrailCore
import Foundation

/// The command lines that run a pod: its μsrv and, when handlers are bound to its events, its
/// handler sidecar, each inside the pod's network namespace (`ip netns exec`). What they reach
/// outside the pod goes through Unix sockets (the filesystem crosses namespaces, 127.0.0.1 does
/// not): Redis, the node collector's OTLP receiver, the Datapath Manager, and the CNF's μsrvs'
/// sockets in one shared folder.
public struct PodCommands: Sendable, Equatable {
    public struct Paths: Sendable, Equatable {
        /// The `edgetrail` executable and the Python with the SDK.
        public var edgetrail: String
        public var python: String
        /// Where the CNF's μsrvs serve their sockets (`NAME.api.sock`, `NAME.events.sock`).
        public var socketDirectory: String
        /// The running version's spec (handler timeouts) and the pods' handler folders.
        public var spec: String
        public var handlerDirectory: String
        public var redisSocket: String
        public var otlpSocket: String
        public var datapathSocket: String
        /// clamd, for an anti-virus μsrv.
        public var clamdSocket: String

        public init(
            edgetrail: String, python: String, socketDirectory: String, spec: String, handlerDirectory: String,
            redisSocket: String, otlpSocket: String, datapathSocket: String, clamdSocket: String = ""
        ) {
            self.clamdSocket = clamdSocket
            self.edgetrail = edgetrail
            self.python = python
            self.socketDirectory = socketDirectory
            self.spec = spec
            self.handlerDirectory = handlerDirectory
            self.redisSocket = redisSocket
            self.otlpSocket = otlpSocket
            self.datapathSocket = datapathSocket
        }
    }

    public var microservice: [String]
    public var sidecar: [String]?

    /// A handler's file inside the pod's handler folder; a handler-only update rewrites it there,
    /// and the sidecar loads it between events.
    public static func handlerPath(_ handler: PodPlan.BoundHandler, of pod: PodPlan.Pod, in paths: Paths) -> String {
        "\(paths.handlerDirectory)/\(pod.name)/\(handler.podFileName)"
    }

    public init(pod: PodPlan.Pod, plan: PodPlan, datapath: [DatapathRule], paths: Paths) {
        let enter = ["/usr/sbin/ip", "netns", "exec", pod.namespace]
        var microservice =
            enter + [
                paths.edgetrail, "microservice", "run", pod.kind.rawValue, "--name", pod.name, "--cnf", paths.spec,
                "--run-dir", paths.socketDirectory, "--redis", paths.redisSocket, "--otlp", paths.otlpSocket,
            ]
        if pod.kind == .httpProxy {
            // Traffic the datapath redirects arrives for the origin's address and port: a
            // transparent listener on the port of the first rule that steers to this pod.
            let port =
                datapath.first { rule in
                    (rule.action == .redirect || rule.action == .copy) && !Set(rule.labels).isDisjoint(with: pod.microservice.labels)
                }?.port ?? 80
            microservice += ["--transparent", "--listen", "0.0.0.0:\(port)", "--datapath-socket", paths.datapathSocket]
        }
        if pod.kind == .antiVirus, !paths.clamdSocket.isEmpty { microservice += ["--clamd", paths.clamdSocket] }
        if let config = pod.microservice.config {
            // The version's folder holds the spec and every file it names.
            microservice += ["--config", "\((paths.spec as NSString).deletingLastPathComponent)/\(config)"]
        }
        self.microservice = microservice
        guard !pod.handlers.isEmpty else {
            sidecar = nil
            return
        }
        var sidecar =
            enter + [
                paths.python, "-m", "edgetrail.sidecar", "--microservice", pod.name, "--run-dir", paths.socketDirectory,
                "--cnf", plan.cnf, "--redis", paths.redisSocket, "--otlp", paths.otlpSocket,
            ]
        for peer in plan.peers { sidecar += ["--peer", peer] }
        for (key, value) in plan.settings.sorted(by: { $0.key < $1.key }) { sidecar += ["--setting", "\(key)=\(value)"] }
        for handler in pod.handlers {
            sidecar += ["--handler", "\(handler.event)=\(Self.handlerPath(handler, of: pod, in: paths))"]
        }
        self.sidecar = sidecar
    }
}
