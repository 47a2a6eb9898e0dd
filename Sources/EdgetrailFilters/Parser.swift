import EdgetrailCore

/// Parses rule text into statements, one per line. A line with a syntax error is reported and
/// skipped, so one run reports every broken line.
struct Parser {
    /// How deep parentheses, `not` and `any(`/`all(`/`count(` may nest in one condition.
    static let maximumNesting = 32
    /// How many operators (`and`, `or`, comparisons, `+`/`-`) one condition may hold.
    ///
    /// Both bounds keep the tree shallow: parsing, checking, compiling and freeing a condition
    /// recurse over it, and a tree thousands deep overflows a thread's stack (a collector's rule
    /// reload runs on a small one). Real rules stay far below either.
    static let maximumOperators = 256

    private var tokens: [Token] = []
    private var index = 0
    /// Nesting depth and operator count of the statement being parsed.
    private var nesting = 0
    private var operators = 0
    private let lines: [Substring]
    private(set) var errors: [RuleSyntaxError] = []

    init(_ given: String) {
        let text = Lexer.normalizingLineBreaks(given)
        lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var lexer = Lexer(text)
        do {
            tokens = try lexer.tokens()
        } catch {
            // Lex line by line so the other lines still parse.
            tokens = []
            var lineNumber = 0
            for line in lines {
                lineNumber += 1
                var lineLexer = Lexer(String(line))
                do {
                    for var token in try lineLexer.tokens() where token.kind != .end {
                        token.line = lineNumber
                        tokens.append(token)
                    }
                } catch {
                    errors.append(RuleSyntaxError(message: error.message, line: lineNumber, column: error.column))
                    // Drop the broken line's tokens: it is reported once.
                    while let last = tokens.last, last.line == lineNumber { tokens.removeLast() }
                }
                tokens.append(Token(kind: .newline, line: lineNumber, column: line.count + 1, length: 1))
            }
            tokens.append(Token(kind: .end, line: lineNumber, column: 1, length: 1))
        }
    }

    mutating func parse() -> [Statement] {
        var statements: [Statement] = []
        while true {
            while current.kind == .newline { index += 1 }
            if current.kind == .end { return statements }
            let start = current
            nesting = 0
            operators = 0
            do throws(RuleSyntaxError) {
                var statement = try parseStatement()
                guard current.kind == .newline || current.kind == .end else {
                    throw failure("\(describe(current)) after the end of the statement; one statement per line")
                }
                let text = lines[start.line - 1].trimmingCharacters(in: .whitespaces)
                statement.text = text.split(separator: "#", maxSplits: 1).first.map {
                    $0.trimmingCharacters(in: .whitespaces)
                } ?? text
                statements.append(statement)
            } catch {
                errors.append(error)
                while current.kind != .newline, current.kind != .end { index += 1 }
            }
        }
    }

    // MARK: Tokens

    private var current: Token { tokens[min(index, tokens.count - 1)] }

    private func position(_ token: Token) -> RulePosition {
        RulePosition(line: token.line, column: token.column, length: token.length)
    }

    private func failure(_ message: String, at token: Token? = nil) -> RuleSyntaxError {
        let token = token ?? current
        return RuleSyntaxError(message: message, line: token.line, column: token.column)
    }

    /// Enters one level of nesting at `token`, refusing past ``maximumNesting``.
    private mutating func enter(_ token: Token, _ what: String) throws(RuleSyntaxError) {
        nesting += 1
        guard nesting <= Self.maximumNesting else {
            throw failure(
                "\(what) nests deeper than \(Self.maximumNesting) levels; split the condition into several rules",
                at: token)
        }
    }

    /// Counts one operator at `token`, refusing past ``maximumOperators``.
    private mutating func countOperator(_ token: Token) throws(RuleSyntaxError) {
        operators += 1
        guard operators <= Self.maximumOperators else {
            throw failure(
                "a condition holds at most \(Self.maximumOperators) operators; split it into several rules", at: token)
        }
    }

