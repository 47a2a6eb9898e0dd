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
        if let rate = rateBytesPerSecond { text += " \(rate)B/s" }
        if !labels.isEmpty { text += " => [\(labels.joined(separator: ", "))]" }
        return text
    }
}
