import EdgetrailProto
import Foundation

/// Records and batches as the collector's sources make them, for tests: one builder, so a field
/// added to the wire schema is filled in one place. Defaults describe the demo's session (client
/// 10.200.0.2 to origin 10.201.0.2:80 through the http-proxy pod).
public enum TestRecords {
    /// A span; `parent` nil makes it a root span. Ids are the small numbers given, repeated to
    /// their length (nil: no id, as a span some tests need without one).
    public static func span(
        cookie: UInt64, trace: UInt8? = 1, id: UInt8? = 1, parent: UInt8? = nil, operation: String = "request",
        service: String = "http-proxy", startNs: UInt64 = 1_000_000, endNs: UInt64? = nil,
        status: Edgetrail_V1_SpanStatus = .ok, tags: [String: String] = [:]
    ) -> Edgetrail_V1_Record {
        var record = Edgetrail_V1_Record()
        record.cookie = cookie
        record.service = service
        if let trace { record.span.traceID = Data(repeating: trace, count: 16) }
        if let id { record.span.spanID = Data(repeating: id, count: 8) }
        if let parent { record.span.parentSpanID = Data(repeating: parent, count: 8) }
        record.span.operation = operation
        record.span.startNs = startNs
        record.span.endNs = endNs ?? startNs + 1_000_000
        record.span.status = status
        record.span.tags = tags
        return record
    }

    /// A flow event (of a TCP connection unless `proto` says otherwise).
    public static func flow(
        cookie: UInt64, phase: Edgetrail_V1_FlowPhase = .start, source: [UInt8] = [10, 200, 0, 2],
        sourcePort: UInt32 = 41000, destination: [UInt8] = [10, 201, 0, 2], destinationPort: UInt32 = 80,
        proto: UInt32 = 6, action: Edgetrail_V1_DatapathAction = .redirect, startNs: UInt64 = 1_000_000,
        endNs: UInt64 = 0, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0
    ) -> Edgetrail_V1_Record {
        var record = Edgetrail_V1_Record()
        record.cookie = cookie
        record.flow.phase = phase
        record.flow.tuple.srcIp = Data(source)
        record.flow.tuple.dstIp = Data(destination)
        record.flow.tuple.srcPort = sourcePort
        record.flow.tuple.dstPort = destinationPort
        record.flow.tuple.protocol = proto
        record.flow.action = action
        record.flow.startNs = startNs
        record.flow.endNs = phase == .end ? max(endNs, startNs) : 0
        record.flow.bytesIn = bytesIn
        record.flow.bytesOut = bytesOut
        return record
    }

    /// A Redis snapshot of a string value (`value` nil: the key was deleted).
    public static func snapshot(
        cookie: UInt64, key: String, value: String?, service: String = "", atNs: UInt64 = 2_000_000
    ) -> Edgetrail_V1_Record {
        var record = Edgetrail_V1_Record()
        record.cookie = cookie
        record.service = service
        record.snapshot.key = key
        record.snapshot.atNs = atNs
        if let value { record.snapshot.stringValue = Data(value.utf8) } else { record.snapshot.deleted = true }
        return record
    }

    /// A batch of one cookie's records, as the join releases it.
    public static func batch(
        cookie: UInt64, seq: UInt32 = 0, final: Bool = true, cnf: String = "edgesecurity", node: String = "edge-1",
        _ records: [Edgetrail_V1_Record]
    ) -> Edgetrail_V1_CookieBatch {
        var batch = Edgetrail_V1_CookieBatch()
        batch.cookie = cookie
        batch.seq = seq
        batch.final = final
        batch.cnf = cnf
        batch.node = node
        batch.records = records
        return batch
    }
}
