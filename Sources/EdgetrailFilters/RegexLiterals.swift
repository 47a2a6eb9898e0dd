import Foundation

/// What a regular expression's matches must contain, found conservatively.
enum RegexLiterals {
    /// Whether `text` contains `literal`, compared as UTF-8 bytes, as the regex compares code
    /// points (no canonical equivalence).
    static func contains(_ text: String, _ literal: [UInt8]) -> Bool {
        guard !literal.isEmpty else { return true }
        var text = text
        return text.withUTF8 { firstOffset(of: literal, in: $0) != nil }
    }

    /// Where `literal` (not empty) first occurs in `bytes`.
    private static func firstOffset(of literal: [UInt8], in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let first = literal.first, bytes.count >= literal.count else { return nil }
        var start = 0
        while start <= bytes.count - literal.count {
            if bytes[start] == first {
                var offset = 1
                while offset < literal.count, bytes[start + offset] == literal[offset] { offset += 1 }
                if offset == literal.count { return start }
            }
            start += 1
        }
        return nil
    }

    /// For a pattern that is a literal followed by `.*$` (no anchor before it, no flags): the
    /// literal. Such a pattern matches from the literal's first occurrence to the end of the line.
    static func tail(_ pattern: String) -> String? {
        guard pattern.hasSuffix(".*$"), !pattern.hasPrefix("^") else { return nil }
        let head = String(pattern.dropLast(3))
        guard !head.isEmpty, !head.contains("|"), !head.hasPrefix("(?") else { return nil }
        let (literal, consumed) = leadingRun(Array(head))
        return consumed == head.count && !literal.isEmpty ? literal : nil
    }

    /// What a `tail` pattern does to a value.
    enum TailCut: Equatable {
        /// The value is not one-line ASCII, where `.` and `$` could mean more than "to the
        /// end": ask the regex.
        case needsRegex
        /// The literal is not in the value: no match.
        case noMatch
        /// The match runs from this UTF-8 offset to the end.
        case from(Int)
    }

    static func tailCut(_ text: String, _ literal: [UInt8]) -> TailCut {
        var text = text
        return text.withUTF8 { bytes in
            for byte in bytes where byte >= 0x80 || byte == 0x0A || byte == 0x0D { return .needsRegex }
            return firstOffset(of: literal, in: bytes).map(TailCut.from) ?? .noMatch
        }
    }

    /// The literal text every match starts with: the pattern's leading run of plain or escaped
    /// punctuation characters, before anything that could repeat, alternate or group them. Nil
    /// when there is none (or the pattern has an alternation anywhere, or flags).
    static func leading(_ pattern: String) -> String? {
        // An alternation at the top level makes any prefix optional; don't try to be clever.
        guard !pattern.contains("|"), !pattern.hasPrefix("(?") else { return nil }
        var characters = Array(pattern)
        if characters.first == "^" { characters.removeFirst() }
        let literal = leadingRun(characters).literal
        return literal.isEmpty ? nil : literal
    }

    /// The leading literal run of a pattern's characters, and how many characters it took.
    private static func leadingRun(_ characters: [Character]) -> (literal: String, consumed: Int) {
        var literal = ""
        var index = 0
        while index < characters.count {
            var next: Character
            var width = 1
            if characters[index] == "\\" {
                // Only escaped punctuation is a literal (\d, \w, \b, … are classes or anchors).
                guard index + 1 < characters.count, characters[index + 1].isPunctuation || characters[index + 1].isSymbol
                else { break }
                next = characters[index + 1]
                width = 2
            } else if characters[index].isLetter || characters[index].isNumber || characters[index] == " "
                || "/:=&-_,;@#%!~'\"<>".contains(characters[index])
            {
                next = characters[index]
            } else {
                break
            }
            // A quantifier after it makes this character optional or repeated: stop before it.
            if index + width < characters.count, "?*+{".contains(characters[index + width]) { break }
            literal.append(next)
            index += width
        }
        return (literal, index)
    }
}
