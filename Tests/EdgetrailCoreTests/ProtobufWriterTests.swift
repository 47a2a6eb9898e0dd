import EdgetrailCore
import Testing

@Suite("Protobuf's wire format written by hand")
struct ProtobufWriterTests {
    @Test("fields are written as the protobuf encoding guide's examples show them")
    func guideExamples() {
        var writer = ProtobufWriter()
        writer.uint64(1, 150)
        #expect(writer.bytes == [0x08, 0x96, 0x01])

        writer = ProtobufWriter()
        writer.string(2, "testing")
        #expect(writer.bytes == [0x12, 0x07] + Array("testing".utf8))

        writer = ProtobufWriter()
        writer.message(3) { $0.uint64(1, 150) }
        #expect(writer.bytes == [0x1a, 0x03, 0x08, 0x96, 0x01])

        writer = ProtobufWriter()
        writer.int64(1, -2)
        #expect(writer.bytes == [0x08, 0xfe] + Array(repeating: 0xff, count: 8) + [0x01], "a negative int64 takes ten bytes")

        writer = ProtobufWriter()
        writer.fixed64(7, 1)
        writer.fixed32(16, 1)
        writer.double(4, 1.0)
        #expect(writer.bytes == [0x39, 1, 0, 0, 0, 0, 0, 0, 0] + [0x85, 0x01, 1, 0, 0, 0] + [0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])
    }

    @Test("a default value is left out unless its presence says something (a oneof member)")
    func defaults() {
        var writer = ProtobufWriter()
        writer.uint64(1, 0)
        writer.string(2, "")
        writer.bool(3, false)
        writer.double(4, 0)
        writer.bytes(5, [UInt8]())
        #expect(writer.bytes.isEmpty)
        writer.string(1, "", present: true)
        writer.bool(2, false, present: true)
        writer.int64(3, 0, present: true)
        writer.double(4, 0, present: true)
        #expect(writer.bytes == [0x0a, 0x00, 0x10, 0x00, 0x18, 0x00, 0x21, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("a nested message longer than 127 bytes gets its two-byte length in front, its body intact")
    func longNestedMessage() {
        let text = String(repeating: "x", count: 300)
        var writer = ProtobufWriter(capacity: 0)
        writer.uint64(1, 1)
        writer.message(2) { inner in
            inner.string(1, text)
            inner.message(2) { $0.uint64(1, 7) }
        }
        writer.uint64(3, 9)
        // body: 0a ac 02 <300 x> 12 02 08 07 = 3 + 300 + 4 = 307 = 0xb3 0x02
        #expect(Array(writer.bytes.prefix(5)) == [0x08, 0x01, 0x12, 0xb3, 0x02])
        #expect(Array(writer.bytes[5..<8]) == [0x0a, 0xac, 0x02])
        #expect(writer.bytes[8..<308].allSatisfy { $0 == UInt8(ascii: "x") })
        #expect(Array(writer.bytes.suffix(6)) == [0x12, 0x02, 0x08, 0x07, 0x18, 0x09])
        #expect(writer.bytes.count == 2 + 3 + 307 + 2)
    }
}
