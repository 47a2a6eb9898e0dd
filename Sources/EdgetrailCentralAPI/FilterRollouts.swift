/// `GET /v1/filters[?name=]`: the rule sets published for edge collectors and where each stands
/// per node, from the control and status topics (what `edgetrail filters status` prints).
public struct FilterRollouts: Codable, Sendable, Equatable {
    public struct Rollout: Codable, Sendable, Equatable {
        public var name: String
        /// The newest version published.
        public var version: Int
        public var selector: String
        public var author: String
        public var publishedAtNs: UInt64
        /// Each node's last answer, by node name.
        public var nodes: [Answer]

        public init(name: String, version: Int, selector: String, author: String, publishedAtNs: UInt64, nodes: [Answer]) {
            self.name = name
            self.version = version
            self.selector = selector
            self.author = author
            self.publishedAtNs = publishedAtNs
            self.nodes = nodes
        }
    }

    public struct Answer: Codable, Sendable, Equatable {
        public var node: String
        public var cnf: String
        public var version: Int
        /// `applied` or `refused`.
        public var outcome: String
        public var errors: [String]
        public var atNs: UInt64

        public init(node: String, cnf: String, version: Int, outcome: String, errors: [String], atNs: UInt64) {
            self.node = node
            self.cnf = cnf
            self.version = version
            self.outcome = outcome
            self.errors = errors
            self.atNs = atNs
        }
    }

    public var rollouts: [Rollout]

    public init(rollouts: [Rollout]) {
        self.rollouts = rollouts
    }
}
