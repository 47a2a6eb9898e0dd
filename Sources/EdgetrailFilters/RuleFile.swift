import EdgetrailCore
import Foundation

/// A parsed and checked rule file.
public struct RuleFile: Sendable {
    public var fileName: String
    public var statements: [Statement]

    /// Parses and checks rule text; throws every problem, in line order.
    public static func parse(_ text: String, fileName: String) throws(DiagnosticsError) -> RuleFile {
        var parser = Parser(text)
        let statements = parser.parse()
        var checker = RuleChecker()
        checker.check(statements)
        let errors = parser.errors + checker.errors
        guard errors.isEmpty else {
            throw DiagnosticsError(
                errors.map {
                    Diagnostic($0.message, at: SourceLocation(file: fileName, line: $0.line, column: $0.column))
                })
        }
        return RuleFile(fileName: fileName, statements: statements)
    }

    /// Reads, parses and checks a rule file.
    public static func load(path: String) throws(DiagnosticsError) -> RuleFile {
        try parse(TextFile.read(path, what: "the rule file"), fileName: path)
    }
}

/// Renders diagnostics the way `edgetrail filters lint` prints them: `FILE:LINE:COLUMN: message`,
/// then the line and a caret under the column.
public enum DiagnosticRenderer {
    public static func render(_ diagnostics: [Diagnostic], source: String) -> String {
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        var output = ""
        for diagnostic in diagnostics {
            output += "\(diagnostic)\n"
            let index = diagnostic.location.line - 1
            guard lines.indices.contains(index) else { continue }
            let line = String(lines[index])
            output += "    \(line)\n"
            let prefix = line.prefix(max(diagnostic.location.column - 1, 0)).map { $0 == "\t" ? "\t" : " " }
            output += "    \(prefix.joined())^\n"
        }
        return output
    }
}
