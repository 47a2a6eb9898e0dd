import EdgetrailCore
import Yams

/// Walks a YAML document an operator wrote and collects every problem as a `Diagnostic` with
/// its file, line and column, instead of stopping at the first. Shared by every reader of
/// operator YAML (CNF specs, collector pipelines).
public struct YAMLContext: Sendable {
    public let fileName: String
    public private(set) var diagnostics: [Diagnostic] = []

    public init(fileName: String) { self.fileName = fileName }

    public func location(_ node: Node?, offset: Int = 0) -> SourceLocation {
        guard let mark = node?.mark else { return SourceLocation(file: fileName, line: 1, column: 1) }
        var column = mark.column
        if let scalar = node?.scalar {
            // Offsets count from the first character of the value, past an opening quote.
            let quoted = scalar.style == .singleQuoted || scalar.style == .doubleQuoted
            column += offset + (quoted ? 1 : 0)
        }
        return SourceLocation(file: fileName, line: mark.line, column: column)
    }

    public func position(_ node: Node) -> String {
        let location = location(node)
        return "line \(location.line)"
    }

    public mutating func report(_ message: String, at node: Node?, offset: Int = 0) {
        diagnostics.append(Diagnostic(message, at: location(node, offset: offset)))
    }

    public func diagnostic(forYAMLError error: Error) -> Diagnostic {
        func at(_ mark: Mark) -> SourceLocation {
            SourceLocation(file: fileName, line: mark.line, column: mark.column)
        }
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\($0.text) " } ?? ""
            return Diagnostic("malformed YAML: \(detail)\(problem)", at: at(mark))
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams' own text quotes the whole mapping; the key and where it first appears (the
            // context's mark) is what an operator needs.
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return Diagnostic(
                "the key \(keys) is given more than once in the same mapping (first here); keep one",
                at: at(context.mark))
        case .reader(let problem, _, _, _):
            return Diagnostic(
                "malformed YAML: \(problem)", at: SourceLocation(file: fileName, line: 1, column: 1))
        default:
            return Diagnostic(
                "malformed YAML: \(error)", at: SourceLocation(file: fileName, line: 1, column: 1))
        }
    }

    public mutating func mapping(_ node: Node, what: String) -> Node.Mapping? {
        if let mapping = node.mapping { return mapping }
        report("expected \(what) as a mapping of 'field: value'", at: node)
        return nil
    }

    /// The items of a sequence; reports (when `what` is given) anything else.
    public mutating func sequence(_ node: Node, what: String?) -> [Node] {
        if let sequence = node.sequence { return Array(sequence) }
        if let what { report("expected '\(what)' to be a list ('- item' lines or [a, b])", at: node) }
        return []
    }

    public mutating func string(_ node: Node, what: String) -> String? {
        if let scalar = node.scalar { return scalar.string }
        report("expected \(what) as a single value", at: node)
        return nil
    }

    /// A name: lowercase letters, digits and '-', starting with a letter.
    public mutating func name(_ node: Node, what: String) -> String? {
        guard let text = string(node, what: what) else { return nil }
        let valid =
            !text.isEmpty && text.count <= 63 && text.first!.isLetter
            && text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "_" }
        if !valid {
            report(
                "'\(text)' is not a valid name for \(what): use 1-63 lowercase letters, digits, '-' or '_', starting with a letter",
                at: node)
            return nil
        }
        return text
    }

    public mutating func requiredString(_ node: Node?, field: String, in parent: Node, what: String) -> String? {
        guard let node else {
            report("\(what) is missing the required field '\(field)'", at: parent)
            return nil
        }
        return string(node, what: "'\(field)'")
    }

    public mutating func requiredName(_ node: Node?, field: String, in parent: Node, what: String) -> String? {
        guard let node else {
            report("\(what) is missing the required field '\(field)'", at: parent)
            return nil
        }
        return name(node, what: "'\(field)'")
    }

    /// The fields of a mapping by key; reports unknown and repeated keys.
    public mutating func fields(of mapping: Node.Mapping, allowed: [String], what: String) -> [String: Node] {
        var result: [String: Node] = [:]
        var keys: [String: Node] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                report("expected a field name", at: key)
                continue
            }
            if !allowed.contains(name) {
                report(
                    "unknown field '\(name)' in \(what) (expected one of: \(allowed.joined(separator: ", ")))", at: key)
                continue
            }
            if let first = keys[name] {
                report("field '\(name)' given twice (first at \(position(first)))", at: key)
                continue
            }
            keys[name] = key
            result[name] = value
        }
        return result
    }
}

