import Foundation

/// Counters and gauges the collector exports in the Prometheus text format on /metrics.
/// Values are set from the pipeline's own counters (the stages count; this only publishes).
public final class MetricsRegistry: @unchecked Sendable {
    public enum Kind: String, Sendable { case counter, gauge }

    private struct Family {
        var help: String
        var kind: Kind
        var samples: [String: Double] = [:]
    }

    private let lock = NSLock()
    private var families: [String: Family] = [:]

    public init() {}

    /// Declares a metric family (once; later calls only update the help text).
    public func declare(_ name: String, _ kind: Kind, help: String) {
        lock.withLock {
            if families[name] == nil { families[name] = Family(help: help, kind: kind) } else {
                families[name]!.help = help
            }
        }
    }

    /// Sets one sample; `labels` in a fixed order, e.g. `[("stage", "filter"), ("reason", "rule")]`.
    public func set(_ name: String, _ labels: [(String, String)] = [], to value: Double) {
        let key = Self.key(labels)
        lock.withLock {
            if families[name] == nil { families[name] = Family(help: name, kind: .gauge) }
            families[name]!.samples[key] = value
        }
    }

    /// Replaces every sample of a family at once (a scrape sees the old set or the new one).
    public func replace(_ name: String, with samples: [(labels: [(String, String)], value: Double)]) {
        var keyed: [String: Double] = [:]
        for sample in samples {
            keyed[Self.key(sample.labels)] = sample.value
        }
        lock.withLock {
            if families[name] == nil { families[name] = Family(help: name, kind: .gauge) }
            families[name]!.samples = keyed
        }
    }

    public func value(_ name: String, _ labels: [(String, String)] = []) -> Double? {
        let key = Self.key(labels)
        return lock.withLock { families[name]?.samples[key] }
    }

    /// The Prometheus text exposition of every family, sorted by name.
    public func render() -> String {
        lock.withLock {
            var text = ""
            for name in families.keys.sorted() {
                let family = families[name]!
                text += "# HELP \(name) \(family.help)\n# TYPE \(name) \(family.kind.rawValue)\n"
                for key in family.samples.keys.sorted() {
                    let value = family.samples[key]!
                    let formatted = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
                    text += key.isEmpty ? "\(name) \(formatted)\n" : "\(name){\(key)} \(formatted)\n"
                }
            }
            return text
        }
    }

    private static func key(_ labels: [(String, String)]) -> String {
        labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
