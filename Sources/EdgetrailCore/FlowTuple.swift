/// A connection as the datapath keys it: oriented client to server.
public struct FlowTuple: Hashable, Sendable, CustomStringConvertible {
    public var source: [UInt8]
    public var destination: [UInt8]
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// IP protocol number (6 TCP, 17 UDP).
    public var proto: UInt8

    public init(source: [UInt8], destination: [UInt8], sourcePort: UInt16, destinationPort: UInt16, proto: UInt8) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.proto = proto
    }

    public var description: String {
        "\(IPPrefix.format(source)):\(sourcePort) -> \(IPPrefix.format(destination)):\(destinationPort) proto \(proto)"
    }
}