extension YAMLContext {
    /// Parses the document; malformed YAML and an empty file are reported. `what` names the
    /// kind of file for the empty case.
    public mutating func document(_ yaml: String, what: String) -> (Node, Node.Mapping)? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            diagnostics.append(diagnostic(forYAMLError: error))
            return nil
        }
        guard let root else {
            report("the file is empty; expected \(what)", at: nil)
            return nil
        }
        guard let mapping = mapping(root, what: what) else { return nil }
        return (root, mapping)
    }

    /// A duration like `250ms`, `30s`, `2m`, in nanoseconds.
    /// The longest duration a setting takes: a week. Longer waits are mistakes, and a number of
    /// nanoseconds far past it would not fit the 64 bits that hold it.
    public static let maximumDurationNanoseconds: UInt64 = 7 * 24 * 3600 * 1_000_000_000

    /// The largest size a setting takes: 1 TiB.
    public static let maximumBytes = 1 << 40

    /// A duration like `500ms`, `30s`, `2m`, `1h`, in nanoseconds, at most a week.
    public mutating func duration(_ node: Node, what: String) -> UInt64? {
        guard let text = string(node, what: what) else { return nil }
        let units: [(String, Double)] = [("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let digits = text.dropLast(suffix.count)
            // Digits and a point only: Double() alone would take "inf", "nan" and "1e400".
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                let value = Double(digits)
            else { break }
            let nanoseconds = value * scale
            guard nanoseconds <= Double(Self.maximumDurationNanoseconds) else {
                report("\(what) '\(text)' is longer than the most it can be, a week (168h)", at: node)
                return nil
            }
            return UInt64(nanoseconds)
        }
        report("'\(text)' is not a duration; write it like 500ms, 30s or 2m", at: node)
        return nil
    }

    /// A size like `4194304`, `64KiB`, `256MiB`, `1GB`, in bytes.
    public mutating func byteSize(_ node: Node, what: String) -> Int? {
        guard let text = string(node, what: what) else { return nil }
        let digits = text.prefix { $0.isNumber || $0 == "." }
        let units: [String: Double] = [
            "": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824,
        ]
        if let value = Double(digits), let scale = units[text.dropFirst(digits.count).lowercased()], value > 0 {
            guard value * scale <= Double(Self.maximumBytes) else {
                report("\(what) '\(text)' is larger than the most it can be, 1 TiB", at: node)
                return nil
            }
            return Int(value * scale)
        }
        report("'\(text)' is not a size; write it like 4194304, 64KiB or 256MiB", at: node)
        return nil
    }

    /// A whole number within `range`.
    public mutating func integer(_ node: Node, what: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, what: what) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            report("'\(text)' is not a whole number from \(range.lowerBound) to \(range.upperBound)", at: node)
            return nil
        }
        return value
    }

    /// `host:port` with a numeric IPv4 host or `localhost`.
    public mutating func hostPort(_ node: Node, what: String) -> (host: String, port: Int)? {
        guard let text = string(node, what: what) else { return nil }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty else {
            report("'\(text)' is not an address; write it as HOST:PORT, e.g. 127.0.0.1:4317", at: node)
            return nil
        }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        return (host, port)
    }

    /// `HOST:PORT`, or a Unix socket's path (anything with a `/` in it, e.g. `.run/redis.sock`).
    public mutating func endpoint(_ node: Node, what: String, example: String) -> Endpoint? {
        guard let text = string(node, what: what) else { return nil }
        if text.contains("/") { return .unix(path: text) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty else {
            report(
                "'\(text)' is not an address; write it as HOST:PORT, e.g. \(example), or as a Unix socket's path, "
                    + "e.g. .run/redis.sock", at: node)
            return nil
        }
        return .tcp(host: parts[0] == "localhost" ? "127.0.0.1" : String(parts[0]), port: port)
    }

    /// One of `choices`.
    public mutating func choice(_ node: Node, what: String, from choices: [String]) -> String? {
        guard let text = string(node, what: what) else { return nil }
        guard choices.contains(text) else {
            report("'\(text)' is not a valid \(what) (expected one of: \(choices.joined(separator: ", ")))", at: node)
            return nil
        }
        return text
    }
}
