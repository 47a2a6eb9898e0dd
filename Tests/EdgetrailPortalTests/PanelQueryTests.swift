import Foundation
import Testing

@testable import EdgetrailPortal

@Suite("Dashboard panels")
struct PanelQueryTests {
    /// Scrapes 5 s apart of one counter per source, and a gauge.
    static func history() -> [MetricsScrape] {
        (0..<13).map { step in
            let time = 1000 + Double(step) * 5
            return MetricsScrape(
                time: time,
                samples: [
                    MetricSample(name: "in_total", labels: ["source": "otlp", "node": "a"], value: Double(step) * 50),
                    MetricSample(name: "in_total", labels: ["source": "flows", "node": "a"], value: Double(step) * 10),
                    // A counter restarted at step 6.
                    MetricSample(name: "out_total", labels: [:], value: step < 6 ? Double(step) * 100 : Double(step - 6) * 100),
                    MetricSample(name: "sum_total", labels: [:], value: Double(step) * 2),
                    MetricSample(name: "count_total", labels: [:], value: Double(step) * 4),
                    MetricSample(name: "open", labels: [:], value: Double(step % 3)),
                ])
        }
    }

    @Test("rate over a window is the increase per second; sum by keeps only the named labels")
    func rateAndSum() throws {
        let history = Self.history()
        let query = try PanelQuery.parse("sum by (source) (rate(in_total[1m]))")
        let values = query.evaluate(history, at: 12)
        #expect(values == [["source": "otlp"]: 10, ["source": "flows"]: 2])
        let selected = try PanelQuery.parse("sum by (source) (rate(in_total{source=\"flows\"}[30s]))").evaluate(history, at: 12)
        #expect(selected == [["source": "flows"]: 2])
    }

    @Test("a restarted counter counts from zero after the restart, not negative")
    func reset() throws {
        let values = try PanelQuery.parse("increase(out_total[1m])").evaluate(Self.history(), at: 12)
        // 5 steps of 100 before the restart, 0 → 0 at it, 6 steps of 100 after.
        #expect(values == [[:]: 1100])
    }

    @Test("a division matches series with the same labels; a gauge is read as it is")
    func divideAndGauge() throws {
        let mean = try PanelQuery.parse("rate(sum_total[1m]) / rate(count_total[1m])").evaluate(Self.history(), at: 12)
        #expect(mean == [[:]: 0.5])
        #expect(try PanelQuery.parse("open").evaluate(Self.history(), at: 4) == [[:]: 1])
    }

    @Test("a query outside what the portal draws is refused with what it did not understand")
    func refused() {
        #expect(throws: PanelQuery.ParseError.self) { try PanelQuery.parse("histogram_quantile(0.99, x)") }
        do {
            _ = try PanelQuery.parse("rate(x[5d])")
        } catch {
            #expect(error.description == "'d' is not a duration unit (s, m, h) at column 10 of 'rate(x[5d])'")
        }
    }

    @Test("every panel of the repository's dashboards is one the portal can draw")
    func repositoryDashboards() throws {
        let files = DashboardFile.load(Repository.root + "/dashboards")
        #expect(!files.isEmpty)
        for file in files {
            let dashboard = try #require(file.dashboard, "\(file.problem ?? file.name)")
            for panel in dashboard.panels {
                for target in panel.targets ?? [] {
                    #expect(throws: Never.self, "\(file.name): \(panel.title)") { try PanelQuery.parse(target.expr) }
                }
            }
        }
    }

    @Test("a chart draws a line per series, named by its legend format, with the last value in the panel's unit")
    func chart() {
        let panel = DashboardFile.Panel(
            title: "Records <in>", type: "timeseries", description: nil,
            targets: [.init(expr: "sum by (source) (rate(in_total[1m]))", legendFormat: "{{source}}")],
            fieldConfig: .init(defaults: .init(unit: "rps")))
        let chart = PanelChart(panel, history: Self.history(), from: 1000, to: 1060)
        #expect(chart.series.map(\.name) == ["flows", "otlp"])
        let html = chart.render().text
        #expect(html.contains("<figcaption>Records &lt;in&gt;</figcaption>"))
        #expect(html.contains("otlp <b>10/s</b>"))
        #expect(html.components(separatedBy: "<polyline").count == 3)
        #expect(PanelChart.format(3 * 1_048_576, unit: "bytes") == "3.0 MiB")
        #expect(PanelChart.format(0.012, unit: "s") == "12.0 ms")
    }
}
