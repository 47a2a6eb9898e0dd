@testable import EdgetrailCollector
import EdgetrailRuntime
import Foundation
import Testing

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

@Suite("Dashboards")
struct DashboardTests {
    /// Metric families the collector declares (its own and the datapath's), with their kind.
    private func declared() -> [String: String] {
        let registry = MetricsRegistry()
        CollectorPipeline.declareMetrics(registry)
        DatapathFlowSource.declareMetrics(registry)
        var kinds: [String: String] = [:]
        for line in registry.render().split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            kinds[String(parts[2])] = String(parts[3])
        }
        return kinds
    }

    @Test("every metric a panel of dashboards/edge-node.json queries exists, and counters are read through rate or increase")
    func edgeNodeDashboard() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/dashboards/edge-node.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        let kinds = declared()
        #expect(kinds.count >= 20, "the registry should declare the collector's and the datapath's families")
        var queried = Set<String>()
        let name = try Regex(#"edgetrail_[a-z_]+"#)
        for panel in panels {
            let title = panel["title"] as? String ?? "?"
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "panel '\(title)' has no query")
            for target in targets {
                let expr = try #require(target["expr"] as? String)
                for match in expr.matches(of: name) {
                    let metric = String(expr[match.range])
                    queried.insert(metric)
                    #expect(kinds[metric] != nil, "panel '\(title)' queries \(metric), which the collector does not export")
                    if kinds[metric] == "counter" {
                        let before = expr[..<match.range.lowerBound]
                        #expect(
                            before.hasSuffix("rate(") || before.hasSuffix("increase("),
                            "panel '\(title)' reads the counter \(metric) without rate() or increase()")
                    }
                }
            }
        }
        // The families an operator most needs are on the dashboard.
        for needed in [
            "edgetrail_collector_records_dropped_total", "edgetrail_collector_spool_bytes",
            "edgetrail_datapath_rule_packets_total", "edgetrail_datapath_ring_buffer_lost_total",
        ] {
            #expect(queried.contains(needed), "no panel shows \(needed)")
        }
    }
}
