import Foundation

extension CookieTimeline {
    /// The human form of `edgetrail trace`: one line per moment in time order, offsets from the
    /// session's first moment; spans indented by their depth in the span tree, with durations;
    /// flows and snapshots interleaved where they happened.
    public func renderText() -> String {
        let show = Self.printable
        var lines = ["cookie \(cookie)" + (cnf.isEmpty ? "" : "  cnf \(show(cnf))")
            + "  \(spans.count) spans, \(flows.count) flows, \(snapshots.count) snapshots"]
        let parents = Dictionary(spans.map { ($0.spanId, $0.parentSpanId) }, uniquingKeysWith: { first, _ in first })
        func depth(_ spanId: String) -> Int {
            var depth = 0
            var current = parents[spanId] ?? ""
            var guardCount = 0
            while !current.isEmpty, let parent = parents[current], guardCount < 64 {
                depth += 1
                current = parent
                guardCount += 1
            }
            // A parent that is not in this session still indents its child once.
            if let parent = parents[spanId], !parent.isEmpty, parents[parent] == nil { depth += 1 }
            return depth
        }
        let spansByID = Dictionary(spans.map { ($0.spanId, $0) }, uniquingKeysWith: { first, _ in first })
        let origin = timeline.first?.atNs ?? 0
        for entry in timeline {
            let offset = String(format: "+%9.3f ms", Double(entry.atNs &- origin) / 1e6)
            switch entry.kind {
            case "span-start":
                guard let span = spansByID[entry.ref] else { continue }
                let duration = String(format: "%.3f ms", Double(span.endNs &- span.startNs) / 1e6)
                let indent = String(repeating: "  ", count: depth(span.spanId))
                var line = "\(offset)  \(indent)\(show(span.operation))"
                if !span.service.isEmpty { line += " [\(show(span.service))]" }
                line += " \(duration)"
                if span.status == "error" { line += "  ERROR" }
                lines.append(line)
            case "flow-start", "flow-end":
                guard let index = Self.index(entry.ref), index < flows.count else { continue }
                let flow = flows[index]
                let endpoints = "\(flow.proto) \(flow.src):\(flow.sport) -> \(flow.dst):\(flow.dport)"
                if entry.kind == "flow-start" {
                    lines.append("\(offset)  flow start  \(endpoints) \(flow.action)")
                } else {
                    lines.append(
                        "\(offset)  flow end    \(endpoints) in \(flow.bytesIn) B/\(flow.packetsIn) pkts, "
                            + "out \(flow.bytesOut) B/\(flow.packetsOut) pkts")
                }
            case "snapshot":
                guard let index = Self.index(entry.ref), index < snapshots.count else { continue }
                let snapshot = snapshots[index]
                var value: String
                switch snapshot.value {
                case .string(let text)?: value = show(text)
                case .hash(let fields)?:
                    value = "{" + fields.keys.sorted().map { "\(show($0))=\(show(fields[$0]!))" }.joined(separator: ", ") + "}"
                case nil:
                    value = snapshot.unsupportedType.map { "(a Redis \(show($0)): its value is not captured)" } ?? "(deleted)"
                }
                if let fullSize = snapshot.fullSize {
                    value += " (cut by the collector: the value has \(fullSize) bytes)"
                }
                lines.append("\(offset)  snapshot    \(show(snapshot.key)) = \(value)")
            default:
                continue
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// How much of one value the text form shows; `--format json` has it whole.
    static let shownCharacters = 512

    /// Text as a terminal can show it safely: control characters (which could move the cursor,
    /// clear the screen or fake a line) written as escapes, long values cut with their length.
    static func printable(_ text: String) -> String {
        var result = ""
        var shown = 0
        for scalar in text.unicodeScalars {
            if shown == shownCharacters {
                result += "… (\(text.unicodeScalars.count) characters)"
                break
            }
            shown += 1
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\\": result += "\\\\"
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                    result += String(format: "\\x%02x", scalar.value)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result
    }

    private static func index(_ ref: String) -> Int? {
        guard let open = ref.firstIndex(of: "["), ref.hasSuffix("]") else { return nil }
        return Int(ref[ref.index(after: open)..<ref.index(before: ref.endIndex)])
    }
}
