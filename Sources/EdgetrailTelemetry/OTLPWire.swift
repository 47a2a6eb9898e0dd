import EdgetrailCore
import EdgetrailProto
import Foundation

/// OTLP export requests read straight from their bytes into Edgetrail spans.
///
/// Decoding a request into SwiftProtobuf's OTLP messages (a heap object per span, per attribute
/// and per value, visited through generic witnesses) and then converting those was a sixth of
/// the collector's CPU on a node. Reading the wire form builds only what the records keep. It
/// reads exactly what the generated decoder reads (checked request by request against it in
/// SpanConverterTests), and refuses what it refuses: a string that is not UTF-8, a message cut
/// short. A field of an unexpected wire type is skipped, as there.
extension SpanConverter {
    /// Reads an `ExportTraceServiceRequest` (opentelemetry/proto/collector/trace/v1).
    public static func read(exportRequest bytes: UnsafeRawBufferPointer) throws(ProtobufReader.Malformed) -> ReadExport {
        var export = ReadExport()
        var reader = ProtobufReader(bytes)
        while let (field, type) = try reader.next() {
            switch field {
            case 1 where type == .lengthDelimited:  // resource_spans
                let resource = try readResourceSpans(try reader.message(type))
                export.spanCount += resource.spans.count
                export.resources.append(resource)
            default: try reader.skip(type)
            }
        }
        return export
    }

    /// `ResourceSpans`: resource (1), scope_spans (2).
    private static func readResourceSpans(_ bytes: UnsafeRawBufferPointer) throws(ProtobufReader.Malformed) -> ReadResource {
        var resource = ReadResource(service: nil, cnf: nil)
        var reader = ProtobufReader(bytes)
        while let (field, type) = try reader.next() {
            switch field {
            case 1 where type == .lengthDelimited:  // Resource: attributes (1)
                var attributes = ProtobufReader(try reader.message(type))
                while let (field, type) = try attributes.next() {
                    guard field == 1, type == .lengthDelimited else {
                        try attributes.skip(type)
                        continue
                    }
                    let (key, value) = try readKeyValue(try attributes.message(type))
                    switch key {
                    case "service.name" where resource.service == nil: if case .string(let text) = value { resource.service = text }
                    case "edgetrail.cnf" where resource.cnf == nil: if case .string(let text) = value { resource.cnf = text }
                    case cookieAttributeKey where !resource.sawCookieAttribute: resource.set(cookieAttribute(value))
                    default: break
                    }
                }
            case 2 where type == .lengthDelimited:  // ScopeSpans: spans (2)
                var scope = ProtobufReader(try reader.message(type))
                while let (field, type) = try scope.next() {
                    if field == 2, type == .lengthDelimited { resource.spans.append(try readSpan(try scope.message(type))) } else { try scope.skip(type) }
                }
            default: try reader.skip(type)
            }
        }
        return resource
    }

    /// `Span`, into the fields an Edgetrail span keeps.
    private static func readSpan(_ bytes: UnsafeRawBufferPointer) throws(ProtobufReader.Malformed) -> ReadSpan {
        var span = Edgetrail_V1_Span()
        var cookie = CookieAttribute.missing
        var reader = ProtobufReader(bytes)
        while let (field, type) = try reader.next() {
            switch field {
            case 1 where type == .lengthDelimited: span.traceID = Data(try reader.bytes(type))
            case 2 where type == .lengthDelimited: span.spanID = Data(try reader.bytes(type))
            case 3 where type == .lengthDelimited: _ = try reader.string(type)  // trace_state
            case 4 where type == .lengthDelimited: span.parentSpanID = Data(try reader.bytes(type))
            case 5 where type == .lengthDelimited: span.operation = try reader.string(type)
            case 6 where type == .varint:
                span.kind =
                    switch try reader.varint(type) {
                    case 1: .internal
                    case 2: .server
                    case 3: .client
                    case 4: .producer
                    case 5: .consumer
                    default: .unspecified
                    }
            case 7 where type == .fixed64: span.startNs = try reader.fixed64(type)
            case 8 where type == .fixed64: span.endNs = try reader.fixed64(type)
            case 9 where type == .lengthDelimited:
                let (key, value) = try readKeyValue(try reader.message(type))
                if key == cookieAttributeKey, cookie == .missing { cookie = cookieAttribute(value) }
                span.tags[key] = value.text
            case 11 where type == .lengthDelimited:  // Event: time (1), name (2), attributes (3)
                var log = Edgetrail_V1_SpanLog()
                var event = ProtobufReader(try reader.message(type))
                while let (field, type) = try event.next() {
                    switch field {
                    case 1 where type == .fixed64: log.atNs = try event.fixed64(type)
                    case 2 where type == .lengthDelimited: log.name = try event.string(type)
                    case 3 where type == .lengthDelimited:
                        let (key, value) = try readKeyValue(try event.message(type))
                        log.fields[key] = value.text
                    default: try event.skip(type)
                    }
                }
                span.logs.append(log)
            case 15 where type == .lengthDelimited:  // Status: message (2), code (3)
                var status = ProtobufReader(try reader.message(type))
                while let (field, type) = try status.next() {
                    switch field {
                    case 2 where type == .lengthDelimited: span.statusMessage = try status.string(type)
                    case 3 where type == .varint:
                        span.status =
                            switch try status.varint(type) {
                            case 1: .ok
                            case 2: .error
                            default: .unset
                            }
                    default: try status.skip(type)
                    }
                }
            default: try reader.skip(type)
            }
        }
        return ReadSpan(span: span, attribute: cookie)
    }

