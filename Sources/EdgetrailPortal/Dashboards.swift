import Foundation
import ServiceLifecycle
import Synchronization


/// A Grafana dashboard file as the portal draws it: its panels' titles, units and queries.
public struct DashboardFile: Sendable, Decodable {
    public struct Panel: Sendable, Decodable {
        public struct Target: Sendable, Decodable {
            public var expr: String
            public var legendFormat: String?
        }

        public struct FieldConfig: Sendable, Decodable {
            public struct Defaults: Sendable, Decodable { public var unit: String? }
            public var defaults: Defaults?
        }

        public var title: String
        public var type: String
        public var description: String?
        public var targets: [Target]?
        public var fieldConfig: FieldConfig?

        public var unit: String { fieldConfig?.defaults?.unit ?? "short" }
    }

    public var title: String
    public var description: String?
    public var panels: [Panel]

    /// Every `*.json` in `directory`; a file that is not a dashboard is reported by name.
    static func load(_ directory: String?) -> [(name: String, dashboard: DashboardFile?, problem: String?)] {
        guard let directory, let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.sorted().map { name in
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)"))
                return (name, try JSONDecoder().decode(DashboardFile.self, from: data), nil)
            } catch {
                return (name, nil, "\(name) is not a dashboard the portal can read: \(error)")
            }
        }
    }
}

/// The node's metrics as the portal scraped them, newest last; an hour is kept.
public final class MetricsHistory: Sendable {
    private let scrapes = Mutex<[MetricsScrape]>([])
    public let keepSeconds: Double

    public init(keepSeconds: Double = 3600) {
        self.keepSeconds = keepSeconds
    }

    public func add(_ scrape: MetricsScrape) {
        scrapes.withLock { scrapes in
            scrapes.append(scrape)
            let horizon = scrape.time - keepSeconds
            if let keep = scrapes.firstIndex(where: { $0.time >= horizon }), keep > 0 { scrapes.removeFirst(keep) }
        }
    }

    public var all: [MetricsScrape] { scrapes.withLock { $0 } }
}

/// Scrapes the collector's /metrics (which carries the datapath's figures too) every few seconds
/// into the history the Dashboards page draws from.
struct MetricsScraper: Service {
    let url: String
    let history: MetricsHistory
    let interval: Duration

    /// Ends (without an error) when the group shuts down: a SIGTERM is a clean stop.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if let samples = await PortalBackend.scrape(url) {
                    history.add(MetricsScrape(time: Date().timeIntervalSince1970, samples: samples))
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// One panel's lines over the chosen range, ready to draw.
struct PanelChart {
    struct Series {
        var name: String
        var points: [(Double, Double)]
    }

    var title: String
    var unit: String
    var series: [Series] = []
    var problem: String?
    var from: Double
    var to: Double

    init(_ panel: DashboardFile.Panel, history: [MetricsScrape], from: Double, to: Double) {
        title = panel.title
        unit = panel.unit
        self.from = from
        self.to = to
        let indexes = history.indices.filter { history[$0].time >= from && history[$0].time <= to }
        for target in panel.targets ?? [] {
            let query: PanelQuery
            do {
                query = try PanelQuery.parse(target.expr)
            } catch {
                problem = "cannot draw \(target.expr): \(error)"
                continue
            }
            var byName: [String: [(Double, Double)]] = [:]
            for index in indexes {
                for (labels, value) in query.evaluate(history, at: index) where value.isFinite {
                    byName[Self.legend(target.legendFormat, labels: labels, expr: target.expr), default: []].append((history[index].time, value))
                }
            }
            series += byName.sorted { $0.key < $1.key }.map { Series(name: $0.key, points: $0.value) }
        }
    }

    /// `{{label}}` replaced by the series' label values; without a format, its labels.
    static func legend(_ format: String?, labels: [String: String], expr: String) -> String {
        if var text = format, !text.isEmpty {
            for (key, value) in labels { text = text.replacingOccurrences(of: "{{\(key)}}", with: value) }
            return text
        }
        if labels.isEmpty { return expr }
        return labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    }

