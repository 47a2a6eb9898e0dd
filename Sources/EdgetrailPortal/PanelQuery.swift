import Foundation

/// The part of PromQL the dashboards' panels use, evaluated over the portal's own scrapes so a
/// user sees the panels without a Prometheus:
///
///     expr     := term ('/' term)?
///     term     := 'sum' ['by' '(' labels ')'] '(' expr ')' | ('rate' | 'increase') '(' selector '[' dur ']' ')' | selector
///     selector := name ['{' label '=' "value" {',' label '=' "value"} '}']
///
/// A query outside this subset is refused with what was not understood, and the panel says so.
public indirect enum PanelQuery: Sendable, Equatable {
    case selector(name: String, match: [String: String])
    case rate(name: String, match: [String: String], window: Double)
    case increase(name: String, match: [String: String], window: Double)
    case sum(by: [String], PanelQuery)
    case divide(PanelQuery, PanelQuery)

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public static func parse(_ text: String) throws(ParseError) -> PanelQuery {
        var parser = QueryParser(text)
        let query = try parser.expression()
        parser.skipSpace()
        guard parser.atEnd else { throw parser.error("unexpected '\(parser.rest.prefix(12))'") }
        return query
    }

    /// The metric names the query reads.
    public var metrics: [String] {
        switch self {
        case .selector(let name, _), .rate(let name, _, _), .increase(let name, _, _): [name]
        case .sum(_, let inner): inner.metrics
        case .divide(let a, let b): a.metrics + b.metrics
        }
    }

    /// The query's series at the scrape `at` of `history` (label set → value).
    public func evaluate(_ history: [MetricsScrape], at index: Int) -> [[String: String]: Double] {
        switch self {
        case .selector(let name, let match):
            var result: [[String: String]: Double] = [:]
            for sample in history[index].samples where sample.name == name && Self.matches(sample.labels, match) {
                result[sample.labels] = sample.value
            }
            return result
        case .rate(let name, let match, let window), .increase(let name, let match, let window):
            let isRate = if case .rate = self { true } else { false }
            let now = history[index].time
            var first = index
            while first > 0, history[first - 1].time >= now - window - 0.001 { first -= 1 }
            guard first < index else { return [:] }
            var result: [[String: String]: Double] = [:]
            var series: [[String: String]: [(Double, Double)]] = [:]
            for position in first...index {
                for sample in history[position].samples where sample.name == name && Self.matches(sample.labels, match) {
                    series[sample.labels, default: []].append((history[position].time, sample.value))
                }
            }
            for (labels, points) in series where points.count >= 2 {
                // A counter that went down was restarted: count from zero after it.
                var increase = 0.0
                for pair in zip(points, points.dropFirst()) {
                    increase += pair.1.1 >= pair.0.1 ? pair.1.1 - pair.0.1 : pair.1.1
                }
                let seconds = points.last!.0 - points.first!.0
                result[labels] = isRate ? (seconds > 0 ? increase / seconds : 0) : increase
            }
            return result
        case .sum(let by, let inner):
            var result: [[String: String]: Double] = [:]
            for (labels, value) in inner.evaluate(history, at: index) {
                let key = labels.filter { by.contains($0.key) }
                result[key, default: 0] += value
            }
            return result
        case .divide(let a, let b):
            let left = a.evaluate(history, at: index)
            let right = b.evaluate(history, at: index)
            var result: [[String: String]: Double] = [:]
            for (labels, value) in left {
                guard let divisor = right[labels], divisor != 0 else { continue }
                result[labels] = value / divisor
            }
            return result
        }
    }

    static func matches(_ labels: [String: String], _ match: [String: String]) -> Bool {
        match.allSatisfy { labels[$0.key] == $0.value }
    }
}

/// One scrape of the node's metrics.
public struct MetricsScrape: Sendable {
    /// Seconds since 1970.
    public var time: Double
    public var samples: [MetricSample]

    public init(time: Double, samples: [MetricSample]) {
        self.time = time
        self.samples = samples
    }
}

struct QueryParser {
    let characters: [Character]
    var index = 0
    let text: String

    init(_ text: String) {
        self.text = text
        characters = Array(text)
    }

    var atEnd: Bool { index >= characters.count }
    var rest: String { String(characters[min(index, characters.count)...]) }

    func error(_ message: String) -> PanelQuery.ParseError {
        PanelQuery.ParseError(description: "\(message) at column \(index + 1) of '\(text)'")
    }

    mutating func skipSpace() {
        while index < characters.count, characters[index].isWhitespace { index += 1 }
    }

    mutating func take(_ literal: String) -> Bool {
        skipSpace()
        let wanted = Array(literal)
        guard index + wanted.count <= characters.count, Array(characters[index..<(index + wanted.count)]) == wanted else { return false }
        index += wanted.count
        return true
    }

    mutating func expect(_ literal: String) throws(PanelQuery.ParseError) {
        guard take(literal) else { throw error("expected '\(literal)'") }
    }

    mutating func identifier() throws(PanelQuery.ParseError) -> String {
        skipSpace()
        var name = ""
        while index < characters.count, characters[index].isLetter || characters[index].isNumber || characters[index] == "_" || characters[index] == ":" {
            name.append(characters[index])
            index += 1
        }
        guard !name.isEmpty else { throw error("expected a name") }
        return name
    }

    mutating func expression() throws(PanelQuery.ParseError) -> PanelQuery {
        let left = try term()
        if take("/") { return .divide(left, try term()) }
        return left
    }

    mutating func term() throws(PanelQuery.ParseError) -> PanelQuery {
        skipSpace()
        let start = index
        let name = try identifier()
        switch name {
        case "sum":
            var by: [String] = []
            if take("by") {
                try expect("(")
                repeat { by.append(try identifier()) } while take(",")
                try expect(")")
            }
            try expect("(")
            let inner = try expression()
            try expect(")")
            return .sum(by: by, inner)
        case "rate", "increase":
            try expect("(")
            let metric = try identifier()
            let match = try labels()
            try expect("[")
            let window = try duration()
            try expect("]")
            try expect(")")
            return name == "rate" ? .rate(name: metric, match: match, window: window) : .increase(name: metric, match: match, window: window)
        default:
            if take("(") {
                index = start
                throw error("'\(name)' is not a function the portal draws (it draws sum by, rate, increase and /)")
            }
            return .selector(name: name, match: try labels())
        }
    }

    mutating func labels() throws(PanelQuery.ParseError) -> [String: String] {
        guard take("{") else { return [:] }
        var match: [String: String] = [:]
        repeat {
            let label = try identifier()
            try expect("=")
            try expect("\"")
            var value = ""
            while index < characters.count, characters[index] != "\"" {
                value.append(characters[index])
                index += 1
            }
            try expect("\"")
            match[label] = value
        } while take(",")
        try expect("}")
        return match
    }

    mutating func duration() throws(PanelQuery.ParseError) -> Double {
        skipSpace()
        var digits = ""
        while index < characters.count, characters[index].isNumber {
            digits.append(characters[index])
            index += 1
        }
        guard let number = Double(digits), index < characters.count else { throw error("expected a duration like 1m") }
        let unit = characters[index]
        index += 1
        switch unit {
        case "s": return number
        case "m": return number * 60
        case "h": return number * 3600
        default: throw error("'\(unit)' is not a duration unit (s, m, h)")
        }
    }
}