    private func describe(_ token: Token) -> String {
        switch token.kind {
        case .identifier(let name): "'\(name)'"
        case .number(let value): "the number \(format(value))"
        case .duration: "a duration"
        case .string(let text): "the string \"\(text)\""
        case .regex: "a regular expression"
        case .network(let prefix): "the address \(prefix)"
        case .symbol(let symbol): "'\(symbol)'"
        case .newline: "the end of the line"
        case .end: "the end of the file"
        }
    }

    private func format(_ value: Double) -> String {
        // Whole numbers print without ".0" — when an Int can hold them (1e300 cannot).
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    private func isKeyword(_ word: String) -> Bool {
        if case .identifier(let name) = current.kind, name == word { return true }
        return false
    }

    private func isSymbol(_ symbol: String) -> Bool {
        if case .symbol(let found) = current.kind, found == symbol { return true }
        return false
    }

    private mutating func expectKeyword(_ word: String, _ context: String) throws(RuleSyntaxError) {
        guard isKeyword(word) else { throw failure("expected '\(word)' \(context), found \(describe(current))") }
        index += 1
    }

    private mutating func expectSymbol(_ symbol: String, _ context: String) throws(RuleSyntaxError) {
        guard isSymbol(symbol) else { throw failure("expected '\(symbol)' \(context), found \(describe(current))") }
        index += 1
    }

    private mutating func kind(_ context: String) throws(RuleSyntaxError) -> RecordKind {
        guard case .identifier(let name) = current.kind, let kind = RecordKind(rawValue: name) else {
            throw failure("expected span, flow, snapshot or cookie \(context), found \(describe(current))")
        }
        index += 1
        return kind
    }

    // MARK: Statements

    private mutating func parseStatement() throws(RuleSyntaxError) -> Statement {
        let start = current
        guard case .identifier(let verb) = start.kind else {
            throw failure("a rule starts with drop, keep, sample or redact, not \(describe(start))")
        }
        index += 1
        switch verb {
        case "drop":
            let kind = try kind("after 'drop'")
            let condition = try optionalWhere()
            return Statement(action: .drop(kind), condition: condition, position: position(start), text: "")
        case "keep":
            guard isKeyword("cookie") else {
                throw failure("only whole cookies are kept: write 'keep cookie where …'")
            }
            index += 1
            guard isKeyword("where") else {
                throw failure("'keep cookie' needs a condition: 'keep cookie where …'")
            }
            let condition = try optionalWhere()
            return Statement(action: .keep, condition: condition, position: position(start), text: "")
        case "sample":
            guard case .number(let percent) = current.kind else {
                throw failure("expected a percentage after 'sample', like 'sample 10% cookies'")
            }
            guard percent >= 0, percent <= 100 else {
                throw failure("a sample rate is between 0% and 100%, not \(format(percent))%")
            }
            index += 1
            try expectSymbol("%", "after the sample rate")
            guard isKeyword("cookies") || isKeyword("cookie") else {
                throw failure("only whole cookies are sampled: write 'sample \(format(percent))% cookies'")
            }
            index += 1
            let condition = try optionalWhere()
            return Statement(action: .sample(percent: percent), condition: condition, position: position(start), text: "")
        case "redact":
            let field = try fieldReference()
            var pattern: String?
            var replacement = "[redacted]"
            if isKeyword("matching") {
                index += 1
                guard case .regex(let regex) = current.kind else {
                    throw failure("expected a regular expression like /\\?.*$/ after 'matching'")
                }
                pattern = regex
                index += 1
            }
            if isKeyword("with") {
                index += 1
                guard case .string(let text) = current.kind else {
                    throw failure("expected a string like \"[redacted]\" after 'with'")
                }
                replacement = text
                index += 1
            }
            return Statement(
                action: .redact(field, pattern: pattern, replacement: replacement), condition: nil,
                position: position(start), text: "")
        default:
            throw failure("unknown statement '\(verb)'; a rule starts with drop, keep, sample or redact", at: start)
        }
    }

    private mutating func optionalWhere() throws(RuleSyntaxError) -> Expression? {
        guard isKeyword("where") else { return nil }
        index += 1
        return try orExpression()
    }

    // MARK: Expressions

    private mutating func orExpression() throws(RuleSyntaxError) -> Expression {
        var left = try andExpression()
        while isKeyword("or") {
            let token = current
            try countOperator(token)
            index += 1
            left = .binary(.or, left, try andExpression(), position(token))
        }
        return left
    }

    private mutating func andExpression() throws(RuleSyntaxError) -> Expression {
        var left = try notExpression()
        while isKeyword("and") {
            let token = current
            try countOperator(token)
            index += 1
            left = .binary(.and, left, try notExpression(), position(token))
        }
        return left
    }

    private mutating func notExpression() throws(RuleSyntaxError) -> Expression {
        if isKeyword("not") {
            let token = current
            try enter(token, "'not'")
            index += 1
            let inner = try notExpression()
            nesting -= 1
            return .not(inner, position(token))
        }
        return try comparison()
    }

    private mutating func comparison() throws(RuleSyntaxError) -> Expression {
        let left = try sum()
        for op in BinaryOperator.comparisons where isSymbol(op.rawValue) {
            let token = current
            try countOperator(token)
            index += 1
            return .binary(op, left, try sum(), position(token))
        }
        if isKeyword("in") {
            let token = current
            try countOperator(token)
            index += 1
            return .binary(.within, left, try sum(), position(token))
        }
        return left
    }

    private mutating func sum() throws(RuleSyntaxError) -> Expression {
        var left = try primary()
        while isSymbol("+") || isSymbol("-") {
            let token = current
            guard case .symbol(let symbol) = token.kind, let op = BinaryOperator(rawValue: symbol) else { break }
            try countOperator(token)
            index += 1
            left = .binary(op, left, try primary(), position(token))
        }
        return left
    }

    private mutating func primary() throws(RuleSyntaxError) -> Expression {
        let token = current
        switch token.kind {
        case .number(let value):
            index += 1
            return .number(value, position(token))
        case .duration(let milliseconds):
            index += 1
            return .number(milliseconds, position(token))
        case .string(let text):
            index += 1
            return .string(text, position(token))
        case .regex(let pattern):
            index += 1
            return .regex(pattern, position(token))
        case .network(let prefix):
            index += 1
            return .network(prefix, position(token))
        case .symbol("("):
            try enter(token, "'('")
            index += 1
            let inner = try orExpression()
            try expectSymbol(")", "to close the '(' at column \(token.column)")
            nesting -= 1
            return inner
        case .identifier(let name):
            if name == "true" || name == "false" {
                index += 1
                return .boolean(name == "true", position(token))
            }
            if let aggregate = Aggregate(rawValue: name), tokens.indices.contains(index + 1),
                tokens[index + 1].kind == .symbol("(")
            {
                try enter(token, "\(name)(…)")
                index += 2
                let kind = try kind("inside \(name)(…)")
                guard kind != .cookie else { throw failure("\(name)(…) ranges over span, flow or snapshot records") }
                var condition: Expression?
                if isKeyword("where") {
                    index += 1
                    condition = try orExpression()
                }
                try expectSymbol(")", "to close \(name)(")
                nesting -= 1
                return .aggregate(aggregate, kind, condition, position(token))
            }
            return .field(try fieldReference())
        default:
            throw failure("expected a value or a field, found \(describe(token))")
        }
    }

    private mutating func fieldReference() throws(RuleSyntaxError) -> FieldReference {
        let start = current
        guard case .identifier(let kindName) = start.kind else {
            throw failure("expected a field like span.service, found \(describe(start))")
        }
        guard let kind = RecordKind(rawValue: kindName) else {
            throw failure(
                "'\(kindName)' is not a record kind; fields start with span., flow., snapshot. or cookie.", at: start)
        }
        index += 1
        try expectSymbol(".", "after '\(kindName)' (fields look like \(kindName).name)")
        guard case .identifier(let name) = current.kind else {
            throw failure("expected a field name after '\(kindName).'")
        }
        index += 1
        var key: String?
        if isSymbol("[") {
            index += 1
            guard case .string(let text) = current.kind else {
                throw failure("expected a quoted key like [\"http.url\"]")
            }
            key = text
            index += 1
            try expectSymbol("]", "to close the key")
        }
        let end = tokens[index - 1]
        let length = end.line == start.line ? end.column + end.length - start.column : start.length
        return FieldReference(
            kind: kind, name: name, key: key, position: RulePosition(line: start.line, column: start.column, length: length))
    }
}
