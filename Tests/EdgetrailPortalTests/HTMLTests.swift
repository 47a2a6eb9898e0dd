import Testing

@testable import EdgetrailPortal

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
