import Foundation

/// Reads the text files operators write (CNF specs, rule files, pipeline configs, datapath rule
/// sets) and, when one cannot be read, says why — and for text that is not UTF-8, where: an editor
/// that saved Latin-1 leaves one bad byte, and "cannot read" alone sends the user searching the
/// whole file for it.
public enum TextFile {
    /// The file's text, or a diagnostic naming `what` the file is meant to be (e.g. "the rule file").
    public static func read(_ path: String, what: String) throws(DiagnosticsError) -> String {
        let start = SourceLocation(file: path, line: 1, column: 1)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DiagnosticsError([Diagnostic("cannot read \(what): no such file", at: start)])
        }
        if isDirectory.boolValue {
            throw DiagnosticsError([Diagnostic("cannot read \(what): it is a folder, not a file", at: start)])
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DiagnosticsError([Diagnostic("cannot read \(what): permission denied", at: start)])
        }
        return try decode(Array(data), fileName: path, what: what)
    }

    /// `bytes` as UTF-8 text, or a diagnostic at the first byte that is not UTF-8 (1-based line,
    /// and column counted in characters, as the parsers count them).
    public static func decode(_ bytes: [UInt8], fileName: String, what: String) throws(DiagnosticsError) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        let offset = firstInvalidOffset(bytes)
        let lineStart = bytes[..<offset].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        let line = bytes[..<lineStart].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        let column = String(decoding: bytes[lineStart..<offset], as: UTF8.self).count + 1
        let byte = String(bytes[offset], radix: 16, uppercase: true)
        throw DiagnosticsError([
            Diagnostic(
                "cannot read \(what): byte 0x\(byte.count == 1 ? "0" + byte : byte) is not UTF-8 text; "
                    + "save the file as UTF-8",
                at: SourceLocation(file: fileName, line: line, column: column))
        ])
    }

    /// The offset of the first byte that does not start or continue a well-formed UTF-8 sequence.
    static func firstInvalidOffset(_ bytes: [UInt8]) -> Int {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): offset += UTF8.width(scalar)
            case .emptyInput: return bytes.count
            case .error: return offset
            }
        }
    }
}
