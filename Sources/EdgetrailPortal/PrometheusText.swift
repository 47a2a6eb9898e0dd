import Foundation

/// One sample of the Prometheus text format, as the collector's and central's /metrics write it.
public struct MetricSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

/// Reads the Prometheus text exposition format (what the parts' /metrics serve). Lines it cannot
/// read are skipped: figures on a page must not fail because one line is odd.
public enum PrometheusText {
    public static func parse(_ text: String) -> [MetricSample] {
        var samples: [MetricSample] = []
        for line in text.split(separator: "\n") {
            guard let first = line.first, first != "#" else { continue }
            var name = Substring()
            var labels: [String: String] = [:]
            var rest: Substring
            if let brace = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}") {
                name = line[..<brace]
                labels = parseLabels(line[line.index(after: brace)..<close])
                rest = line[line.index(after: close)...]
            } else {
                guard let space = line.firstIndex(of: " ") else { continue }
                name = line[..<space]
                rest = line[space...]
            }
            let fields = rest.split(separator: " ")
            guard let valueText = fields.first else { continue }
            let value: Double?
            switch valueText {
            case "+Inf": value = .infinity
            case "-Inf": value = -.infinity
            case "NaN": value = .nan
            default: value = Double(valueText)
            }
            guard let value else { continue }
            samples.append(MetricSample(name: String(name), labels: labels, value: value))
        }
        return samples
    }

    static func parseLabels(_ text: Substring) -> [String: String] {
        var labels: [String: String] = [:]
        var index = text.startIndex
        while index < text.endIndex {
            guard let equals = text[index...].firstIndex(of: "=") else { break }
            let name = text[index..<equals].trimmingCharacters(in: [" ", ","])
            var cursor = text.index(after: equals)
            guard cursor < text.endIndex, text[cursor] == "\"" else { break }
            cursor = text.index(after: cursor)
            var value = ""
            while cursor < text.endIndex, text[cursor] != "\"" {
                if text[cursor] == "\\", text.index(after: cursor) < text.endIndex {
                    cursor = text.index(after: cursor)
                    value.append(text[cursor] == "n" ? "\n" : text[cursor])
                } else {
                    value.append(text[cursor])
                }
                cursor = text.index(after: cursor)
            }
            labels[name] = value
            index = cursor < text.endIndex ? text.index(after: cursor) : cursor
        }
        return labels
    }
}

extension Array where Element == MetricSample {
    /// The sum of every sample named `name` (all label sets), 0 when there is none.
    public func sum(_ name: String, where match: [String: String] = [:]) -> Double {
        reduce(0) { total, sample in
            guard sample.name == name, match.allSatisfy({ sample.labels[$0.key] == $0.value }) else { return total }
            return total + sample.value
        }
    }
}
