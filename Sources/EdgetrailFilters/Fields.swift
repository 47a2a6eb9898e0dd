import EdgetrailCore
import EdgetrailProto
import Foundation

/// A value while a condition is evaluated.
enum Value {
    case string(String)
    case number(Double)
    case boolean(Bool)
    case address([UInt8])
    case network(IPPrefix)
    case regex(BoundedRegex)
    /// A field the record does not have (a missing tag): compares unequal to everything.
    case missing

    var boolean: Bool { if case .boolean(let value) = self { value } else { false } }
}

/// The value types of the condition language.
public enum ValueType: String, Sendable {
    case string, number, boolean, address, network, regex

    var article: String {
        switch self {
        case .address: "an address"
        default: "a \(rawValue)"
        }
    }
}

typealias Payload = Edgetrail_V1_Record.OneOf_Kind
/// Reads a field off a record whose payload the caller has bound already (`record.kind` copies
/// the payload each time it is read, so it is read once per record).
typealias PayloadReader = @Sendable (Edgetrail_V1_Record, Payload) -> Value

/// One field of the rule language: its type, how it is read, and how the filter stage may index
/// rules by it. The checker, the compiler and the filter stage all read fields from here; a field
/// is added in this one place.
struct Field: Sendable {
    let kind: RecordKind
    let name: String
    let type: ValueType
    /// Map fields take a key (`span.tags["k"]`).
    let keyed: Bool
    /// The only names an enumerated field has (`span.status`), or nil for any value.
    let values: [String]?
    /// How the filter stage indexes rules guarded by `field == literal` (or, for tags, by the
    /// tag's presence); nil when it cannot.
    let guardField: GuardField?
    /// A reader for a record field, made once per rule (for keyed fields, with its key).
    let reader: @Sendable (_ key: String?) -> PayloadReader
    /// The reader of a cookie field, over the cookie's whole batch.
    let cookieReader: (@Sendable (Edgetrail_V1_CookieBatch) -> Value)?

    var qualifiedName: String { "\(kind.rawValue).\(name)" }
}

/// The catalog of fields.
enum Fields {
    static let all: [Field] = span + flow + snapshot + cookie

    /// Fields by kind and name.
    static let byName: [RecordKind: [String: Field]] = Dictionary(grouping: all, by: \.kind)
        .mapValues { Dictionary(uniqueKeysWithValues: $0.map { ($0.name, $0) }) }

    static func field(_ reference: FieldReference) -> Field? {
        byName[reference.kind]?[reference.name]
    }

    static func kind(of payload: Payload) -> RecordKind {
        switch payload {
        case .span: .span
        case .flow: .flow
        case .snapshot: .snapshot
        }
    }

    static func kind(of record: Edgetrail_V1_Record) -> RecordKind? {
        record.kind.map(kind(of:))
    }

    // MARK: Each kind's fields

    private static func record(
        _ kind: RecordKind, _ name: String, _ type: ValueType, keyed: Bool = false, values: [String]? = nil,
        guardField: GuardField? = nil, _ reader: @escaping @Sendable (String?) -> PayloadReader
    ) -> Field {
        Field(
            kind: kind, name: name, type: type, keyed: keyed, values: values, guardField: guardField, reader: reader,
            cookieReader: nil)
    }

    private static func span(
        _ name: String, _ type: ValueType, values: [String]? = nil, guardField: GuardField? = nil,
        _ read: @escaping @Sendable (Edgetrail_V1_Record, Edgetrail_V1_Span) -> Value
    ) -> Field {
        record(.span, name, type, values: values, guardField: guardField) { _ in
            { record, payload in
                guard case .span(let span) = payload else { return .missing }
                return read(record, span)
            }
        }
    }

    private static func flow(
        _ name: String, _ type: ValueType, values: [String]? = nil, guardField: GuardField? = nil,
        _ read: @escaping @Sendable (Edgetrail_V1_FlowEvent) -> Value
    ) -> Field {
        record(.flow, name, type, values: values, guardField: guardField) { _ in
            { _, payload in
                guard case .flow(let flow) = payload else { return .missing }
                return read(flow)
            }
        }
    }

    private static func snapshot(
        _ name: String, guardField: GuardField? = nil,
        _ read: @escaping @Sendable (Edgetrail_V1_Record, Edgetrail_V1_Snapshot) -> Value
    ) -> Field {
        record(.snapshot, name, .string, guardField: guardField) { _ in
            { record, payload in
                guard case .snapshot(let snapshot) = payload else { return .missing }
                return read(record, snapshot)
            }
        }
    }

    private static func cookie(_ name: String, _ type: ValueType, _ read: @escaping @Sendable (Edgetrail_V1_CookieBatch) -> Value)
        -> Field
    {
        Field(
            kind: .cookie, name: name, type: type, keyed: false, values: nil, guardField: nil,
            reader: { _ in { _, _ in .missing } }, cookieReader: read)
    }

