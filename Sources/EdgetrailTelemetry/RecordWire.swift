import EdgetrailCore
import EdgetrailProto
import SwiftProtobuf

/// Records encoded once, at intake, and reused: the intake journal entry and the shipped
/// `CookieBatch` both frame the same bytes instead of serializing the records again.
///
/// A protobuf message may be written as the concatenation of its fields in any order, so a
/// `CookieBatch` is its header fields (encoded by SwiftProtobuf) followed by one
/// length-delimited `records` field per already-encoded record.
public enum RecordWire {
    /// `CookieBatch.records` is field 4, length-delimited.
    static let recordsTag: UInt8 = 4 << 3 | 2

    /// One record's protobuf bytes (written by hand: `RecordEncoding.swift` says why).
    public static func encode(_ record: Edgetrail_V1_Record) -> [UInt8] {
        record.wireBytes()
    }

    /// Appends `records` as `CookieBatch.records` fields.
    public static func appendRecords(_ records: [[UInt8]], to buffer: inout [UInt8]) {
        for bytes in records {
            buffer.append(recordsTag)
            ProtobufWriter.appendVarint(UInt64(bytes.count), to: &buffer)
            buffer.append(contentsOf: bytes)
        }
    }

    /// A `CookieBatch` holding only `records`, ready-encoded (the intake journal's entries).
    public static func container(_ records: [[UInt8]]) -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(records.reduce(0) { $0 + $1.count + 3 })
        appendRecords(records, to: &buffer)
        return buffer
    }

    /// `prefix` followed by the encoding of `batch`, whose records are given ready-encoded in
    /// `encoded` (one per record, same order). `batch.records` itself is not read.
    public static func batchBytes(_ batch: Edgetrail_V1_CookieBatch, encoded: [[UInt8]], prefix: [UInt8] = []) -> [UInt8] {
        var header = batch
        header.records = []
        var buffer = prefix
        buffer.reserveCapacity(prefix.count + 64 + encoded.reduce(0) { $0 + $1.count + 3 })
        buffer.append(contentsOf: (try? header.serializedBytes()) ?? [UInt8]())
        appendRecords(encoded, to: &buffer)
        return buffer
    }
}
