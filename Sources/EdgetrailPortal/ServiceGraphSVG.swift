import EdgetrailCentralAPI
import Foundation

/// The service graph drawn on the server: the μsrvs on a circle, an arrow per calling pair
/// labelled with its calls and error rate (red when any call failed).
enum ServiceGraphSVG {
    static func render(_ graph: ServiceGraph) -> HTML {
        guard !graph.services.isEmpty else { return "<p>No spans stored for this CNF yet.</p>" }
        let width = 640.0
        let height = 420.0
        let radius = graph.services.count == 1 ? 0 : min(width, height) / 2 - 70
        var position: [String: (Double, Double)] = [:]
        for (index, service) in graph.services.enumerated() {
            let angle = Double(index) / Double(graph.services.count) * 2 * Double.pi - Double.pi / 2
            position[service] = (width / 2 + radius * cos(angle), height / 2 + radius * sin(angle))
        }
        var parts: [HTML] = []
        for edge in graph.edges {
            guard let from = position[edge.from], let to = position[edge.to] else { continue }
            // Stop short of the node's circle, so the arrowhead shows.
            let dx = to.0 - from.0
            let dy = to.1 - from.1
            let length = max((dx * dx + dy * dy).squareRoot(), 1)
            let end = (to.0 - dx / length * 34, to.1 - dy / length * 34)
            let start = (from.0 + dx / length * 34, from.1 + dy / length * 34)
            let css: HTML = edge.errors > 0 ? "edge failing" : "edge"
            parts.append(
                """
                <line class="\(css)" x1="\(start.0, decimals: 1)" y1="\(start.1, decimals: 1)" x2="\(end.0, decimals: 1)" y2="\(end.1, decimals: 1)" marker-end="url(#arrow)"/>
                <text class="edge-label" x="\((start.0 + end.0) / 2, decimals: 1)" y="\((start.1 + end.1) / 2 - 4, decimals: 1)">\(edge.calls) calls · \(edge.errorRate * 100, decimals: 1)% err · p99 \(Waterfall.duration(edge.p99Ns))</text>
                """)
        }
        for service in graph.services {
            let (x, y) = position[service]!
            parts.append(
                """
                <circle class="service" cx="\(x, decimals: 1)" cy="\(y, decimals: 1)" r="30"/>
                <text class="service-label" x="\(x, decimals: 1)" y="\(y + 46, decimals: 1)">\(service)</text>
                """)
        }
        return """
            <svg id="service-graph" viewBox="0 0 \(Int(width)) \(Int(height))" width="\(Int(width))" height="\(Int(height))" role="img" aria-label="service graph">
            <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>
            \(parts)
            </svg>
            """
    }
}
