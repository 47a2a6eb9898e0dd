/// A problem in a datapath rule's text, with the 0-based character offset it was found at.
public struct DatapathRuleSyntaxError: Error, Hashable, Sendable {
    public var message: String
    public var offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }
}

extension DatapathRule {
    /// Parses the shorthand `<ip> <port> : <action> [<rate>] [=> [label, …]]`, optionally wrapped
    /// in `{ }`, e.g. `10.201.0.2 80 : redirect => [http-proxy]` or `* 443 : ratelimit 1MB/s`.
    ///
    /// Only syntax is checked here; whether labels exist is the CNF's business.
    public static func parse(shorthand text: String) throws(DatapathRuleSyntaxError) -> DatapathRule {
        var scanner = RuleScanner(Array(text))
        scanner.skipSpaces()
        let braced = scanner.consume("{")
        let ipToken = scanner.word(allowingColons: true)
        guard !ipToken.text.isEmpty else {
            throw DatapathRuleSyntaxError(
                "expected a destination address, CIDR or '*' (e.g. \"10.201.0.2 80 : redirect => [http-proxy]\")",
                offset: ipToken.offset)
        }
        let destination = try parseDestination(ipToken.text, offset: ipToken.offset)
        let portToken = scanner.word()
        guard !portToken.text.isEmpty else {
            throw DatapathRuleSyntaxError("expected a port or '*' after the address", offset: portToken.offset)
        }
        let port = try parsePort(portToken.text, offset: portToken.offset)
        scanner.skipSpaces()
        guard scanner.consume(":") else {
            throw DatapathRuleSyntaxError("expected ':' between the port and the action", offset: scanner.offset)
        }
        let actionToken = scanner.word()
        let action = try parseAction(actionToken.text, offset: actionToken.offset)
        var rate: UInt64?
        scanner.skipSpaces()
        if !scanner.atEnd, !scanner.lookingAt("=>"), !scanner.lookingAt("}") {
            let rateToken = scanner.word()
            rate = try parseRate(rateToken.text, offset: rateToken.offset)
        }
        var labels: [String] = []
        scanner.skipSpaces()
        if scanner.consume("=>") {
            scanner.skipSpaces()
            let open = scanner.offset
            let bracketed = scanner.consume("[")
            while true {
                scanner.skipSpaces()
                if bracketed, scanner.consume("]") { break }
                if !bracketed, scanner.atEnd || scanner.lookingAt("}") { break }
                let label = scanner.word(stoppingAt: ",]}")
                guard !label.text.isEmpty else {
                    throw DatapathRuleSyntaxError(
                        bracketed ? "expected a label or ']'" : "expected a label", offset: label.offset)
                }
                labels.append(label.text)
                scanner.skipSpaces()
                if scanner.consume(",") { continue }
                if bracketed, scanner.consume("]") { break }
                if !bracketed, scanner.atEnd || scanner.lookingAt("}") { break }
                throw DatapathRuleSyntaxError(
                    bracketed ? "expected ',' or ']' in the label list opened here" : "expected ',' between labels",
                    offset: bracketed && scanner.atEnd ? open : scanner.offset)
            }
        }
        scanner.skipSpaces()
        if braced, !scanner.consume("}") {
            throw DatapathRuleSyntaxError("expected '}' to close the rule", offset: scanner.offset)
        }
        scanner.skipSpaces()
        guard scanner.atEnd else {
            throw DatapathRuleSyntaxError(
                "unexpected text after the rule; write labels as '=> [label, …]'", offset: scanner.offset)
        }
        return DatapathRule(
            destination: destination, port: port, action: action, labels: labels, rateBytesPerSecond: rate)
    }

    /// `*`, an address or a CIDR.
    public static func parseDestination(_ text: String, offset: Int = 0) throws(DatapathRuleSyntaxError)
        -> IPPrefix?
    {
        if text == "*" { return nil }
        guard let prefix = IPPrefix(text) else {
            throw DatapathRuleSyntaxError(
                "'\(text)' is not an IP address, a CIDR (like 10.0.0.0/8) or '*'", offset: offset)
        }
        return prefix
    }

