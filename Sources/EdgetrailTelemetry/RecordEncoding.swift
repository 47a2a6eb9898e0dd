import EdgetrailCore
import EdgetrailProto
import Foundation

/// A record written to protobuf's wire form field by field. Every record the collector takes in
/// is encoded once, for its intake journal and the batch it ships in; SwiftProtobuf's generic
/// encoder walks each message twice (sizes, then bytes) through visitor witnesses and sorts
/// nothing it need not, which made this encoding a tenth of the collector's CPU. The bytes decode
/// to the same record (checked against SwiftProtobuf for every field in RecordWireTests).
///
/// Records carrying fields this build does not know (read back from a newer journal) are left to
/// SwiftProtobuf, which keeps them.
extension Edgetrail_V1_Record {
    /// The record's protobuf bytes.
    func wireBytes() -> [UInt8] {
        guard !carriesUnknownFields else { return (try? serializedBytes()) ?? [] }
        var writer = ProtobufWriter(capacity: estimatedSize)
        writer.fixed64(1, cookie)
        writer.string(2, cnf)
        writer.string(3, node)
        writer.string(4, service)
        writer.fixed64(5, acceptedAtNs)
        switch kind {
        case .span(let span): writer.message(10) { span.write(to: &$0) }
        case .flow(let flow): writer.message(11) { flow.write(to: &$0) }
        case .snapshot(let snapshot): writer.message(12) { snapshot.write(to: &$0) }
        case nil: break
        }
        return writer.bytes
    }

    private var carriesUnknownFields: Bool {
        guard unknownFields.data.isEmpty else { return true }
        switch kind {
        case .span(let span):
            return !span.unknownFields.data.isEmpty || span.logs.contains { !$0.unknownFields.data.isEmpty }
        case .flow(let flow):
            return !flow.unknownFields.data.isEmpty || !flow.tuple.unknownFields.data.isEmpty
        case .snapshot(let snapshot):
            return !snapshot.unknownFields.data.isEmpty || !snapshot.hashFields.unknownFields.data.isEmpty
        case nil:
            return false
        }
    }

    /// Enough for most records at once (the writer grows past it when needed).
    private var estimatedSize: Int {
        switch kind {
        case .span(let span): 128 + span.tags.count * 48 + span.logs.count * 64
        case .snapshot(let snapshot): 128 + snapshot.stringValue.count + snapshot.hashFields.fields.count * 48
        default: 160
        }
    }
}

extension Edgetrail_V1_Span {
    fileprivate func write(to writer: inout ProtobufWriter) {
        writer.bytes(1, traceID)
        writer.bytes(2, spanID)
        writer.bytes(3, parentSpanID)
        writer.string(4, operation)
        writer.fixed64(5, startNs)
        writer.fixed64(6, endNs)
        writer.uint64(7, UInt64(truncatingIfNeeded: status.rawValue))
        writer.string(8, statusMessage)
        writer.uint64(9, UInt64(truncatingIfNeeded: kind.rawValue))
        writeMap(10, tags, to: &writer)
        for log in logs {
            writer.message(11) { body in
                body.fixed64(1, log.atNs)
                body.string(2, log.name)
                writeMap(3, log.fields, to: &body)
            }
        }
        writeMap(12, baggage, to: &writer)
    }
}

extension Edgetrail_V1_FlowEvent {
    fileprivate func write(to writer: inout ProtobufWriter) {
        writer.uint64(1, UInt64(truncatingIfNeeded: phase.rawValue))
        if hasTuple {
            writer.message(2) { body in
                body.bytes(1, tuple.srcIp)
                body.bytes(2, tuple.dstIp)
                body.uint64(3, UInt64(tuple.srcPort))
                body.uint64(4, UInt64(tuple.dstPort))
                body.uint64(5, UInt64(tuple.protocol))
            }
        }
        writer.uint64(3, UInt64(truncatingIfNeeded: action.rawValue))
        writer.uint64(4, UInt64(ruleID))
        writer.uint64(5, packetsIn)
        writer.uint64(6, packetsOut)
        writer.uint64(7, bytesIn)
        writer.uint64(8, bytesOut)
        writer.uint64(9, drops)
        writer.fixed64(10, startNs)
        writer.fixed64(11, endNs)
        writer.uint64(12, UInt64(truncatingIfNeeded: endReason.rawValue))
        writer.uint64(13, lostEvents)
    }
}

extension Edgetrail_V1_Snapshot {
    fileprivate func write(to writer: inout ProtobufWriter) {
        writer.string(1, key)
        switch value {
        // A member of a oneof is written even when empty: its presence is the information.
        case .stringValue(let bytes): writer.bytes(2, bytes, present: true)
        case .hashFields(let hash):
            writer.message(3) { body in
                for (name, bytes) in hash.fields { body.mapEntry(1, key: name, value: bytes) }
            }
        case nil: break
        }
        writer.bool(4, deleted)
        writer.string(5, event)
        writer.fixed64(6, atNs)
        writer.string(7, source)
        writer.uint64(8, fullSize)
        writer.string(9, unsupportedType)
    }
}

/// A `map<string, string>` field: one entry message (key 1, value 2) per pair.
private func writeMap(_ field: Int, _ map: [String: String], to writer: inout ProtobufWriter) {
    for (key, value) in map { writer.mapEntry(field, key: key, value: value.utf8) }
}
