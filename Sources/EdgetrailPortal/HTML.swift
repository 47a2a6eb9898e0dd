/// A piece of HTML that is safe to send. Everything interpolated into it is escaped unless it is
/// itself `HTML`, so text that came from spans, handlers, rules or users can only ever show as
/// text: a span tag `<script>` renders as the characters `<script>`. Markup is written as literals.
public struct HTML: Sendable, Equatable, ExpressibleByStringInterpolation {
    public private(set) var text: String

    /// Markup the portal itself wrote; never pass text that came from outside.
    init(trusted text: String) {
        self.text = text
    }

    public init(stringLiteral value: String) {
        self.text = value
    }

    public init(stringInterpolation: StringInterpolation) {
        self.text = stringInterpolation.text
    }

    public static let empty = HTML(trusted: "")

    public struct StringInterpolation: StringInterpolationProtocol {
        var text = ""

        public init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + interpolationCount * 16)
        }

        public mutating func appendLiteral(_ literal: String) {
            text += literal
        }

        public mutating func appendInterpolation(_ html: HTML) {
            text += html.text
        }

        public mutating func appendInterpolation(_ parts: [HTML]) {
            for part in parts { text += part.text }
        }

        public mutating func appendInterpolation(_ value: String) {
            text += HTML.escape(value)
        }

        public mutating func appendInterpolation(_ value: Substring) {
            text += HTML.escape(String(value))
        }

        public mutating func appendInterpolation<Value: BinaryInteger>(_ value: Value) {
            text += String(value)
        }

        /// A number with a fixed count of decimals (no locale: "1234.5").
        public mutating func appendInterpolation(_ value: Double, decimals: Int) {
            text += HTML.format(value, decimals: decimals)
        }
    }

    /// The five characters that change meaning in text or in a quoted attribute.
    public static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }

    static func format(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = String(rounded)
        if text.hasSuffix(".0"), decimals == 0 { text.removeLast(2) }
        if let dot = text.firstIndex(of: "."), decimals > 0 {
            let have = text.distance(from: dot, to: text.endIndex) - 1
            if have < decimals { text += String(repeating: "0", count: decimals - have) }
        }
        return text
    }
}

extension Array where Element == HTML {
    func joined(separator: HTML = .empty) -> HTML {
        var text = ""
        for (index, part) in enumerated() {
            if index > 0 { text += separator.text }
            text += part.text
        }
        return HTML(trusted: text)
    }
}
