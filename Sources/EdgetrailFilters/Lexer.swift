import EdgetrailCore

/// A token of the rule language, with where it starts (1-based line and column).
struct Token: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        case identifier(String)
        case number(Double)
        /// A duration literal, in milliseconds (`250ms`, `2s`).
        case duration(Double)
        case string(String)
        case regex(String)
        /// An IPv4 address or CIDR (`10.0.0.0/8`, `10.201.0.2`).
        case network(IPPrefix)
        case symbol(String)
        case newline
        case end
    }

    var kind: Kind
    var line: Int
    var column: Int
    /// How many characters the token spans (for caret lines).
    var length: Int
}

/// A problem with its position in the rule text.
struct RuleSyntaxError: Error, Sendable {
    var message: String
    var line: Int
    var column: Int
}

/// Splits rule text into tokens. `#` starts a comment to the end of the line; statements end at
/// a newline (one statement per line).
struct Lexer {
    private let characters: [Character]
    private var index = 0
    private var line = 1
    private var column = 1

    init(_ text: String) {
        characters = Array(Self.normalizingLineBreaks(text))
    }

    /// In Swift "\r\n" is one Character, neither equal to "\n" nor a line break to this lexer:
    /// a file saved with Windows line endings (or sent by a browser's form) would be one long
    /// line, everything after its first comment a comment. Line breaks are "\n" from here on.
    static func normalizingLineBreaks(_ text: String) -> String {
        text.contains("\r\n") ? text.replacingOccurrences(of: "\r\n", with: "\n") : text
    }

    mutating func tokens() throws(RuleSyntaxError) -> [Token] {
        var tokens: [Token] = []
        while true {
            let token = try next()
            tokens.append(token)
            if token.kind == .end { return tokens }
        }
    }

    private var current: Character? { index < characters.count ? characters[index] : nil }

    private func peek(_ offset: Int = 1) -> Character? {
        index + offset < characters.count ? characters[index + offset] : nil
    }

    private mutating func advance() {
        if characters[index] == "\n" {
            line += 1
            column = 1
        } else {
            column += 1
        }
        index += 1
    }

    private mutating func next() throws(RuleSyntaxError) -> Token {
        while let character = current, character != "\n", character.isWhitespace { advance() }
        if current == "#" {
            while let character = current, character != "\n" { advance() }
        }
        let startLine = line
        let startColumn = column
        let startIndex = index
        func token(_ kind: Token.Kind) -> Token {
            Token(kind: kind, line: startLine, column: startColumn, length: max(index - startIndex, 1))
        }
        guard let character = current else { return token(.end) }
        if character == "\n" {
            advance()
            return token(.newline)
        }
        if character.isLetter || character == "_" {
            var text = ""
            while let next = current, next.isLetter || next.isNumber || next == "_" {
                text.append(next)
                advance()
            }
            return token(.identifier(text))
        }
        if character.isNumber {
            var text = ""
            while let next = current, next.isNumber || next == "." {
                text.append(next)
                advance()
            }
            if text.split(separator: ".", omittingEmptySubsequences: false).count == 4 {
                if current == "/" {
                    text.append("/")
                    advance()
                    while let next = current, next.isNumber {
                        text.append(next)
                        advance()
                    }
                }
                guard let prefix = IPPrefix(text) else {
                    throw RuleSyntaxError(
                        message: "'\(text)' is not an IPv4 address or CIDR", line: startLine, column: startColumn)
                }
                return token(.network(prefix))
            }
            guard let value = Double(text) else {
                throw RuleSyntaxError(message: "'\(text)' is not a number", line: startLine, column: startColumn)
            }
            var unit = ""
            while let next = current, next.isLetter {
                unit.append(next)
                advance()
            }
            if unit.isEmpty { return token(.number(value)) }
            let scale: [String: Double] = ["us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000]
            guard let factor = scale[unit] else {
                throw RuleSyntaxError(
                    message: "unknown unit '\(unit)' after \(text); durations take us, ms, s, m or h",
                    line: startLine, column: startColumn)
            }
            return token(.duration(value * factor))
        }
        if character == "\"" {
            advance()
            var text = ""
            while true {
                guard let next = current, next != "\n" else {
                    throw RuleSyntaxError(
                        message: "this string is not closed; end it with \" on the same line",
                        line: startLine, column: startColumn)
                }
                advance()
                if next == "\"" { break }
                if next == "\\" {
                    guard let escaped = current, escaped != "\n" else { continue }
                    advance()
                    switch escaped {
                    case "n": text.append("\n")
                    case "t": text.append("\t")
                    default: text.append(escaped)
                    }
                    continue
                }
                text.append(next)
            }
            return token(.string(text))
        }
        if character == "/" {
            advance()
            var pattern = ""
            while true {
                guard let next = current, next != "\n" else {
                    throw RuleSyntaxError(
                        message: "this regular expression is not closed; end it with / on the same line",
                        line: startLine, column: startColumn)
                }
                advance()
                if next == "/" { break }
                if next == "\\", let escaped = current, escaped == "/" {
                    advance()
                    pattern.append("/")
                    continue
                }
                pattern.append(next)
            }
            return token(.regex(pattern))
        }
        for symbol in ["==", "!=", "<=", ">="] {
            if character == symbol.first, peek() == symbol.last {
                advance()
                advance()
                return token(.symbol(symbol))
            }
        }
        if "<>~+-()[],%.".contains(character) {
            advance()
            return token(.symbol(String(character)))
        }
        advance()
        throw RuleSyntaxError(message: "unexpected character '\(character)'", line: startLine, column: startColumn)
    }
}
