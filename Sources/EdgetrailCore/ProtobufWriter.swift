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

    /// An entry of a `map<string, string>` or `map<string, bytes>` field (key 1, value 2), its
    /// length worked out beforehand: maps are most of a span's fields.
    public mutating func mapEntry(_ field: Int, key: String, value: some Collection<UInt8>) {
        let keyCount = key.utf8.count
        let valueCount = value.count
        let length = 2 + Self.varintSize(UInt64(keyCount)) + keyCount + Self.varintSize(UInt64(valueCount)) + valueCount
        tag(field, .lengthDelimited)
        varint(UInt64(length))
        string(1, key, present: true)
        bytes(2, value, present: true)
    }

    static func varintSize(_ value: UInt64) -> Int {
        var value = value
        var size = 1
        while value >= 0x80 {
            value >>= 7
            size += 1
        }
        return size
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

/// Reads protobuf's binary wire format field by field: the counterpart of `ProtobufWriter`, for
/// messages the collector takes in by the thousand (OTLP export requests), where building the
/// generated message first costs more than what is done with it.
public struct ProtobufReader {
    public struct Malformed: Error, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    public enum WireType: UInt64 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    private let buffer: UnsafeRawBufferPointer
    private var at = 0

    public init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    /// The next field's number and wire type; nil at the end of the message.
    public mutating func next() throws(Malformed) -> (field: UInt64, type: WireType)? {
        guard at < buffer.count else { return nil }
        let tag = try varint()
        guard let type = WireType(rawValue: tag & 7) else {
            throw Malformed(description: "wire type \(tag & 7) (groups or worse) at byte \(at)")
        }
        guard tag >> 3 != 0 else { throw Malformed(description: "field number 0 at byte \(at)") }
        return (tag >> 3, type)
    }

    public mutating func varint() throws(Malformed) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while at < buffer.count, shift < 64 {
            let byte = buffer[at]
            at += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        throw Malformed(description: "varint cut short or too long at byte \(at)")
    }

    public mutating func fixed64() throws(Malformed) -> UInt64 {
        guard at + 8 <= buffer.count else { throw Malformed(description: "fixed64 cut short at byte \(at)") }
        defer { at += 8 }
        return UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }

    /// A length-delimited field's bytes (a string, bytes, or a message to read with a reader of
    /// its own).
    public mutating func bytes() throws(Malformed) -> UnsafeRawBufferPointer {
        let length = try varint()
        guard length <= UInt64(buffer.count - at) else { throw Malformed(description: "field longer than its message at byte \(at)") }
        defer { at += Int(length) }
        return UnsafeRawBufferPointer(rebasing: buffer[at..<(at + Int(length))])
    }

    /// A `string` field, which protobuf requires to be valid UTF-8.
    public mutating func string() throws(Malformed) -> String {
        let raw = try bytes().assumingMemoryBound(to: UInt8.self)
        // Nearly every string on this path is ASCII, which is valid as it is; the general
        // validating initializer costs several times the check.
        if raw.allSatisfy({ $0 < 0x80 }) { return String(decoding: raw, as: UTF8.self) }
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw Malformed(description: "a string field that is not UTF-8 before byte \(at)")
        }
        return text
    }

    /// Steps over a field this reader does not want.
    public mutating func skip(_ type: WireType) throws(Malformed) {
        switch type {
        case .varint: _ = try varint()
        case .fixed64: _ = try fixed64()
        case .lengthDelimited: _ = try bytes()
        case .fixed32:
            guard at + 4 <= buffer.count else { throw Malformed(description: "fixed32 cut short at byte \(at)") }
            at += 4
        }
    }
}
