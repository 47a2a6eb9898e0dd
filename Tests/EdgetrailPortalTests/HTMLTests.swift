import Testing

@testable import EdgetrailPortal
import EdgetrailCentralAPI

@Suite("HTML escaping")
struct HTMLTests {
    @Test("text interpolated into markup shows as text")
    func escapesText() {
        let tag = "<script>alert('x')</script> & \"quoted\""
        let html: HTML = "<td>\(tag)</td>"
        #expect(html.text == "<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;</td>")
    }

    @Test("markup interpolated into markup is kept")
    func keepsMarkup() {
        let inner: HTML = "<b>\("a<b")</b>"
        let outer: HTML = "<p>\(inner)</p>"
        #expect(outer.text == "<p><b>a&lt;b</b></p>")
    }
}

@Suite("Filters page: published rule sets")
struct RolloutSectionTests {
    @Test("each node's answer is shown; one behind is named; refusal reasons with markup show as text")
    func rollouts() {
        let rollouts = FilterRollouts(rollouts: [
            .init(
                name: "canary", version: 2, selector: "node=edge-a*,cnf=*", author: "ops@host", publishedAtNs: 0,
                nodes: [
                    .init(node: "edge-a1", cnf: "edgesecurity", version: 2, outcome: "applied", errors: [], atNs: 0),
                    .init(node: "edge-a2", cnf: "edgesecurity", version: 1, outcome: "applied", errors: [], atNs: 0),
                    .init(node: "edge-a3", cnf: "edgesecurity", version: 2, outcome: "refused", errors: ["canary@v2/x.rules:1:1: <b>no</b>"], atNs: 0),
                ])
        ])
        let text = Pages.rolloutSection(.success(rollouts)).text
        #expect(text.contains("<h3>canary — version 2, selector <code>node=edge-a*,cnf=*</code>, by ops@host"))
        #expect(text.contains("<td>edge-a1</td><td>edgesecurity</td><td>2</td><td>applied</td>"))
        #expect(text.contains("has not answered version 2 (last: 1 applied)"))
        #expect(text.contains("refused: canary@v2/x.rules:1:1: &lt;b&gt;no&lt;/b&gt;"))
        #expect(Pages.rolloutSection(.success(FilterRollouts(rollouts: []))).text.contains("None published yet"))
        let unreachable = CentralClientError(.unreachable, "cannot reach central at http://127.0.0.1:9: connection refused")
        #expect(Pages.rolloutSection(.failure(unreachable)).text.contains("cannot reach central at http://127.0.0.1:9"))
    }
}
