/// Writes protobuf's binary wire format field by field, for the few messages on a hot path where
/// building the generated message first costs more than the encoding itself (a heap-allocated
/// message and a key-value message per attribute, each encoded after a size pass of its own).
///
/// Fields are written in the order they are called; protobuf readers accept any order. Like
/// proto3, the scalar writers skip a field whose value is the default (zero, empty), so what is
/// written is what the generated code would write. A nested message is written in place: its
/// body goes first, then its length is put in front of it (one move of the body when the length
/// needs more than one byte).
public struct ProtobufWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    private enum WireType: UInt64 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    public mutating func varint(_ value: UInt64) {
        Self.appendVarint(value, to: &bytes)
    }

    public static func appendVarint(_ value: UInt64, to buffer: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        buffer.append(UInt8(value))
    }

    private mutating func tag(_ field: Int, _ type: WireType) {
        varint(UInt64(field) << 3 | type.rawValue)
    }

    // `present`: write the field even when its value is the default, for a member of a oneof or
    // an optional field, whose presence says something.

    /// `uint64`, `uint32`, and enums (as their number).
    public mutating func uint64(_ field: Int, _ value: UInt64, present: Bool = false) {
        guard value != 0 || present else { return }
        tag(field, .varint)
        varint(value)
    }

    /// `int64` and `int32` (a negative value takes ten bytes, as protobuf says).
    public mutating func int64(_ field: Int, _ value: Int64, present: Bool = false) {
        uint64(field, UInt64(bitPattern: value), present: present)
    }

    public mutating func bool(_ field: Int, _ value: Bool, present: Bool = false) {
        uint64(field, value ? 1 : 0, present: present)
    }

    public mutating func fixed64(_ field: Int, _ value: UInt64, present: Bool = false) {
        guard value != 0 || present else { return }
        tag(field, .fixed64)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func fixed32(_ field: Int, _ value: UInt32, present: Bool = false) {
        guard value != 0 || present else { return }
        tag(field, .fixed32)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func double(_ field: Int, _ value: Double, present: Bool = false) {
        fixed64(field, value.bitPattern, present: present)
    }

    public mutating func string(_ field: Int, _ value: String, present: Bool = false) {
        var value = value
        value.withUTF8 { utf8 in
            guard !utf8.isEmpty || present else { return }
            tag(field, .lengthDelimited)
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    public mutating func bytes(_ field: Int, _ value: some Collection<UInt8>, present: Bool = false) {
        guard !value.isEmpty || present else { return }
        tag(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// A field holding bytes that are already a message's encoding.
    public mutating func encoded(_ field: Int, _ message: [UInt8]) {
        tag(field, .lengthDelimited)
        varint(UInt64(message.count))
        bytes.append(contentsOf: message)
    }

    /// A message field (written even when empty, as a set message field is), its body written by
    /// `body` on this writer.
    public mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        tag(field, .lengthDelimited)
        // One byte for the length, assumed; moved along when the body turns out longer.
        let lengthAt = bytes.count
        bytes.append(0)
        body(&self)
        let length = bytes.count - lengthAt - 1
        if length < 0x80 {
            bytes[lengthAt] = UInt8(length)
            return
        }
        var prefix = ProtobufWriter(capacity: 10)
        prefix.varint(UInt64(length))
        bytes.replaceSubrange(lengthAt..<(lengthAt + 1), with: prefix.bytes)
    }
}