    /// An attribute value as `convert` uses it: a string as itself, anything else as text.
    enum WireValue {
        case string(String)
        case other(String)

        var text: String {
            switch self {
            case .string(let text), .other(let text): text
            }
        }
    }

    /// `KeyValue`: key (1), value (2).
    private static func readKeyValue(_ bytes: UnsafeRawBufferPointer) throws(ProtobufReader.Malformed) -> (String, WireValue) {
        var key = ""
        var value = WireValue.other("")
        var reader = ProtobufReader(bytes)
        while let (field, type) = try reader.next() {
            switch field {
            case 1 where type == .lengthDelimited: key = try reader.string(type)
            case 2 where type == .lengthDelimited: value = try readAnyValue(try reader.message(type))
            default: try reader.skip(type)
            }
        }
        return (key, value)
    }

    /// `AnyValue`, a oneof (the last member present wins), written as `text(_:)` writes it.
    private static func readAnyValue(_ bytes: UnsafeRawBufferPointer) throws(ProtobufReader.Malformed) -> WireValue {
        var value = WireValue.other("")
        var reader = ProtobufReader(bytes)
        while let (field, type) = try reader.next() {
            switch field {
            case 1 where type == .lengthDelimited: value = .string(try reader.string(type))
            case 2 where type == .varint: value = .other(try reader.varint(type) != 0 ? "true" : "false")
            case 3 where type == .varint: value = .other(String(Int64(bitPattern: try reader.varint(type))))
            case 4 where type == .fixed64: value = .other(String(Double(bitPattern: try reader.fixed64(type))))
            case 5 where type == .lengthDelimited:  // ArrayValue: values (1)
                var texts: [String] = []
                var array = ProtobufReader(try reader.message(type))
                while let (field, type) = try array.next() {
                    if field == 1, type == .lengthDelimited { texts.append(try readAnyValue(try array.message(type)).text) } else { try array.skip(type) }
                }
                value = .other("[" + texts.joined(separator: ",") + "]")
            case 6 where type == .lengthDelimited:  // KeyValueList: values (1)
                var pairs: [String] = []
                var list = ProtobufReader(try reader.message(type))
                while let (field, type) = try list.next() {
                    if field == 1, type == .lengthDelimited {
                        let (key, item) = try readKeyValue(try list.message(type))
                        pairs.append("\(key)=\(item.text)")
                    } else {
                        try list.skip(type)
                    }
                }
                value = .other("{" + pairs.joined(separator: ",") + "}")
            case 7 where type == .lengthDelimited: value = .other(Data(try reader.bytes(type)).base64EncodedString())
            case 8 where type == .varint: value = .other("#\(Int32(truncatingIfNeeded: try reader.varint(type)))")
            default: try reader.skip(type)
            }
        }
        return value
    }

    /// What an `edgetrail.cookie` value holds, read from the wire or decoded.
    static func cookieAttribute(_ value: WireValue) -> CookieAttribute {
        switch value {
        case .string(let text):
            if let cookie = Cookie(hex: text) { return .cookie(cookie.rawValue) }
            return .malformed(reason: "not_16_hex_digits", value: String(text.prefix(64)))
        case .other(let text):
            return .malformed(reason: "not_a_string", value: String(text.prefix(64)))
        }
    }
}

extension ProtobufReader {
    // Each `case N where type == …` above sends a field of another wire type to `skip`: the
    // generated decoder keeps such a field as unknown and reads on, and so does this reader.

    fileprivate mutating func bytes(_ type: WireType) throws(Malformed) -> UnsafeRawBufferPointer { try bytes() }
    fileprivate mutating func string(_ type: WireType) throws(Malformed) -> String { try string() }
    fileprivate mutating func varint(_ type: WireType) throws(Malformed) -> UInt64 { try varint() }
    fileprivate mutating func fixed64(_ type: WireType) throws(Malformed) -> UInt64 { try fixed64() }
    fileprivate mutating func message(_ type: WireType) throws(Malformed) -> UnsafeRawBufferPointer { try bytes() }
}
