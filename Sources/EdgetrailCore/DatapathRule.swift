/// What the eBPF datapath does with traffic that matches a rule.
public enum DatapathAction: String, Sendable, CaseIterable, Hashable {
    /// Transparently steer into the pod carrying the label.
    case redirect
    /// Mirror to a tap pod; the original still reaches its destination.
    case copy
    /// Drop (counted).
    case deny
    /// Token bucket per rule, bytes per second.
    case ratelimit
}

/// `{ <ip> <port> : <action> => [labels] }`: one datapath rule of a CNF.
public struct DatapathRule: Hashable, Sendable {
    /// How many rules one datapath holds: the size of its rule maps (`ET_MAX_RULES` in
    /// `bpf/datapath.h`; a datapath test checks the two agree). A CNF is refused past it at
    /// validation, not when its rules reach the node.
    public static let maximumCount = 1024

    /// Destination address or network; `nil` matches any address (`*`).
    public var destination: IPPrefix?
    /// Destination port; `nil` matches any port (`*`).
    public var port: UInt16?
    public var action: DatapathAction
    /// Labels of the pods the action targets.
    public var labels: [String]
    /// Bytes per second, for `ratelimit`.
    public var rateBytesPerSecond: UInt64?

    public init(
        destination: IPPrefix?, port: UInt16?, action: DatapathAction, labels: [String] = [],
        rateBytesPerSecond: UInt64? = nil
    ) {
        self.destination = destination
        self.port = port
        self.action = action
        self.labels = labels
        self.rateBytesPerSecond = rateBytesPerSecond
    }

    /// The rule in the shorthand operators write.
    public var shorthand: String {
        var text = "\(destination?.description ?? "*") \(port.map(String.init) ?? "*") : \(action.rawValue)"
        if let rate = rateBytesPerSecond { text += " \(Self.format(rate: rate))" }
        if !labels.isEmpty { text += " => [\(labels.joined(separator: ", "))]" }
        return text
    }

    /// A rate as people write it: the largest whole decimal or binary unit (`10MB/s`,
    /// `64KiB/s`), else bytes (`1500B/s`). Reads back to the same number.
    public static func format(rate: UInt64) -> String {
        let units: [(UInt64, String)] = [
            (1_073_741_824, "GiB"), (1_000_000_000, "GB"), (1_048_576, "MiB"), (1_000_000, "MB"), (1024, "KiB"),
            (1000, "KB"),
        ]
        for (size, name) in units where rate >= size && rate % size == 0 {
            return "\(rate / size)\(name)/s"
        }
        return "\(rate)B/s"
    }
}