    /// `*` or 1…65535.
    public static func parsePort(_ text: String, offset: Int = 0) throws(DatapathRuleSyntaxError) -> UInt16? {
        if text == "*" { return nil }
        guard text.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(text), (1...65535).contains(value)
        else {
            throw DatapathRuleSyntaxError("'\(text)' is not a port (1-65535) or '*'", offset: offset)
        }
        return UInt16(value)
    }

    public static func parseAction(_ text: String, offset: Int = 0) throws(DatapathRuleSyntaxError)
        -> DatapathAction
    {
        guard let action = DatapathAction(rawValue: text) else {
            let known = DatapathAction.allCases.map(\.rawValue).joined(separator: ", ")
            throw DatapathRuleSyntaxError(
                text.isEmpty ? "expected an action (\(known))" : "unknown action '\(text)' (expected \(known))",
                offset: offset)
        }
        return action
    }

    /// A rate in bytes per second: `125000`, `64KB/s`, `10MiB/s`, `100Mbit/s`.
    public static func parseRate(_ text: String, offset: Int = 0) throws(DatapathRuleSyntaxError) -> UInt64 {
        let digits = text.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        var unit = String(text.dropFirst(digits.count)).lowercased()
        if unit.hasSuffix("/s") { unit.removeLast(2) } else if unit.hasSuffix("ps") { unit.removeLast(2) }
        let multipliers: [String: Double] = [
            "": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1_048_576,
            "gib": 1_073_741_824, "bit": 1.0 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8,
        ]
        guard let number = Double(digits), let multiplier = multipliers[unit] else {
            throw DatapathRuleSyntaxError(
                "'\(text)' is not a rate; write bytes per second like 125000, 64KB/s, 10MiB/s or 100Mbit/s",
                offset: offset)
        }
        let value = number * multiplier
        guard value >= 1, value < Double(UInt64.max) else {
            throw DatapathRuleSyntaxError("rate '\(text)' must be at least 1 byte per second", offset: offset)
        }
        return UInt64(value)
    }
}

/// A character cursor over one line of rule text.
private struct RuleScanner {
    let characters: [Character]
    var offset = 0

    init(_ characters: [Character]) { self.characters = characters }

    var atEnd: Bool { offset >= characters.count }

    mutating func skipSpaces() {
        while !atEnd, characters[offset].isWhitespace { offset += 1 }
    }

    func lookingAt(_ literal: String) -> Bool {
        let literal = Array(literal)
        guard offset + literal.count <= characters.count else { return false }
        return Array(characters[offset..<offset + literal.count]) == literal
    }

    mutating func consume(_ literal: String) -> Bool {
        guard lookingAt(literal) else { return false }
        offset += literal.count
        return true
    }

    /// The next run of characters up to white space, ':' or one of `stops`.
    mutating func word(stoppingAt stops: String = "", allowingColons: Bool = false) -> (text: String, offset: Int) {
        skipSpaces()
        let start = offset
        while !atEnd {
            let character = characters[offset]
            if character.isWhitespace || stops.contains(character) { break }
            if character == ":" && !(allowingColons && isInsideIPv6(start: start)) { break }
            if character == "=" && lookingAt("=>") { break }
            if character == "}" { break }
            offset += 1
        }
        return (String(characters[start..<offset]), start)
    }

    /// An IPv6 address contains ':' itself; a ':' is part of the word when hex digits or another
    /// ':' follow immediately (the separator is always followed by a space or the action).
    private func isInsideIPv6(start: Int) -> Bool {
        guard offset + 1 < characters.count else { return false }
        let next = characters[offset + 1]
        return next == ":" || next.isHexDigit || (offset > start && characters[offset - 1] == ":")
    }
}