    private static let span: [Field] = [
        span("service", .string, guardField: .service) { record, _ in .string(record.service) },
        span("operation", .string, guardField: .spanOperation) { _, span in .string(span.operation) },
        span("duration_ms", .number) { _, span in .number(Double(span.endNs &- span.startNs) / 1e6) },
        span("status", .string, values: Edgetrail_V1_SpanStatus.ruleNames, guardField: .spanStatus) {
            _, span in .string(span.status.ruleName)
        },
        // Indexed by the tag's presence: `span.tags["k"] == …` and `redact span.tags["k"]` need the tag.
        record(.span, "tags", .string, keyed: true, guardField: .spanTagKeys) { key in
            let key = key ?? ""
            return { _, payload in
                guard case .span(let span) = payload, let value = span.tags[key] else { return .missing }
                return .string(value)
            }
        },
        span("trace_id", .string) { _, span in .string(span.traceID.hexString) },
        span("span_id", .string) { _, span in .string(span.spanID.hexString) },
        span("kind", .string) { _, span in .string(String(describing: span.kind)) },
    ]

    private static let flow: [Field] = [
        flow("src", .address) { .address([UInt8]($0.tuple.srcIp)) },
        flow("dst", .address) { .address([UInt8]($0.tuple.dstIp)) },
        flow("sport", .number, guardField: .flowSourcePort) { .number(Double($0.tuple.srcPort)) },
        flow("dport", .number, guardField: .flowDestinationPort) { .number(Double($0.tuple.dstPort)) },
        // Other protocols go by number ("1" for ICMP): the checker knows.
        flow("proto", .string, values: IPProtocolName.named.map(\.name), guardField: .flowProtocol) {
            .string($0.tuple.protocolRuleName)
        },
        flow("action", .string, values: Edgetrail_V1_DatapathAction.ruleNames, guardField: .flowAction) {
            .string($0.action.ruleName)
        },
        flow("packets_in", .number) { .number(Double($0.packetsIn)) },
        flow("packets_out", .number) { .number(Double($0.packetsOut)) },
        flow("bytes_in", .number) { .number(Double($0.bytesIn)) },
        flow("bytes_out", .number) { .number(Double($0.bytesOut)) },
        flow("duration_ms", .number) { .number($0.endNs > $0.startNs ? Double($0.endNs - $0.startNs) / 1e6 : 0) },
    ]

    private static let snapshot: [Field] = [
        snapshot("key", guardField: .snapshotKey) { _, snapshot in .string(snapshot.key) },
        snapshot("value") { _, snapshot in
            switch snapshot.value {
            case .stringValue(let bytes): .string(String(decoding: bytes, as: UTF8.self))
            case .hashFields(let hash):
                .string(
                    hash.fields.keys.sorted().map { "\($0)=\(String(decoding: hash.fields[$0]!, as: UTF8.self))" }
                        .joined(separator: ","))
            case nil: .missing
            }
        },
        snapshot("source", guardField: .snapshotSource) { _, snapshot in .string(snapshot.source) },
        snapshot("service", guardField: .service) { record, _ in .string(record.service) },
    ]

    private static let cookie: [Field] = {
        func count(_ kind: RecordKind) -> @Sendable (Edgetrail_V1_CookieBatch) -> Value {
            { batch in .number(Double(batch.records.reduce(0) { Fields.kind(of: $1) == kind ? $0 + 1 : $0 })) }
        }
        return [
            cookie("id", .string) { .string(Cookie($0.cookie).hex) },
            cookie("cnf", .string) { .string($0.cnf) },
            cookie("node", .string) { .string($0.node) },
            cookie("spans", .number, count(.span)),
            cookie("flows", .number, count(.flow)),
            cookie("snapshots", .number, count(.snapshot)),
            cookie("records", .number) { .number(Double($0.records.count)) },
        ]
    }()
}

/// The fields each kind offers, as the documentation and tests read them (from `Fields`).
public enum FieldCatalog {
    public static let fields: [RecordKind: [String: ValueType]] = Fields.byName.mapValues { $0.mapValues(\.type) }

    /// Fields whose values are a fixed set of names (the `ruleName`s beside the generated wire
    /// code). `flow.proto` also takes other protocols' numbers.
    public static let values: [String: [String]] = Dictionary(
        uniqueKeysWithValues: Fields.all.compactMap { field in field.values.map { (field.qualifiedName, $0) } })

    /// Map fields that take a key (`span.tags["k"]`).
    public static let keyed: Set<String> = Set(Fields.all.filter(\.keyed).map(\.qualifiedName))

    static func type(of field: FieldReference) -> ValueType? {
        Fields.field(field)?.type
    }

    /// The closest known field name, for "did you mean".
    static func suggestion(for field: FieldReference) -> String? {
        guard let names = fields[field.kind]?.keys else { return nil }
        return names.min { distance($0, field.name) < distance($1, field.name) }
            .flatMap { distance($0, field.name) <= 2 ? "\(field.kind.rawValue).\($0)" : nil }
    }

    private static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let saved = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = saved
            }
        }
        return row[b.count]
    }
}