    /// A value in the panel's unit, short: "1.2k/s", "3.4 MiB", "12 ms".
    static func format(_ value: Double, unit: String) -> String {
        func scaled(_ value: Double, _ steps: [(Double, String)]) -> String {
            for (size, suffix) in steps where abs(value) >= size {
                return HTML.format(value / size, decimals: value / size < 10 ? 1 : 0) + suffix
            }
            return HTML.format(value, decimals: abs(value) < 10 && value != value.rounded() ? 2 : 0)
        }
        let binary: [(Double, String)] = [(1_073_741_824, " GiB"), (1_048_576, " MiB"), (1024, " KiB")]
        switch unit {
        case "bytes": return scaled(value, binary) + (abs(value) < 1024 ? " B" : "")
        case "Bps": return scaled(value, binary) + (abs(value) < 1024 ? " B/s" : "/s")
        case "s":
            return abs(value) >= 1 ? HTML.format(value, decimals: 2) + " s" : HTML.format(value * 1000, decimals: 1) + " ms"
        case "rps", "pps", "ops":
            return scaled(value, [(1e9, "G"), (1e6, "M"), (1e3, "k")]) + "/s"
        default:
            return scaled(value, [(1e9, "G"), (1e6, "M"), (1e3, "k")])
        }
    }

    static let colors = ["#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#6e7781"]

    /// The chart as inline SVG, and its legend with each line's last value.
    func render() -> HTML {
        let width = 560.0
        let height = 180.0
        let left = 64.0
        let bottom = 22.0
        let values = series.flatMap { $0.points.map(\.1) }
        let top = max(values.max() ?? 0, 0) * 1.1
        let ceiling = top > 0 ? top : 1
        let span = max(to - from, 1)
        func x(_ time: Double) -> Double { left + (time - from) / span * (width - left - 8) }
        func y(_ value: Double) -> Double { (height - bottom) - value / ceiling * (height - bottom - 8) }
        var parts: [HTML] = []
        for step in 0...3 {
            let value = ceiling * Double(step) / 3
            parts.append(
                "<line class=\"grid\" x1=\"\(left, decimals: 1)\" x2=\"\(width - 8, decimals: 1)\" y1=\"\(y(value), decimals: 1)\" y2=\"\(y(value), decimals: 1)\"/><text class=\"tick\" x=\"\(left - 6, decimals: 1)\" y=\"\(y(value) + 4, decimals: 1)\">\(Self.format(value, unit: unit))</text>"
            )
        }
        for step in 0...4 {
            let time = from + span * Double(step) / 4
            let ago = Int((to - time).rounded())
            let label = ago == 0 ? "now" : ago >= 60 ? "-\(ago / 60)m" : "-\(ago)s"
            parts.append("<text class=\"tick time\" x=\"\(x(time), decimals: 1)\" y=\"\(height - 6, decimals: 1)\">\(label)</text>")
        }
        var legend: [HTML] = []
        for (index, line) in series.enumerated() {
            let color = Self.colors[index % Self.colors.count]
            let points = line.points.map { "\(HTML.format(x($0.0), decimals: 1)),\(HTML.format(y($0.1), decimals: 1))" }.joined(separator: " ")
            parts.append("<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\" points=\"\(points)\"/>")
            let last = line.points.last.map { Self.format($0.1, unit: unit) } ?? "-"
            legend.append("<li><i style=\"background:\(color)\"></i>\(line.name) <b>\(last)</b></li>")
        }
        let note: HTML =
            if let problem { "<p class=\"error\">\(problem)</p>" } else if series.isEmpty {
                "<p class=\"empty\">No data in this range yet (the portal scrapes every 5 s; rates need two scrapes).</p>"
            } else { .empty }
        return """
            <figure class="panel"><figcaption>\(title)</figcaption>
            <svg viewBox="0 0 \(Int(width)) \(Int(height))" role="img" aria-label="\(title)">\(parts)</svg>
            \(note)<ul class="legend">\(legend)</ul></figure>
            """
    }
}
